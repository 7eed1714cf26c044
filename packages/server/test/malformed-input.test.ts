/**
 * Regressions for what the fuzzers (fuzz-interfaces.test.ts) found: /rpc lines that crashed the
 * process or wedged the connection, characters split between binary frames, and a multipart
 * content-type over a body that is none answered with a 500.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Logger, LogLevel } from "effect"
import WebSocket from "ws"
import { clientMessageProblem } from "../src/realtime/RpcSocketProtocol.js"
import { startTestServer } from "../src/testing.js"

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

interface Exchange {
  readonly lines: ReadonlyArray<Record<string, unknown>>
  readonly closeCode: number | undefined
}

/** Sends `frames` on a fresh /rpc socket and collects the lines it gets until `done` holds or it closes (≤ 10 s). */
const exchange = (
  url: string,
  frames: ReadonlyArray<string | Buffer>,
  done: (lines: ReadonlyArray<Record<string, unknown>>) => boolean
) =>
  Effect.async<Exchange>((resume) => {
    const ws = new WebSocket(url)
    const lines: Array<Record<string, unknown>> = []
    let finished = false
    const finish = (closeCode: number | undefined) => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      ws.terminate()
      resume(Effect.succeed({ lines, closeCode }))
    }
    const timer = setTimeout(() => finish(undefined), 10_000)
    ws.on("open", () => {
      for (const frame of frames) ws.send(frame, { binary: typeof frame !== "string" })
    })
    ws.on("message", (data: Buffer) => {
      for (const line of data.toString("utf8").split("\n")) {
        if (line.length > 0) lines.push(JSON.parse(line) as Record<string, unknown>)
      }
      if (done(lines)) finish(undefined)
    })
    ws.on("close", (code) => finish(code))
    ws.on("error", () => undefined)
  })

const hasPong = (lines: ReadonlyArray<Record<string, unknown>>) => lines.some((line) => line["_tag"] === "Pong")

describe("malformed input on a running server", () => {
  it.prop(
    "every JSON value is either a client message or a named problem, never an exception",
    [fc.jsonValue()],
    ([value]) => {
      const problem = clientMessageProblem(value)
      expect(problem === undefined || problem.length > 0).toBe(true)
    },
    { fastCheck: { numRuns: 2_000 } }
  )

  it("accepts what RpcClient sends and names the problem of what it never sends", () => {
    expect(clientMessageProblem({ _tag: "Request", id: "1", tag: "Send", payload: {}, headers: [] })).toBeUndefined()
    expect(clientMessageProblem({ _tag: "Ack", requestId: "7" })).toBeUndefined()
    expect(clientMessageProblem({ _tag: "Ping" })).toBeUndefined()
    expect(clientMessageProblem(null)).toBe("a message must be a JSON object")
    expect(clientMessageProblem({ _tag: "Ack", requestId: "abc" })).toContain("requestId")
    expect(clientMessageProblem({ _tag: "Interrupt", requestId: 1.5 })).toContain("requestId")
    expect(clientMessageProblem({ _tag: "Request", id: "1", tag: "Send", payload: {} })).toContain("headers")
    expect(clientMessageProblem({ _tag: "Request", id: "1", tag: "Send", payload: {}, headers: [[1, 2]] })).toContain(
      "headers"
    )
    expect(clientMessageProblem({ _tag: "Request", id: "x", tag: "Send", payload: {}, headers: [] })).toContain("id")
  })

  it.scopedLive("/rpc: a line that is no client message gets a Defect, and the connection and the process serve on", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      // each of these threw on the socket's event before, and took the process down
      const lines = [
        "null",
        "5",
        "[]",
        `{"_tag":"Ack","requestId":"abc"}`,
        `{"_tag":"Interrupt","requestId":"1.5"}`,
        `{"_tag":"Request","id":"1","tag":"Send","payload":{"scopeType":0,"scopeId":"g","text":"t"}}`,
        `{"_tag":"Request","id":"2","tag":"Presence","payload":{"scopeType":0,"scopeId":"g"},"headers":[[1,2]]}`,
        `{"_tag":"Ping"}`
      ]
      const answer = yield* exchange(server.wsUrl, [lines.map((line) => `${line}\n`).join("")], hasPong)
      expect(answer.closeCode).toBeUndefined()
      expect(answer.lines.filter((line) => line["_tag"] === "Defect")).toHaveLength(lines.length - 1)
      expect(hasPong(answer.lines)).toBe(true)
    }).pipe(quiet))

  it.scopedLive("/rpc: a line that is no JSON gets a Defect and a close with 1007, not a connection that fails every later line", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const answer = yield* exchange(server.wsUrl, ["{not json\n", `{"_tag":"Ping"}\n`], hasPong)
      expect(answer.lines[0]).toMatchObject({ _tag: "Defect" })
      expect(answer.closeCode).toBe(1007)
      // and the server serves the next connection
      const next = yield* exchange(server.wsUrl, [`{"_tag":"Ping"}\n`], hasPong)
      expect(hasPong(next.lines)).toBe(true)
    }).pipe(quiet))

  it.scopedLive("/rpc: a Send split inside a character between binary frames arrives whole", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const text = "x😀€é"
      const line = Buffer.from(
        `${
          JSON.stringify({
            _tag: "Request",
            id: "9",
            tag: "Send",
            payload: { scopeType: 0, scopeId: "split", text },
            headers: []
          })
        }\n`
      )
      // one frame per byte: every character of more than one byte is split
      const frames = Array.from({ length: line.length }, (_, i) => line.subarray(i, i + 1))
      const answer = yield* exchange(server.wsUrl, frames, (lines) => lines.some((l) => l["_tag"] === "Exit"))
      expect(answer.lines.find((l) => l["_tag"] === "Exit")).toMatchObject({
        requestId: "9",
        exit: { _tag: "Success", value: { chatEvent: { text } } }
      })
    }).pipe(quiet))

  it.scopedLive("REST: a multipart content-type over a body that is none is a 400, not a 500", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const response = yield* Effect.promise(() =>
        fetch(`${server.httpUrl}/api/chat/send/`, {
          method: "POST",
          headers: { "content-type": "multipart/form-data; boundary=x" },
          body: `{"scopeType":0,"scopeId":"g","text":"t"}`
        })
      )
      expect(response.status).toBe(400)
      expect(response.headers.get("content-type")).toBe("application/problem+json")
      expect(yield* Effect.promise(() => response.json())).toMatchObject({ status: 400, errors: [{ field: "body" }] })
    }).pipe(quiet))
})
