import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { SignJWT } from "jose"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startServerProcess } from "../../packages/server/test/support/serverProcess.js"

// The examples of examples/, run exactly as the README says (the package's scripts, as
// `pnpm --filter @chatify/examples <name>` runs them) against a started server, with and without
// authentication; and the README blocks that show them, compared with the files, so neither rots.

const EXAMPLES = fileURLToPath(new URL("../", import.meta.url))
const ROOT = fileURLToPath(new URL("../../", import.meta.url))
const read = (path: string) => readFileSync(join(ROOT, path), "utf8")
const scripts = (JSON.parse(read("examples/package.json")) as { scripts: Record<string, string> }).scripts

const SECRET = "an-examples-test-secret-of-32-bytes!"
const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
/** Generous: tsx compiles the SDK's sources first, which takes seconds on a loaded machine. */
const EXAMPLE_LIMIT_MILLIS = 60_000
const TEST_TIMEOUT = EXAMPLE_LIMIT_MILLIS + 30_000

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs the package script `name` the way pnpm does (sh -c, in examples/, its .bin on PATH); never rejects. */
const runExample = (name: string, env: Record<string, string>): Promise<Run> =>
  new Promise((resolve) => {
    const command = scripts[name]
    if (command === undefined) throw new Error(`examples/package.json has no script "${name}"`)
    const { CHATIFY_TOKEN: _ignored, ...inherited } = process.env
    const child = spawn("sh", ["-c", command], {
      cwd: EXAMPLES,
      env: {
        ...inherited,
        PATH: `${join(EXAMPLES, "node_modules/.bin")}:${join(ROOT, "node_modules/.bin")}:${process.env["PATH"] ?? ""}`,
        ...env
      },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true // its own process group, killed as a whole below
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    // an example that never exits is killed (code null) rather than hanging the test
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL")
    }, EXAMPLE_LIMIT_MILLIS)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })

const children: Array<ChildProcess> = []
const dataDirectories: Array<string> = []

const startServer = async (env: Record<string, string> = {}) => {
  const dataDirectory = mkdtempSync(join(tmpdir(), "chatify-examples-"))
  dataDirectories.push(dataDirectory)
  const server = startServerProcess(
    { CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory, CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0", ...env },
    children
  )
  return server.listening
}

afterAll(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL")
  for (const dir of dataDirectories.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** Asserts a run of the sdk or signalr example: it sent its message, received it back, and exited 0 on its own. */
const expectRoundTrip = (run: Run, sender: string, text: string) => {
  expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0)
  expect(run.stdout).toMatch(new RegExp(`^sent ${UUID} \\(partition \\d+, offset \\d+\\)$`, "mu"))
  expect(run.stdout).toMatch(new RegExp(`^received \\[general\\] ${sender}: ${text}$`, "mu"))
}

const expectRestWalkthrough = (run: Run, sender: string) => {
  expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0)
  const sent = new RegExp(`"senderId":"${sender}","text":"Hello from curl!"`, "gu")
  expect(run.stdout.match(sent)?.length, run.stdout).toBe(2) // the send's result, then the history
  expect(run.stdout).toContain(`"status":400`)
  expect(run.stdout).toContain(`"correlationId":"demo-1"`)
  expect(run.stdout).toMatch(/^HTTP 400$/mu)
}

describe("the examples, without authentication", () => {
  let url = ""
  beforeAll(async () => {
    url = await startServer()
  })

  it("sdk: subscribes, waits until live, sends, prints its message and exits 0", async () => {
    expectRoundTrip(await runExample("sdk", { CHATIFY_URL: url }), "anon_\\S+", "Hello from the SDK!")
  }, TEST_TIMEOUT)

  it("signalr: joins, sends, prints its message and exits 0", async () => {
    expectRoundTrip(await runExample("signalr", { CHATIFY_URL: url }), "anon_\\S+", "Hello from SignalR!")
  }, TEST_TIMEOUT)

  it("rest: sends, reads the history, shows a 400", async () => {
    expectRestWalkthrough(await runExample("rest", { CHATIFY_URL: url }), "anon_[^\"]+")
  }, TEST_TIMEOUT)
})

describe("the examples, with authentication (CHATIFY_TOKEN)", () => {
  let url = ""
  let token = ""
  beforeAll(async () => {
    url = await startServer({ CHATIFY__AUTH__HS256SECRET: SECRET })
    token = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("alice").setExpirationTime("10m")
      .sign(new TextEncoder().encode(SECRET))
  })

  it("sdk", async () => {
    expectRoundTrip(await runExample("sdk", { CHATIFY_URL: url, CHATIFY_TOKEN: token }), "alice", "Hello from the SDK!")
  }, TEST_TIMEOUT)

  it("signalr", async () => {
    expectRoundTrip(
      await runExample("signalr", { CHATIFY_URL: url, CHATIFY_TOKEN: token }),
      "alice",
      "Hello from SignalR!"
    )
  }, TEST_TIMEOUT)

  it("rest", async () => {
    expectRestWalkthrough(await runExample("rest", { CHATIFY_URL: url, CHATIFY_TOKEN: token }), "alice")
  }, TEST_TIMEOUT)

  // the SDK retries a refused upgrade as it retries a lost connection, so the example can only time
  // out: its message has to name the missing token, not just "no answer"
  it(
    "sdk without CHATIFY_TOKEN: exits 1 at once, saying the server refused the connection, naming CHATIFY_TOKEN",
    async () => {
      const started = Date.now()
      const run = await runExample("sdk", { CHATIFY_URL: url })
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(1)
      expect(run.stdout).not.toMatch(/^sent /mu)
      // NodeRuntime.runMain logs the cause with Effect's pretty logger, which writes to stdout
      expect(run.stdout).toContain(`${url} refused the connection`)
      expect(run.stdout).toContain("is CHATIFY_TOKEN a valid token?")
      // the refusal itself, not the example's 10 s timeout for a server that does not answer
      expect(run.stdout).not.toContain("no answer from")
      expect(Date.now() - started).toBeLessThan(10_000 + 30_000)
    },
    TEST_TIMEOUT
  )
})

describe("the READMEs", () => {
  const fenced = (markdown: string, language: string) =>
    [...markdown.matchAll(new RegExp(`^\`\`\`${language}\\n([\\s\\S]*?)^\`\`\`$`, "gmu"))].map((match) => match[1])

  it("show every example verbatim, and how to run it", () => {
    const readme = read("README.md")
    expect(fenced(readme, "ts")).toContain(read("examples/sdk.ts"))
    expect(fenced(readme, "js")).toContain(read("examples/signalr.mjs"))
    expect(fenced(readme, "bash")).toContain(read("examples/rest.sh"))
    for (const name of ["sdk", "signalr", "rest"]) {
      expect(scripts[name]).toBeDefined()
      expect(readme).toContain(`pnpm --filter @chatify/examples ${name}`)
    }
    const sdkReadme = read("packages/sdk/README.md")
    expect(fenced(sdkReadme, "ts")).toContain(read("examples/sdk.ts"))
    expect(sdkReadme).toContain("pnpm --filter @chatify/examples sdk")
  })

  it("Troubleshooting names the errors a new user meets, as the examples and the server word them", () => {
    const readme = read("README.md")
    // on one line: the markdown wraps an entry anywhere
    const troubleshooting = readme.slice(
      readme.indexOf("\n## Troubleshooting\n"),
      readme.indexOf("\n## How it works\n")
    ).replace(/\s+/gu, " ")
    expect(troubleshooting.length).toBeGreaterThan(100)
    const errors: ReadonlyArray<readonly [string, string | undefined]> = [
      ["curl: (7) Failed to connect to localhost port 8080", undefined], // curl's own words
      ["Error [ERR_MODULE_NOT_FOUND]: Cannot find package '@chatify/sdk'", undefined], // Node's own words
      ["no answer from", "examples/sdk.ts"],
      ["refused the connection", "examples/sdk.ts"],
      ["a bearer access token is required", "packages/server/src/Auth.ts"],
      ["the access token expired", "packages/server/src/Auth.ts"],
      ["is already in use (EADDRINUSE)", "packages/server/src/Server.ts"],
      // worded in packages/domain/src/Policy.ts, checked by packages/server/test/first-hour.test.ts
      ["must not start with \"dm:\" for a channel", undefined],
      ["must be the canonical direct-message id \"dm:alice:bob\"", undefined]
    ]
    for (const [error, source] of errors) {
      expect(troubleshooting, error).toContain(error)
      if (source !== undefined) expect(read(source), `${source} words it "${error}"`).toContain(error)
    }
    expect(troubleshooting).toContain("until curl -sf localhost:8080/health/ready; do sleep 1; done")
    expect(troubleshooting).toContain("**Authorize**")
  })

  it("wait until the server is ready wherever they start one in the background", () => {
    const wait = "until curl -sf localhost:8080/health/ready; do sleep 1; done"
    let backgroundStarts = 0
    for (const path of ["README.md", "packages/sdk/README.md"]) {
      for (const block of fenced(read(path), "(?:bash|sh|shell)")) {
        const lines = (block ?? "").split("\n").map((line) => line.replace(/\s+#.*$/u, "").trim()).filter((line) =>
          line !== ""
        )
        lines.forEach((line, index) => {
          if (!/&$/u.test(line) || !/start\.sh|main\.js|pnpm (run )?start/u.test(line)) return
          backgroundStarts++
          expect(lines[index + 1], `${path}: after "${line}"`).toBe(wait)
        })
      }
    }
    expect(backgroundStarts).toBeGreaterThan(0) // the authentication walkthrough at least
  })
})
