import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Either, Schema } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { HISTORY_WRITER_GROUP } from "@chatify/core"
import { ProblemDetails } from "@chatify/domain"
import { readEmbeddedData } from "../../adapters/test/support/embeddedData.js"
import { freePort, startServerProcess } from "./support/serverProcess.js"

const children: Array<ChildProcess> = []
const directories: Array<string> = []

afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL")
  for (const dir of directories.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** Two process starts (each compiling the server through tsx) and a drain: well over a minute on a loaded box. */
const SIGTERM_TEST_TIMEOUT = 150_000

/** No drain delay unless a test sets one: these tests count on the drain starting at SIGTERM. */
const start = (env: Record<string, string>) =>
  startServerProcess({ CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0", ...env }, children)

const dataDirectory = () => {
  const dir = mkdtempSync(join(tmpdir(), "chatify-process-"))
  directories.push(dir)
  return dir
}

/**
 * Whose 503 a refused send got: the drain's (ShutdownGate: new sends refused while the routes still
 * serve), the stopping server's (the routes gone, a request still reached the listener), or another.
 */
const refusedBy = (body: string): "drain" | "stopping server" | "unknown" =>
  Either.match(Schema.decodeUnknownEither(Schema.parseJson(ProblemDetails))(body), {
    onLeft: () => "unknown",
    onRight: (problem) =>
      problem.type === "urn:chatify:problem:dependency-unavailable" && problem.detail === "chat-api is unavailable"
        ? "drain"
        : problem.type === "about:blank" && problem.detail === "the server is stopping"
        ? "stopping server"
        : "unknown"
  })

const send = (base: string, text: string) =>
  fetch(`${base}/api/chat/send`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ scopeType: 0, scopeId: "general", text })
  })

/**
 * The drain's work, read from the data directory of a process that has exited, before a restart
 * could catch up on it: the history writer committed up to the log's end on every partition, and
 * the history holds every record of the log and every acknowledged send.
 */
const expectDrained = (dir: string, acknowledged: ReadonlyArray<string>) => {
  const data = readEmbeddedData(dir)
  expect(data.logEndOffsets.size).toBeGreaterThan(0)
  expect(Object.fromEntries(data.committedOffsets(HISTORY_WRITER_GROUP))).toEqual(
    Object.fromEntries(data.logEndOffsets)
  )
  const stored = new Set(data.historyMessageIds)
  expect(data.logMessageIds.filter((id) => !stored.has(id))).toEqual([])
  expect(acknowledged.filter((id) => !stored.has(id))).toEqual([])
}

describe("the server process", () => {
  it("answers /health/* at once while it still waits for a dependency at startup", async () => {
    const [port, deadKafka, deadCassandra] = await Promise.all([freePort(), freePort(), freePort()])
    const running = start({
      PORT: String(port),
      CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory(),
      // nothing listens there: startup waits for the log and the history store with backoff
      CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: `127.0.0.1:${deadKafka}`,
      CHATIFY__DATABASE__CONTACTPOINTS: "127.0.0.1",
      CHATIFY__DATABASE__PORT: String(deadCassandra)
    })
    // the process waits for Cassandra, logging so, once it is far enough to have its HTTP server
    const waiting = async (): Promise<void> => {
      for (let attempt = 0; attempt < 600 && !/Waiting for cassandra/u.test(running.output()); attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    await waiting()
    expect(running.output()).toMatch(/Waiting for cassandra/u)
    // a probe gets an answer (a hang fails the test by its timeout), not a connection left open
    const ready = await fetch(`http://127.0.0.1:${port}/health/ready`)
    expect(ready.status).toBe(503)
    expect(ready.headers.get("retry-after")).toBe("1")
    expect(await ready.json()).toEqual({ status: "Unhealthy", checks: { server: "starting" } })
    const startup = await fetch(`http://127.0.0.1:${port}/health/startup`)
    expect(startup.status).toBe(503)
    const live = await fetch(`http://127.0.0.1:${port}/health/live`)
    expect(live.status).toBe(200)
    const other = await fetch(`http://127.0.0.1:${port}/api/chat/scopes/0/general/presence`)
    expect(other.status).toBe(503)
    expect(other.headers.get("content-type")).toBe("application/problem+json")
  }, 90_000)

  it("refuses to start on a bad configuration value and names the key", async () => {
    const server = start({
      CHATIFY__MESSAGEBROKER__PARTITIONS: "many",
      CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory()
    })
    expect(await server.exited).toBe(1)
    expect(server.output()).toContain("CHATIFY__MESSAGEBROKER__PARTITIONS")
    expect(server.output()).not.toContain("Listening on")
  })

  it("refuses an unsafe combination with one line naming the variable: the embedded log with a Cassandra history", async () => {
    const server = start({
      CHATIFY__DATABASE__CONTACTPOINTS: "127.0.0.1",
      CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory()
    })
    expect(await server.exited).toBe(1)
    const errors = server.output().split("\n").filter((line) => line.includes("\"level\":\"ERROR\""))
    expect(errors).toHaveLength(1)
    expect(errors[0]).toContain("CHATIFY__DATABASE__CONTACTPOINTS: a Cassandra history needs the Kafka log")
    expect(server.output()).not.toContain("Listening on")
  })

  it(
    "holds its data directory: a second process on it refuses to start, a restart after SIGKILL does not wait",
    async () => {
      const dir = dataDirectory()
      const first = start({ CHATIFY__EMBEDDED__DATADIRECTORY: dir, POD_NAME: "pod-a" })
      const base = await first.listening
      expect((await send(base, "before")).status).toBe(200)

      const second = start({ CHATIFY__EMBEDDED__DATADIRECTORY: dir, POD_NAME: "pod-b" })
      const outcome = await second.listening.then(
        () => "listening",
        () => second.exited.then((code) => `exited with ${code}`)
      )
      expect(outcome).toBe("exited with 1")
      const errors = second.output().split("\n").filter((line) => line.includes("\"level\":\"ERROR\""))
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(
        new RegExp(
          `CHATIFY__EMBEDDED__DATADIRECTORY: ${dir} is in use by another Chatify process \\(pid ${first.child.pid} on `,
          "u"
        )
      )
      expect(second.output()).not.toContain("Listening on")
      // the first one was not disturbed
      expect((await send(base, "still here")).status).toBe(200)

      // a crash leaves no stale lock behind: the kernel drops it with the process
      first.child.kill("SIGKILL")
      await first.exited
      const third = start({ CHATIFY__EMBEDDED__DATADIRECTORY: dir, POD_NAME: "pod-a" })
      const again = await third.listening
      const page = await fetch(`${again}/api/chat/scopes/0/general/history?limit=10`)
      expect(page.status).toBe(200)
      third.child.kill("SIGTERM")
      expect(await third.exited).toBe(0)
    },
    90_000
  )

  it("stops gracefully on SIGTERM with every acknowledged message in the history after a restart", async () => {
    const dir = dataDirectory()
    const first = start({ CHATIFY__EMBEDDED__DATADIRECTORY: dir, POD_NAME: "pod-a" })
    const base = await first.listening
    const responses = await Promise.all(Array.from({ length: 50 }, (_, i) => send(base, `message ${i}`)))
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200))
    const acknowledged = await Promise.all(
      responses.map(async (r) => ((await r.json()) as { chatEvent: { messageId: string } }).chatEvent.messageId)
    )
    first.child.kill("SIGTERM")
    expect(await first.exited).toBe(0)
    expect(first.output()).toContain("Shutting down")
    expectDrained(dir, acknowledged)

    const second = start({ CHATIFY__EMBEDDED__DATADIRECTORY: dir, POD_NAME: "pod-a" })
    const again = await second.listening
    const page = await fetch(`${again}/api/chat/scopes/0/general/history?limit=500`)
    expect(page.status).toBe(200)
    const body = (await page.json()) as { items: ReadonlyArray<{ chatEvent: { messageId: string } }> }
    expect(body.items.map((i) => i.chatEvent.messageId).sort()).toEqual([...acknowledged].sort())
    second.child.kill("SIGTERM")
    expect(await second.exited).toBe(0)
  }, SIGTERM_TEST_TIMEOUT)

  it("keeps every acknowledged send when SIGTERM arrives while sends are in flight", async () => {
    const dir = dataDirectory()
    const first = start({
      CHATIFY__EMBEDDED__DATADIRECTORY: dir,
      POD_NAME: "pod-a",
      CHATIFY__RATELIMIT__LIMIT: "100000"
    })
    const base = await first.listening
    const acknowledged: Array<string> = []
    // apart: the statuses the process answered with, and the sends it did not answer (connections
    // refused or closed once it stopped serving), which are no refusal of the drain's
    const refused: Array<{ readonly status: number; readonly by: ReturnType<typeof refusedBy> }> = []
    const networkErrors: Array<string> = []
    let sigtermSent = false
    let attempts = 0
    const worker = async () => {
      // bounded: at most 400 attempts in all, and every one ends once the server is gone
      while (attempts < 400) {
        attempts++
        if (acknowledged.length >= 60 && !sigtermSent) {
          sigtermSent = true
          first.child.kill("SIGTERM")
        }
        try {
          const response = await send(base, `in flight ${attempts}`)
          if (response.status === 200) {
            acknowledged.push(((await response.json()) as { chatEvent: { messageId: string } }).chatEvent.messageId)
          } else {
            refused.push({ status: response.status, by: refusedBy(await response.text()) })
          }
        } catch (error) {
          networkErrors.push(String(error))
        }
      }
    }
    await Promise.all(Array.from({ length: 16 }, worker))
    expect(await first.exited).toBe(0)
    expect(acknowledged.length).toBeGreaterThanOrEqual(60)
    // new sends were refused with a 503 ProblemDetails, the drain's or (once the routes are gone, which
    // comes within milliseconds of the drain here) the stopping server's, and with nothing else; at least
    // one came back: a connection refused or closed is no answer
    const counts = `${refused.length} refused, ${networkErrors.length} network errors`
    expect(refused.filter((r) => r.status !== 503 || r.by === "unknown"), counts).toEqual([])
    expect(refused.length, counts).toBeGreaterThan(0)
    expectDrained(dir, acknowledged)

    const second = start({ CHATIFY__EMBEDDED__DATADIRECTORY: dir, POD_NAME: "pod-a" })
    const again = await second.listening
    const page = await fetch(`${again}/api/chat/scopes/0/general/history?limit=500`)
    const body = (await page.json()) as { items: ReadonlyArray<{ chatEvent: { messageId: string } }> }
    const stored = new Set(body.items.map((i) => i.chatEvent.messageId))
    expect(acknowledged.filter((id) => !stored.has(id))).toEqual([])
    second.child.kill("SIGTERM")
    expect(await second.exited).toBe(0)
  }, SIGTERM_TEST_TIMEOUT)
})
