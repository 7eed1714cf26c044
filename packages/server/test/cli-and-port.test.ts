/**
 * Issue 15, items 4 and 8, as a person meets them: `mint-token --help` and already-expired tokens
 * (the CLI from source, as ./scripts/mint-token.sh runs it built), and the server started on a
 * port that is taken.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Logger, LogLevel, Option, Redacted } from "effect"
import { decodeJwt } from "jose"
import { afterEach, describe, expect, it } from "vitest"
import { makeJwtAuthenticator } from "../src/index.js"
import { startServerProcess } from "./support/serverProcess.js"

const MINT = new URL("../src/cli/mintToken.ts", import.meta.url).pathname
const SECRET = "a-mint-token-test-secret-of-32-b!"

const children: Array<ChildProcess> = []
const cleanups: Array<() => void> = []
afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL")
  for (const cleanup of cleanups.splice(0)) cleanup()
})

const mint = (args: ReadonlyArray<string>, env: Record<string, string> = { CHATIFY__AUTH__HS256SECRET: SECRET }) =>
  new Promise<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }>((resolve) => {
    const { CHATIFY__AUTH__HS256SECRET: _, CHATIFY__AUTH__ISSUER: __, CHATIFY__AUTH__AUDIENCE: ___, ...rest } =
      process.env
    const child = spawn(process.execPath, ["--import", "tsx", MINT, ...args], { env: { ...rest, ...env } })
    children.push(child)
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("exit", (code) => resolve({ code, stdout, stderr }))
  })

const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/u

/** What the server says of a token, with the default clock skew (30 s). */
const verdict = (token: string) =>
  Effect.runPromise(
    Effect.flatMap(
      makeJwtAuthenticator({
        keys: { _tag: "Secret", secret: Redacted.make(SECRET) },
        issuer: undefined,
        audience: undefined,
        algorithms: undefined,
        clockSkewSeconds: 30,
        requireExpiration: true
      }),
      (auth) =>
        Effect.match(auth.authenticate(token, "c1"), {
          onFailure: (e) => e.message,
          onSuccess: (p) => `accepted ${p.userId}`
        })
    ).pipe(Effect.orDie, Logger.withMinimumLogLevel(LogLevel.Error))
  )

describe("mint-token (item 4)", () => {
  it("--help prints the usage, with how to show expiry and the clock skew setting, and no token", async () => {
    for (const args of [["--help"], ["-h"], ["alice", "--help"]]) {
      const { code, stderr, stdout } = await mint(args)
      expect(code, args.join(" ")).toBe(0)
      expect(stdout).toMatch(/^usage: /u)
      expect(stdout).toContain("CHATIFY__AUTH__CLOCKSKEWSECONDS")
      expect(stdout).toContain("0 or negative")
      expect(stdout.split(/\s+/u).some((word) => JWT.test(word))).toBe(false)
      expect(stderr).toBe("")
      // as in the READMEs: a server started in the background is waited for before the token is used
      const lines = stdout.split("\n").map((line) => line.trim())
      const backgroundStart = lines.findIndex((line) => /start\.sh &$/u.test(line))
      expect(backgroundStart).toBeGreaterThan(-1)
      expect(lines[backgroundStart + 1]).toBe("until curl -sf localhost:8080/health/ready; do sleep 1; done")
    }
    // without a secret too: help needs none
    expect((await mint(["--help"], {})).code).toBe(0)
  }, 60_000)

  it("0 and negative lifetimes mint an already expired token, which the server refuses past its skew", async () => {
    const expired = await mint(["bob", "-60"])
    expect(expired.code).toBe(0)
    const token = expired.stdout.trim()
    expect(token).toMatch(JWT)
    const claims = decodeJwt(token)
    expect(claims.sub).toBe("bob")
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(-60)
    expect(expired.stderr).toContain("expired 60 s ago")
    expect(await verdict(token)).toBe("the access token expired")

    const now = await mint(["bob", "0"])
    expect(now.code).toBe(0)
    const atOnce = decodeJwt(now.stdout.trim())
    expect(atOnce.exp).toBe(atOnce.iat)
    // within the default skew: still accepted, as the help says
    expect(await verdict(now.stdout.trim())).toBe("accepted bob")

    const valid = await mint(["alice"])
    expect(valid.stderr).toBe("")
    expect(await verdict(valid.stdout.trim())).toBe("accepted alice")
  }, 60_000)

  it("refuses what it cannot use, with the usage on stderr and exit code 2", async () => {
    for (const args of [["--bogus"], ["alice", "soon"], ["alice", "1.5"], ["alice", "60", "extra"], []]) {
      const { code, stderr, stdout } = await mint(args)
      expect(code, args.join(" ")).toBe(2)
      expect(stdout).toBe("")
      expect(stderr).toContain("usage: ")
    }
    expect((await mint(["alice"], {})).code).toBe(2)
  }, 60_000)
})

describe("a busy port (item 8)", () => {
  it("stops with one error line naming the address and EADDRINUSE, and a non-zero exit code", async () => {
    const occupant: Server = createServer()
    await new Promise<void>((resolve) => occupant.listen(0, "127.0.0.1", resolve))
    cleanups.push(() => occupant.close())
    const address = occupant.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    const dir = mkdtempSync(join(tmpdir(), "chatify-busy-port-"))
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))

    const server = startServerProcess({ PORT: String(port), CHATIFY__EMBEDDED__DATADIRECTORY: dir }, children)
    const code = await server.exited
    expect(code).not.toBe(0)
    expect(code).not.toBeNull()
    const errors = server.output().split("\n").filter((line) => line.includes("\"level\":\"ERROR\""))
    expect(errors, server.output()).toHaveLength(1)
    const message = Option.getOrThrow(
      Option.fromNullable((JSON.parse(errors[0] ?? "{}") as { readonly message?: string }).message)
    )
    expect(message).toBe(
      `PORT: 127.0.0.1:${port} is already in use (EADDRINUSE): another process listens there; stop it, or set PORT to another ` +
        "port (0 picks a free one)"
    )
    expect(server.output()).not.toContain("ServeError")
  }, 60_000)
})
