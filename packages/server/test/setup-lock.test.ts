/**
 * Issue 15, item 3: `./scripts/start.sh &` installs and builds in the background while the
 * authentication walkthrough runs `./scripts/mint-token.sh`, which installs and builds too on a
 * fresh clone. scripts/lib/setup.sh runs one install or build of a checkout at a time: tried here
 * with a stand-in pnpm that logs when each of its runs begins and ends.
 */
import { execFile } from "node:child_process"
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const ROOT = fileURLToPath(new URL("../../../", import.meta.url))
const SETUP = join(ROOT, "scripts/lib/setup.sh")
/** How long each stand-in install or build takes: long enough that two started together overlap. */
const RUN_SECONDS = 1

let sandbox = ""
let log = ""
let env: Record<string, string> = {}

beforeAll(() => {
  sandbox = mkdtempSync(join(tmpdir(), "chatify-setup-lock-"))
  log = join(sandbox, "pnpm.log")
  const pnpm = join(sandbox, "bin/pnpm")
  mkdirSync(join(sandbox, "bin"))
  writeFileSync(
    pnpm,
    [
      "#!/bin/sh",
      `if [ "$1" = "--version" ]; then echo 12.4.2; exit 0; fi`,
      `echo "begin $$ $(pwd) $*" >> "$PNPM_LOG"`,
      `sleep ${RUN_SECONDS}`,
      `echo "end $$" >> "$PNPM_LOG"`
    ].join("\n") + "\n"
  )
  chmodSync(pnpm, 0o755)
  env = {
    PATH: `${join(sandbox, "bin")}:${process.env["PATH"] ?? ""}`,
    CHATIFY_CACHE: join(sandbox, "cache"),
    PNPM_LOG: log
  }
})

afterAll(() => {
  if (sandbox !== "") rmSync(sandbox, { recursive: true, force: true })
})

/** Runs `script` in a bash that sourced setup.sh; resolves with its exit code and output, never rejects. */
const bash = (script: string) =>
  new Promise<{ readonly code: number; readonly output: string }>((resolve) => {
    execFile(
      "bash",
      ["-c", `source "${SETUP}"\n${script}`],
      { env: { ...process.env, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
        resolve({ code, output: `${stdout}${stderr}` })
      }
    )
  })

describe("setup.sh's lock (item 3)", () => {
  it("install_dependencies and build, run side by side as start.sh and mint-token.sh do, never overlap", async () => {
    rmSync(log, { force: true })
    const runs = await Promise.all([1, 2].map(() => bash("install_dependencies\nbuild")))
    for (const run of runs) expect(run.code, run.output).toBe(0)

    const lines = readFileSync(log, "utf8").trim().split("\n")
    expect(lines).toHaveLength(8) // two installs and two builds, each a begin and an end
    for (let i = 0; i < lines.length; i += 2) {
      const [begin, pid, cwd, ...args] = (lines[i] ?? "").split(" ")
      expect(begin, lines.join("\n")).toBe("begin")
      expect(lines[i + 1], lines.join("\n")).toBe(`end ${pid ?? ""}`) // the next line ends the same run
      expect(`${cwd ?? ""}/`).toBe(ROOT) // run in the checkout
      expect(args[0] === "install" || args.join(" ") === "run --silent build", args.join(" ")).toBe(true)
    }
    // they did contend: one of them waited for the other
    expect(runs.map((run) => run.output).join("\n")).toContain("waiting for another install or build")
  }, 60_000)

  it("is not held by a process the locked command leaves running", async () => {
    const pidFile = join(sandbox, "sleeper.pid")
    const left = await bash(
      `in_root_locked sh -c 'sleep 30 </dev/null >/dev/null 2>&1 & echo $! > "${pidFile}"'`
    )
    expect(left.code, left.output).toBe(0)
    try {
      const started = Date.now()
      const next = await bash("CHATIFY_LOCK_TIMEOUT=5 in_root_locked true")
      expect(next.code, next.output).toBe(0)
      expect(next.output).not.toContain("waiting")
      expect(Date.now() - started).toBeLessThan(5_000)
    } finally {
      process.kill(Number(readFileSync(pidFile, "utf8").trim()), "SIGKILL")
    }
  }, 60_000)
})
