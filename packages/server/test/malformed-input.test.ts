/**
 * Regressions for what the fuzzers (fuzz-interfaces.test.ts) found: /rpc lines that crashed the
 * process or wedged the connection, characters split between binary frames, a multipart
 * content-type over a body that is none answered with a 500, /docs answering 499 for good after a
 * first visitor went away, and bytes Node cannot parse as HTTP answered without a ProblemDetails.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Logger, LogLevel, Schema } from "effect"
import { connect as tcpConnect } from "node:net"
import WebSocket from "ws"
import { PROBLEM_CONTENT_TYPE, ProblemDetails } from "@chatify/domain"
import { clientMessageProblem } from "../src/realtime/RpcSocketProtocol.js"
import { jsonNestsDeeperThan, MAX_JSON_BODY_DEPTH } from "../src/Http.js"
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

/**
 * Writes `bytes` on a fresh TCP connection to `port` and collects what comes back until the server
 * closes it (≤ 10 s); with `hangUp`, closes the connection as soon as the bytes are written.
 */
const rawHttp = (port: number, bytes: string | Buffer, hangUp = false) =>
  Effect.async<string>((resume) => {
    const socket = tcpConnect(port, "127.0.0.1")
    let received = ""
    const finish = () => {
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed(received))
    }
    const timer = setTimeout(finish, 10_000)
    socket.on("data", (chunk: Buffer) => received += chunk.toString("latin1"))
    socket.on("close", finish)
    socket.on("error", () => undefined)
    socket.write(bytes, () => {
      if (hangUp) socket.destroy()
    })
  })

/** The status, content type and body of each response in `text` (a raw HTTP/1.1 exchange, bodies with a Content-Length). */
const responsesIn = (text: string) => {
  const responses: Array<{ readonly status: number; readonly contentType: string | undefined; readonly body: string }> =
    []
  let rest = text
  while (rest.startsWith("HTTP/1.1 ")) {
    const headEnd = rest.indexOf("\r\n\r\n")
    if (headEnd < 0) break
    const head = rest.slice(0, headEnd)
    const length = Number(/^content-length: *(\d+)/imu.exec(head)?.[1] ?? 0)
    responses.push({
      status: Number(head.slice(9, 12)),
      contentType: /^content-type: *(.*)$/imu.exec(head)?.[1]?.trim(),
      body: rest.slice(headEnd + 4, headEnd + 4 + length)
    })
    rest = rest.slice(headEnd + 4 + length)
  }
  return responses
}

const decodeProblem = Schema.decodeUnknownSync(Schema.parseJson(ProblemDetails))

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
        // the line the fuzzer once saw closed with 1007: the close was the case before it's
        // (see the probe in fuzz-interfaces.test.ts); this line itself gets a Defect
        `{"_tag":"Ack","requestId":[]}`,
        `{"_tag":"Interrupt","requestId":{}}`,
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

  it.scopedLive("REST: a multipart content-type is a 400 naming the content type, whatever the body: none, empty, chunked, without a boundary", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const head = (contentType: string, framing: string) =>
        `POST /api/chat/send HTTP/1.1\r\nhost: x\r\ncontent-type: ${contentType}\r\n${framing}\r\n`
      const cases = [
        // a body that is not the multipart its content type says (was a 400 from the platform's reader)
        head("multipart/form-data; boundary=x", "content-length: 41\r\n") + `{"scopeType":0,"scopeId":"g","text":"t"}`,
        // an empty body, by length and chunked (the platform's reader waited for ever)
        head("multipart/form-data; boundary=x", "content-length: 0\r\n"),
        head("multipart/form-data; boundary=x", "transfer-encoding: chunked\r\n") + "0\r\n\r\n",
        // no boundary (was a 500)
        head("Multipart/mixed", "content-length: 0\r\n")
      ]
      for (const bytes of cases) {
        const [answer, ...more] = responsesIn(yield* rawHttp(server.port, bytes))
        expect(more, bytes).toEqual([])
        expect(answer?.status, bytes).toBe(400)
        expect(answer?.contentType).toBe(PROBLEM_CONTENT_TYPE)
        expect(JSON.parse(answer!.body)).toMatchObject({ status: 400, errors: [{ field: "content-type" }] })
      }
    }).pipe(quiet))

  it.scopedLive("REST: a body nested thousands deep, within the size limit, is a 400 naming the depth, not a 500", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const deep = (levels: number) => "[".repeat(levels) + "]".repeat(levels)
      // the fuzzer's case (seed 1130601, REST case 1644): the whole body, and a field's value
      for (const body of [deep(30_000), `{"scopeType":0,"scopeId":"g","text":${deep(30_000)}}`]) {
        const response = yield* Effect.promise(() =>
          fetch(`${server.httpUrl}/api/chat/send`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body
          })
        )
        expect(response.status).toBe(400)
        expect(response.headers.get("content-type")).toBe("application/problem+json")
        expect(yield* Effect.promise(() => response.json())).toMatchObject({
          status: 400,
          errors: [{ field: "body", message: `JSON nested deeper than ${MAX_JSON_BODY_DEPTH} levels` }]
        })
      }
      // as deep as the limit is still read, and answered by the contract (a wrong shape: 400 too)
      const atLimit = yield* Effect.promise(() =>
        fetch(`${server.httpUrl}/api/chat/send`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: `{"scopeType":0,"scopeId":"g","text":"t","extra":${deep(MAX_JSON_BODY_DEPTH - 1)}}`
        })
      )
      expect(atLimit.status).toBe(200)
    }).pipe(quiet))

  it.prop(
    "the JSON depth check agrees with a recursive count for any JSON value",
    { value: fc.jsonValue({ maxDepth: 12 }), maximum: fc.integer({ min: 0, max: 14 }) },
    ({ maximum, value }) => {
      const depthOf = (json: unknown): number =>
        typeof json !== "object" || json === null
          ? 0
          : 1 + Math.max(0, ...(Array.isArray(json) ? json : Object.values(json)).map(depthOf))
      expect(jsonNestsDeeperThan(value, maximum)).toBe(depthOf(value) > maximum)
    }
  )

  it.scopedLive("/hubs/chat: a record that is no hub message gets a Close with an error, as SignalR's own servers answer", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const RS = "\u001e"
      const records = yield* Effect.async<ReadonlyArray<Record<string, unknown>>>((resume) => {
        const ws = new WebSocket(`${server.httpUrl.replace("http", "ws")}/hubs/chat`)
        const received: Array<Record<string, unknown>> = []
        const timer = setTimeout(() => ws.terminate(), 10_000)
        ws.on("open", () => ws.send(`{"protocol":"json","version":1}${RS}{"_tag":"Ack","requestId":[]}${RS}`))
        ws.on("message", (data: Buffer) => {
          for (const record of data.toString("utf8").split(RS)) {
            if (record.length > 0) received.push(JSON.parse(record) as Record<string, unknown>)
          }
        })
        ws.on("close", () => {
          clearTimeout(timer)
          resume(Effect.succeed(received))
        })
        ws.on("error", () => undefined)
      })
      expect(records[0]).toEqual({})
      expect(records[1]?.["type"]).toBe(7)
      expect(String(records[1]?.["error"])).toContain("Invalid message")
    }).pipe(quiet))

  it.scopedLive("/docs: a first visitor who goes away while the page loads leaves /docs serving, not 499 for good", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      // the connection closes as the request is written, while the UI's module is still loading
      yield* rawHttp(server.port, "GET /docs HTTP/1.1\r\nhost: x\r\n\r\n", true)
      const response = yield* Effect.promise(() => fetch(`${server.httpUrl}/docs`))
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toContain("text/html")
    }).pipe(quiet))

  it.scopedLive("HTTP: bytes Node cannot parse as a request get a ProblemDetails with Node's status, then a close", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const cases = [
        { bytes: "GET / HTTP/1.1\r\nno colon here\r\n\r\n", status: 400 },
        { bytes: "G\u0000T / HTTP/1.1\r\nhost: x\r\n\r\n", status: 400 },
        { bytes: `GET /health/live HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`, status: 431 }
      ]
      for (const { bytes, status } of cases) {
        const responses = responsesIn(yield* rawHttp(server.port, bytes))
        expect(responses.at(-1)?.status).toBe(status)
        for (const response of responses) {
          expect(response.contentType).toBe(PROBLEM_CONTENT_TYPE)
          expect(decodeProblem(response.body).status).toBe(response.status)
        }
      }
      // and the server serves on
      const live = yield* Effect.promise(() => fetch(`${server.httpUrl}/health/live`))
      expect(live.status).toBe(200)
    }).pipe(quiet))

  it.scopedLive("HTTP: an HTTP/1.1 request without Host is a 400 ProblemDetails naming the header, then a close; HTTP/1.0 needs none", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      for (const path of ["/health/live", "/api/chat/scopes/0/general/history"]) {
        // the server closes the connection after its answer: rawHttp returns once it has
        const [missing, ...more] = responsesIn(yield* rawHttp(server.port, `GET ${path} HTTP/1.1\r\n\r\n`))
        expect(more).toEqual([])
        expect(missing?.status).toBe(400)
        expect(missing?.contentType).toBe(PROBLEM_CONTENT_TYPE)
        const problem = decodeProblem(missing!.body)
        expect(problem.status).toBe(400)
        expect(JSON.stringify(problem)).toContain("Host header")
      }
      const old = yield* rawHttp(server.port, "GET /health/live HTTP/1.0\r\n\r\n")
      expect(old).toMatch(/^HTTP\/1\.1 200 /u)
    }).pipe(quiet))
})
