import { execFile, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freePort } from "./support/serverProcess.js"

// The repository's shell scripts: shellcheck on all of them, and the service lock of
// scripts/services/*.sh (two concurrent `start`s leave one process), tried on redis.sh, the cheapest.

const ROOT = fileURLToPath(new URL("../../../", import.meta.url))
const SHELLCHECK = join(ROOT, "scripts/shellcheck.sh")
const REDIS = join(ROOT, "scripts/services/redis.sh")

interface Run {
  readonly code: number
  readonly output: string
  readonly millis: number
}

/** Runs a script with bash; resolves with its exit code and stdout+stderr, never rejects. */
const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Run> =>
  new Promise((resolve) => {
    const started = Date.now()
    execFile(
      "bash",
      [...args],
      { env: { ...process.env, ...env }, timeout: 300_000, maxBuffer: 10 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
        resolve({ code, output: `${stdout}${stderr}`, millis: Date.now() - started })
      }
    )
  })

/** Every shell script under scripts/ and .ci/, found here independently of scripts/shellcheck.sh. */
const expectedScripts = (): Array<string> => {
  const found: Array<string> = []
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (statSync(path).isDirectory()) walk(path)
      else if (
        name.endsWith(".sh") || /^#!.*[/ ](ba|da)?sh( |$)/mu.test(readFileSync(path, "utf8").split("\n")[0] ?? "")
      ) {
        found.push(relative(ROOT, path))
      }
    }
  }
  walk(join(ROOT, "scripts"))
  walk(join(ROOT, ".ci"))
  return found.sort()
}

describe("shellcheck", () => {
  it("lists every script of the repository", async () => {
    const listed = await run([SHELLCHECK, "--list"])
    expect(listed.code).toBe(0)
    const expected = expectedScripts()
    expect(expected).toContain(".ci/run")
    expect(expected).toContain("scripts/services/redis.sh")
    expect(listed.output.split("\n").filter((line) => line !== "")).toEqual(expect.arrayContaining(expected))
  })

  // installs shellcheck through scripts/services/lib.sh's ensure_apt when it is missing
  it("passes on every script", async () => {
    const result = await run([SHELLCHECK])
    expect(result.output).toContain(" clean")
    expect(result.code, result.output).toBe(0)
  }, 300_000)

  it("fails on a script with a finding", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chatify-shellcheck-"))
    try {
      const bad = join(dir, "bad.sh")
      writeFileSync(bad, "#!/usr/bin/env bash\necho $1\n")
      const result = await run([SHELLCHECK, bad])
      expect(result.code).not.toBe(0)
      expect(result.output).toContain("SC2086")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 300_000)
})

describe("service scripts: the start/stop lock", () => {
  // Its own cache dir (pid file, lock, config) and port: the shared redis of other tests is untouched.
  let cache = ""
  let port = 0
  let env: Record<string, string> = {}

  /** Live processes whose command line is our redis-server's ("redis-server 127.0.0.1:PORT"). */
  const redisProcesses = (): Array<number> =>
    readdirSync("/proc").filter((entry) => /^\d+$/u.test(entry)).flatMap((entry) => {
      try {
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " ")
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
        const state = stat.slice(stat.lastIndexOf(")") + 1).trim()[0] // "Z": exited, not reaped yet
        return cmdline.includes(`redis-server 127.0.0.1:${port}`) && state !== "Z" ? [Number(entry)] : []
      } catch {
        return [] // exited while we looked
      }
    })

  const pidFile = () => {
    try {
      return Number(readFileSync(join(cache, "run/redis.pid"), "utf8").trim())
    } catch {
      return undefined
    }
  }

  beforeAll(async () => {
    // install redis-server now if missing, through the shared cache's apt lock, not from four starts
    const fetched = await run([REDIS, "fetch"])
    expect(fetched.code, fetched.output).toBe(0)
    cache = mkdtempSync(join(tmpdir(), "chatify-scripts-"))
    port = await freePort()
    env = { CHATIFY_CACHE: cache, CHATIFY_REDIS_PORT: String(port) }
  }, 300_000)

  afterAll(async () => {
    await run([REDIS, "stop"], env)
    for (const pid of redisProcesses()) process.kill(pid, "SIGKILL")
    rmSync(cache, { recursive: true, force: true })
  })

  it("concurrent starts leave exactly one process: one starts it, the others wait and find it running", async () => {
    const starts = await Promise.all([1, 2, 3, 4].map(() => run([REDIS, "start"], env)))
    for (const start of starts) expect(start.code, start.output).toBe(0)
    const all = starts.map((start) => start.output).join("\n")
    expect(all.match(/starting redis-server/gu) ?? [], all).toHaveLength(1)
    expect(all.match(/already running/gu) ?? [], all).toHaveLength(3)

    const processes = redisProcesses()
    expect(processes).toHaveLength(1)
    expect(pidFile()).toBe(processes[0])
    expect((await run([REDIS, "status"], env)).output).toContain("answers PING")

    const stops = await Promise.all([run([REDIS, "stop"], env), run([REDIS, "stop"], env)])
    for (const stop of stops) expect(stop.code, stop.output).toBe(0)
    expect(redisProcesses()).toEqual([])
    expect(pidFile()).toBeUndefined()
  }, 120_000)

  it("start and stop wait for whoever holds the service lock", async () => {
    // hold the lock the way a slow first start would, for 1.5 s
    const holdLock = async (): Promise<{ readonly released: Promise<void> }> => {
      mkdirSync(join(cache, "locks"), { recursive: true })
      const holder = spawn("flock", [join(cache, "locks/redis.lock"), "-c", "echo held; sleep 1.5"], {
        stdio: ["ignore", "pipe", "inherit"]
      })
      const exited = new Promise<void>((resolve) => holder.on("exit", () => resolve()))
      await new Promise<void>((resolve) => holder.stdout.once("data", () => resolve()))
      return { released: exited } // wrapped: an async function would wait for a returned promise
    }

    const { released } = await holdLock()

    const start = await run([REDIS, "start"], env)
    expect(start.code, start.output).toBe(0)
    expect(start.output).toContain("waiting for it")
    expect(start.millis).toBeGreaterThanOrEqual(1_000)
    await released
    expect(redisProcesses()).toHaveLength(1)

    await holdLock()
    const stop = await run([REDIS, "stop"], env)
    expect(stop.code, stop.output).toBe(0)
    expect(stop.output).toContain("waiting for it")
    expect(stop.millis).toBeGreaterThanOrEqual(1_000)
    expect(redisProcesses()).toEqual([])
  }, 120_000)
})
