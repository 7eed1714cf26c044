/**
 * scripts/services/jaeger.sh on a cache of its own (the binary linked in from the real cache, so
 * nothing is built twice) and free ports, so the Jaeger that other tests use is left alone: two
 * concurrent starts leave one process, listening on loopback only, a third start finds it; status
 * tells running from stopped; stop ends it and frees its ports.
 */
import { execFile, execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs"
import { homedir, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freePort } from "./support/serverProcess.js"

const SCRIPT = fileURLToPath(new URL("../../../scripts/services/jaeger.sh", import.meta.url))
const VERSION = process.env["CHATIFY_JAEGER_VERSION"] ?? "1.76.0"
const REAL_CACHE = process.env["CHATIFY_CACHE"] ?? join(homedir(), ".cache", "chatify")

const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  new Promise<{ readonly code: number; readonly output: string }>((resolve) => {
    execFile(
      "bash",
      [SCRIPT, ...args],
      { env: { ...process.env, ...env }, timeout: 600_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
        resolve({ code, output: `${stdout}${stderr}` })
      }
    )
  })

const cache = mkdtempSync(join(tmpdir(), "chatify-jaeger-script-"))
let env: Record<string, string> = {}

beforeAll(async () => {
  // the real cache's binary (built by the first fetch, a few CPU-minutes), linked into this cache
  const fetched = await run(["fetch"])
  expect(fetched.code, fetched.output).toBe(0)
  mkdirSync(join(cache, "lib"), { recursive: true })
  symlinkSync(join(REAL_CACHE, "lib", `jaeger-${VERSION}`), join(cache, "lib", `jaeger-${VERSION}`))
  env = {
    CHATIFY_CACHE: cache,
    CHATIFY_JAEGER_OTLP_PORT: String(await freePort()),
    CHATIFY_JAEGER_QUERY_PORT: String(await freePort()),
    CHATIFY_JAEGER_QUERY_GRPC_PORT: String(await freePort())
  }
}, 900_000)

afterAll(async () => {
  await run(["stop"], env)
  rmSync(cache, { recursive: true, force: true })
})

const pidOf = () => Number(readFileSync(join(cache, "run", "jaeger.pid"), "utf8").trim())

/** Listening TCP sockets as `address:port` (127.0.0.1, or * for every interface), from /proc/net/tcp{,6}. */
const listeningPorts = (): ReadonlyArray<string> =>
  ["/proc/net/tcp", "/proc/net/tcp6"].flatMap((file) =>
    readFileSync(file, "utf8").split("\n").slice(1).flatMap((line) => {
      const [, local, , state] = line.trim().split(/\s+/u)
      if (state !== "0A" || local === undefined) return [] // 0A: LISTEN
      const [address = "", port = ""] = local.split(":")
      const host = address === "0100007F" ? "127.0.0.1" : /^0+$/u.test(address) ? "*" : address
      return [`${host}:${Number.parseInt(port, 16)}`]
    })
  )

describe("scripts/services/jaeger.sh", () => {
  it("start (twice at once, then again), status, OTLP and query on loopback, stop", async () => {
    const [first, second] = await Promise.all([run(["start"], env), run(["start"], env)])
    expect(first.code, first.output).toBe(0)
    expect(second.code, second.output).toBe(0)
    const pid = pidOf()
    const again = await run(["start"], env)
    expect(again.output).toContain(`already running (pid ${pid}`)
    expect(pidOf()).toBe(pid)
    // one jaeger under this cache: the pid file's
    const mine = execFileSync("pgrep", ["-f", join(cache, "lib")], { encoding: "utf8" }).trim().split("\n")
    expect(mine).toEqual([String(pid)])

    const otlp = env["CHATIFY_JAEGER_OTLP_PORT"]!
    const query = env["CHATIFY_JAEGER_QUERY_PORT"]!
    const accepted = await fetch(`http://127.0.0.1:${otlp}/v1/traces`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ resourceSpans: [] })
    })
    expect(accepted.status).toBe(200)
    expect((await fetch(`http://127.0.0.1:${query}/api/services`)).status).toBe(200)
    const ports = listeningPorts()
    for (const port of [otlp, query, env["CHATIFY_JAEGER_QUERY_GRPC_PORT"]!]) {
      expect(ports).toContain(`127.0.0.1:${port}`)
      // not on every interface
      expect(ports).not.toContain(`*:${port}`)
    }

    expect((await run(["status"], env)).code).toBe(0)
    const stopped = await run(["stop"], env)
    expect(stopped.code, stopped.output).toBe(0)
    expect((await run(["status"], env)).code).toBe(1)
    expect(listeningPorts()).not.toContain(`127.0.0.1:${query}`)
    expect((await run(["stop"], env)).output).toContain("not running")
  }, 120_000)
})
