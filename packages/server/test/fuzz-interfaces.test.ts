/**
 * Fuzzing every way into a running server (a real child process, so a crash is a process exit):
 * /rpc ndjson frames, /hubs/chat records, REST requests and bearer tokens, generated with
 * fast-check from a printed seed (FUZZ_SEED replays a run, FUZZ_RUNS sets the cases per interface;
 * `pnpm bench:fuzz` runs the full count). One server takes every interface's cases, several
 * connections at a time. After each interface: the process still runs, logged nothing fatal, and
 * its RSS grew by a bounded amount.
 */
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { Agent, request as httpRequest } from "node:http"
import { connect as tcpConnect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { FastCheck as fc, Schema } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import { PROBLEM_CONTENT_TYPE, ProblemDetails } from "@chatify/domain"
import { authEnvironment, forgedTokens, makeTokenKeys, type TokenKeys, validToken } from "./support/forgedTokens.js"
import {
  casesOf,
  describeCase,
  forEachConcurrently,
  fuzzSettings,
  requestedRuns,
  residentMiB,
  timeoutFor
} from "./support/fuzz.js"
import { type ServerProcess, startServerProcess } from "./support/serverProcess.js"

/**
 * Cases per interface in the normal suite (FUZZ_RUNS overrides; `pnpm bench:fuzz` runs 100,000):
 * the five interfaces' 10,000 each take about 2 minutes on the 2-core box (2026-11-30).
 */
const DEFAULT_RUNS = 10_000
/**
 * Connections (WebSockets) or requests in flight at a time: enough to keep both the server and
 * this process busy on a 2-core box, where one at a time leaves each waiting on the other.
 */
const CONCURRENCY = 8
/** How much the server's RSS may grow over one interface's cases. */
const RSS_GROWTH_BOUND_MIB = 150
const MAX_FRAME_BYTES = 65_536
const MAX_BODY_BYTES = 65_536
/** Node's own bound on a request head (--max-http-header-size): beyond it, a 431 or a closed connection. */
const MAX_HEAD_BYTES = 16_384
const CASE_TIMEOUT_MS = 10_000
const TEST_TIMEOUT_MS = timeoutFor(requestedRuns(DEFAULT_RUNS), 50)

const children: Array<ChildProcess> = []
let directory = ""
let keys: TokenKeys
let server: ServerProcess
let base = ""
let token = ""

const pidOf = () => server.child.pid ?? -1

beforeAll(async () => {
  directory = mkdtempSync(join(tmpdir(), "chatify-fuzz-"))
  keys = makeTokenKeys()
  token = validToken(keys)
  server = startServerProcess({
    ...authEnvironment(keys, directory),
    CHATIFY__EMBEDDED__DATADIRECTORY: join(directory, "data"),
    CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0",
    // the fuzzers send and read far more than a user may: limits are not under test here
    CHATIFY__RATELIMIT__LIMIT: "1000000000",
    CHATIFY__RATELIMIT__READLIMIT: "1000000000",
    CHATIFY__LIMITS__MAXCONNECTSPERSECONDPERADDRESS: "1000000",
    CHATIFY__LIMITS__MAXFRAMEBYTES: String(MAX_FRAME_BYTES),
    CHATIFY__LIMITS__MAXBODYBYTES: String(MAX_BODY_BYTES)
  }, children)
  base = await server.listening
}, 120_000)

afterAll(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL")
  if (directory !== "") rmSync(directory, { recursive: true, force: true })
})

/** The server's log lines above INFO, the last few. */
const notableOutput = () =>
  server.output().split("\n").filter((line) => line.length > 0 && !/"(log)?[lL]evel":"(INFO|DEBUG)"/u.test(line)).slice(
    -8
  ).join("\n")

/** The process still runs (no crash, no exit) and logged nothing fatal. */
const expectServing = () => {
  expect(server.child.exitCode, server.output().slice(-4_000)).toBeNull()
  expect(server.child.signalCode).toBeNull()
  expect(server.output()).not.toMatch(/"(log)?[lL]evel":"FATAL"|Uncaught|unhandled/u)
}

/** Runs `cases` through `check`, reports the failing case with its index, and checks the process after. */
const fuzz = async <A>(
  name: string,
  arbitrary: fc.Arbitrary<A>,
  check: (item: A, index: number, worker: number) => Promise<void>
) => {
  const settings = fuzzSettings(name, DEFAULT_RUNS)
  const rssBefore = residentMiB(pidOf())
  const started = Date.now()
  let generating = 0
  // generated in slices, so a full run never holds 100,000 cases at once
  const slice = 2_000
  for (let from = 0; from < settings.runs; from += slice) {
    const generatingFrom = Date.now()
    const cases = casesOf(arbitrary, settings, from, Math.min(slice, settings.runs - from))
    generating += Date.now() - generatingFrom
    await forEachConcurrently(cases, CONCURRENCY, async (item, index, worker) => {
      try {
        await check(item, from + index, worker)
      } catch (error) {
        throw new Error(
          `${name} case ${from + index} (seed ${settings.seed}) failed: ${String(error)}\ncase: ${
            describeCase(item)
          }\n` +
            `server warnings and errors (last ones):\n${notableOutput()}`
        )
      }
    })
    expectServing()
  }
  const rssAfter = residentMiB(pidOf())
  console.log(
    `[fuzz] ${name}: ${settings.runs} cases in ${((Date.now() - started) / 1000).toFixed(1)} s ` +
      `(${(generating / 1000).toFixed(1)} s generating them), ` +
      `server RSS ${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MiB`
  )
  expectServing()
  expect(rssAfter - rssBefore).toBeLessThan(RSS_GROWTH_BOUND_MIB)
}

// ---------------------------------------------------------------------------------------------
// HTTP

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
afterAll(() => agent.destroy())

interface HttpCall {
  readonly method: string
  readonly path: string
  readonly headers: Record<string, string>
  readonly body?: Uint8Array | undefined
}

interface HttpAnswer {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: string
}

const callOn = (input: HttpCall, through: Agent | false) =>
  new Promise<HttpAnswer>((resolve, reject) => {
    const url = new URL(base)
    const request = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        method: input.method,
        path: input.path,
        // a body always with its length: Node's client frames none for GET, HEAD, DELETE and
        // OPTIONS, and an unframed body is read as the next request on the connection
        headers: input.body === undefined ? input.headers : { ...input.headers, "content-length": input.body.length },
        agent: through
      },
      (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks).toString("utf8")
          }))
        response.on("error", reject)
      }
    )
    request.on("error", reject)
    request.setTimeout(CASE_TIMEOUT_MS, () => request.destroy(new Error("no answer in time")))
    request.end(input.body)
  })

/**
 * A call on a kept-alive connection; if that connection fails (the server may have closed it after
 * the previous answer), once more on a fresh one, where a failure is the request's own.
 */
const call = (input: HttpCall) => callOn(input, agent).catch(() => callOn(input, false))

const decodeProblem = Schema.decodeUnknownSync(Schema.parseJson(ProblemDetails))

/** No 5xx (nothing drains here); a refusal is a ProblemDetails whose status is the response's. */
const expectTypedAnswer = (answer: HttpAnswer, method: string) => {
  expect(answer.status, answer.body).toBeLessThan(500)
  if (answer.status < 400 || method === "HEAD") return
  expect(answer.headers["content-type"], answer.body).toBe(PROBLEM_CONTENT_TYPE)
  expect(decodeProblem(answer.body).status).toBe(answer.status)
}

const printable = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)),
  maxLength: 80
})
const anyText = fc.string({ unit: "binary", maxLength: 80 })
const encoded = anyText.map(encodeURIComponent)
const scopeIdLike = fc.oneof(
  fc.constant("general"),
  encoded,
  printable.map((s) => s.replace(/[/?#%\s]/gu, "_")),
  fc.constant("dm%3Aa%3Ab")
)
const scopeTypeLike = fc.oneof(
  fc.constantFrom("0", "1", "2", "-1", "01", "1e3", "x", "", "9007199254740993"),
  printable.map(encodeURIComponent)
)
const pathOf = fc.oneof(
  fc.tuple(scopeTypeLike, scopeIdLike, fc.constantFrom("history", "presence", "", "history/x", "nope"))
    .map(([type, id, tail]) => `/api/chat/scopes/${type}/${id}/${tail}`),
  fc.constantFrom(
    "/api/chat/send",
    "/api/chat/send/",
    "/api/chat//send",
    "/health/live",
    "/health/ready",
    "/health/startup",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/hubs/chat/negotiate",
    "/hubs/chat",
    "/rpc",
    "/",
    "/%",
    "/%zz",
    "/..%2f..%2fetc%2fpasswd",
    "/api/../api/chat/send",
    "//api/chat/send"
  ),
  fc.webPath().map((path) => (path.startsWith("/") ? path : `/${path}`)),
  fc.integer({ min: 1_000, max: 12_000 }).map((n) => `/api/chat/scopes/0/${"s".repeat(n)}/history`)
)
const queryOf = fc.oneof(
  fc.constant(""),
  fc.array(
    fc.tuple(
      fc.constantFrom("limit", "before", "access_token", "negotiateVersion", "id", "x"),
      fc.oneof(fc.constantFrom("0", "1", "-1", "50", "1001", "1.5", "1e9", "NaN", "", "9".repeat(40)), encoded)
    ),
    { maxLength: 5 }
  ).map((pairs) => `?${pairs.map(([key, value]) => `${key}=${value}`).join("&")}`),
  fc.webQueryParameters().map((query) => `?${query}`)
)
const sendPayloadLike = fc.record({
  scopeType: fc.oneof(fc.constantFrom<unknown>(0, 1, 2, -1, "0", null, 0.5, 1e308), fc.jsonValue()),
  scopeId: fc.oneof(fc.constant<unknown>("general"), fc.string({ maxLength: 300 }), fc.jsonValue()),
  text: fc.oneof(fc.constant<unknown>("hello"), fc.string({ maxLength: 5_000 }), fc.jsonValue()),
  clientMessageId: fc.oneof(fc.string({ maxLength: 300 }), fc.jsonValue())
}, { requiredKeys: [] })
const deepJson = fc.tuple(fc.integer({ min: 1, max: 30_000 }), fc.constantFrom("[", "{\"a\":")).map(([depth, open]) =>
  open.repeat(depth) + "1" + (open === "[" ? "]" : "}").repeat(depth)
)
const bodyOf = fc.oneof(
  sendPayloadLike.map((payload) => JSON.stringify(payload)),
  fc.jsonValue().map((value) => JSON.stringify(value)),
  fc.string({ maxLength: 300 }),
  deepJson,
  sendPayloadLike.map((payload) => JSON.stringify(payload)).chain((json) =>
    fc.nat(json.length).map((cut) => json.slice(0, cut))
  ),
  fc.integer({ min: MAX_FRAME_BYTES, max: 200_000 }).map((n) =>
    JSON.stringify({ scopeType: 0, scopeId: "general", text: "t".repeat(n) })
  )
).map((text) => Buffer.from(text))
const bytesBody = fc.uint8Array({ maxLength: 2_000 }).map((bytes) => Buffer.from(bytes))
const headerValue = fc.oneof(
  printable,
  fc.constantFrom("", " ", "application/json", "text/plain", "application/json; charset=utf-16")
)

const restCall = fc.record({
  method: fc.constantFrom(
    "GET",
    "POST",
    "POST",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "HEAD",
    "TRACE",
    "PROPFIND"
  ),
  path: fc.tuple(pathOf, queryOf).map(([path, query]) => path + query),
  contentType: fc.option(
    fc.constantFrom(
      "application/json",
      "text/plain",
      "application/problem+json",
      "multipart/form-data; boundary=x",
      "multipart/mixed",
      "application/x-www-form-urlencoded"
    ),
    { nil: undefined }
  ),
  authorization: fc.constantFrom("valid", "valid", "valid", "none", "garbage", "basic"),
  extraHeaders: fc.dictionary(
    fc.oneof(
      fc.constantFrom(
        "x-correlation-id",
        "accept",
        "x-forwarded-for",
        "content-encoding",
        "transfer-encoding",
        "expect",
        "origin",
        "range",
        "if-none-match"
      ),
      fc.stringMatching(/^x-[a-z]{1,12}$/u)
    ),
    headerValue,
    { maxKeys: 4 }
  ),
  body: fc.option(fc.oneof(bodyOf, bytesBody), { nil: undefined })
})

describe("fuzzing the interfaces of a running server", () => {
  it(
    "REST: random methods, paths, query strings, headers and bodies get an answer below 500, every refusal a ProblemDetails",
    async () => {
      await fuzz("REST", restCall, async (input) => {
        const headers: Record<string, string> = {}
        for (const [name, value] of Object.entries(input.extraHeaders)) {
          // headers the client library owns, or that would make the request unreadable, are left out
          if (name === "transfer-encoding" || name === "expect" || name === "content-encoding") continue
          headers[name] = value
        }
        if (input.contentType !== undefined) headers["content-type"] = input.contentType
        if (input.authorization === "valid") headers["authorization"] = `Bearer ${token}`
        if (input.authorization === "garbage") headers["authorization"] = "Bearer not.a.token"
        if (input.authorization === "basic") headers["authorization"] = "Basic Zm9vOmJhcg=="
        const body = input.body
        const answer = await call({ method: input.method, path: input.path, headers, body }).catch(
          (error: unknown) => {
            // a body past the limit is refused as its Content-Length is read, and the connection closes
            // while the client may still be writing it (README, Limits and abuse)
            if ((body?.length ?? 0) > MAX_BODY_BYTES) return undefined
            throw error
          }
        )
        if (answer !== undefined) expectTypedAnswer(answer, input.method)
      })
    },
    TEST_TIMEOUT_MS
  )

  it(
    "tokens: no forged, expired, misissued or malformed token is ever accepted, on REST, /rpc and /hubs/chat",
    async () => {
      // the control: the genuine token is accepted, so a refusal below is the token's doing
      const genuine = await call({
        method: "GET",
        path: "/api/chat/scopes/0/general/presence",
        headers: { authorization: `Bearer ${token}` }
      })
      expect(genuine.status, genuine.body).toBe(200)
      const acceptedByKind = new Map<string, number>()
      await fuzz("tokens", fc.tuple(forgedTokens(keys), fc.nat(9)), async ([forged, where]) => {
        if (where === 0) {
          // one in ten at a WebSocket upgrade, as the query parameter browsers use
          const status = await upgradeStatus(`/rpc?access_token=${encodeURIComponent(forged.token)}`)
          if (status === 101) acceptedByKind.set(forged.kind, (acceptedByKind.get(forged.kind) ?? 0) + 1)
          expect(status, forged.kind).not.toBe(101)
          if (forged.token.length > MAX_HEAD_BYTES - 1_024 && (status === 431 || status === -1)) return
          expect(status, forged.kind).toBe(401)
          return
        }
        const path = where === 1 ? "/hubs/chat/negotiate?negotiateVersion=1" : "/api/chat/scopes/0/general/presence"
        const request = {
          method: where === 1 ? "POST" : "GET",
          path,
          headers: { authorization: `Bearer ${forged.token}` }
        }
        // a head near Node's bound goes on a connection of its own: refused early, its connection
        // closes with the rest of the head unread, which must not become the next request's start
        const answer = await (forged.token.length > MAX_HEAD_BYTES / 2 ? callOn(request, false) : call(request))
          .catch((error: unknown): HttpAnswer => ({ status: -1, headers: {}, body: String(error) }))
        if (answer.status >= 200 && answer.status < 400) {
          acceptedByKind.set(forged.kind, (acceptedByKind.get(forged.kind) ?? 0) + 1)
        }
        // Node's own limit on the request head refuses the largest tokens before the server sees them
        if (forged.token.length > MAX_HEAD_BYTES - 1_024 && (answer.status === 431 || answer.status === -1)) {
          return
        }
        expect(answer.status, `${forged.kind}: ${answer.body}`).toBe(401)
        expectTypedAnswer(answer, "GET")
        expect(String(answer.headers["www-authenticate"])).toContain("Bearer")
      })
      expect(Object.fromEntries(acceptedByKind)).toEqual({})
    },
    TEST_TIMEOUT_MS
  )

  it(
    "/rpc: broken, unknown, huge, deep and split ndjson frames get typed answers or a defined close, never a crash",
    async () => {
      const sessions = Array.from({ length: CONCURRENCY }, () => new RpcSession())
      try {
        await fuzz("/rpc", rpcCase, (item, index, worker) => sessions[worker]!.run(item, index))
      } finally {
        for (const session of sessions) session.close()
      }
      const closes = new Map<number, number>()
      for (const session of sessions) {
        for (const [code, count] of session.closes) closes.set(code, (closes.get(code) ?? 0) + count)
      }
      console.log(
        `[fuzz] /rpc: ${sessions.reduce((sum, session) => sum + session.connections, 0)} connections, ` +
          `closes by code ${JSON.stringify(Object.fromEntries(closes))}`
      )
    },
    TEST_TIMEOUT_MS
  )

  it(
    "/hubs/chat: handshakes, records, separators, wrong arguments and every message type get typed answers, never a crash",
    async () => {
      const sessions = Array.from({ length: CONCURRENCY }, () => new HubSession())
      try {
        await fuzz("/hubs/chat", hubCase, (item, index, worker) => sessions[worker]!.run(item, index))
      } finally {
        for (const session of sessions) session.close()
      }
      const endings = new Map<string, number>()
      for (const session of sessions) {
        for (const [ending, count] of session.endings) endings.set(ending, (endings.get(ending) ?? 0) + count)
      }
      console.log(
        `[fuzz] /hubs/chat: ${sessions.reduce((sum, session) => sum + session.connections, 0)} connections, ` +
          `ended with ${JSON.stringify(Object.fromEntries(endings))}`
      )
    },
    TEST_TIMEOUT_MS
  )

  it(
    "raw HTTP: malformed request heads are refused below 500 with a ProblemDetails, and the server serves on",
    async () => {
      // one raw head for twenty structured requests: they exercise Node's parser more than ours
      const settings = fuzzSettings("raw HTTP", DEFAULT_RUNS)
      const cases = casesOf(rawRequest, { ...settings, runs: Math.max(1, Math.floor(settings.runs / 20)) })
      await forEachConcurrently(cases, CONCURRENCY, async (bytes, index) => {
        const answer = await rawExchange(bytes)
        try {
          if (answer !== undefined) expectTypedAnswer(answer, "GET")
        } catch (error) {
          throw new Error(
            `case ${index} (seed ${settings.seed}) failed: ${String(error)}\ncase: ${
              describeCase(bytes.toString("latin1"))
            }`
          )
        }
      })
      expectServing()
    },
    TEST_TIMEOUT_MS
  )
})

// ---------------------------------------------------------------------------------------------
// WebSockets

const wsUrl = (path: string) => base.replace(/^http/u, "ws") + path

/** The HTTP status a WebSocket upgrade is answered with (101 when accepted). */
const upgradeStatus = (path: string) =>
  new Promise<number>((resolve) => {
    const socket = new WebSocket(wsUrl(path), { handshakeTimeout: CASE_TIMEOUT_MS })
    socket.on("open", () => {
      socket.terminate()
      resolve(101)
    })
    socket.on("unexpected-response", (request, response) => {
      resolve(response.statusCode ?? 0)
      request.destroy()
    })
    socket.on("error", () => resolve(-1))
  })

type Frame = { readonly text: string } | { readonly binary: Uint8Array } | { readonly rawText: Uint8Array }

const sendFrame = (ws: WebSocket, frame: Frame) => {
  if ("text" in frame) ws.send(frame.text)
  else if ("binary" in frame) ws.send(frame.binary, { binary: true })
  // bytes sent as a text frame as they are, valid UTF-8 or not
  else ws.send(frame.rawText, { binary: false })
}

/** A line split into binary frames at the given byte offsets. */
const splitBytes = (text: string, cuts: ReadonlyArray<number>): Array<Frame> => {
  const bytes = Buffer.from(text)
  const offsets = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b)
  const frames: Array<Frame> = []
  let from = 0
  for (const offset of [...offsets, bytes.length]) {
    if (offset > from) frames.push({ binary: bytes.subarray(from, offset) })
    from = Math.max(from, offset)
  }
  return frames
}

/** Text split into text frames, each a whole number of code points. */
const splitText = (text: string, cuts: ReadonlyArray<number>): Array<Frame> => {
  const points = Array.from(text)
  const offsets = [...new Set(cuts.map((cut) => cut % (points.length + 1)))].sort((a, b) => a - b)
  const frames: Array<Frame> = []
  let from = 0
  for (const offset of [...offsets, points.length]) {
    if (offset > from) frames.push({ text: points.slice(from, offset).join("") })
    from = Math.max(from, offset)
  }
  return frames
}

interface Inbox {
  readonly lines: Array<unknown>
  closed: { readonly code: number; readonly reason: string } | undefined
  wake: () => void
}

/** Waits until `done` holds for the inbox (checked on every arrival), or fails after the case timeout. */
const until = (inbox: Inbox, done: () => boolean, what: string) =>
  new Promise<void>((resolve, reject) => {
    if (done()) return resolve()
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), CASE_TIMEOUT_MS)
    inbox.wake = () => {
      if (!done()) return
      clearTimeout(timer)
      inbox.wake = () => undefined
      resolve()
    }
  })

const openSocket = (path: string, parse: (text: string) => ReadonlyArray<unknown>) =>
  new Promise<{ readonly ws: WebSocket; readonly inbox: Inbox }>((resolve, reject) => {
    const ws = new WebSocket(wsUrl(path), {
      headers: { authorization: `Bearer ${token}` },
      maxPayload: 64 * 1024 * 1024
    })
    const inbox: Inbox = { lines: [], closed: undefined, wake: () => undefined }
    ws.on("message", (data: Buffer) => {
      for (const line of parse(data.toString("utf8"))) inbox.lines.push(line)
      inbox.wake()
    })
    ws.on("close", (code, reason) => {
      inbox.closed = { code, reason: reason.toString() }
      inbox.wake()
    })
    ws.on("error", () => undefined)
    ws.once("open", () => resolve({ ws, inbox }))
    ws.once("unexpected-response", (_, response) => reject(new Error(`upgrade refused with ${response.statusCode}`)))
  })

// ---------------------------------------------------------------------------------------------
// /rpc

const RPC_TAGS = new Set(["Exit", "Chunk", "Defect", "Pong", "ClientProtocolError"])
/** Close codes with a meaning for a client: 1007 not a JSON line or not UTF-8, 1008 too many requests, 1009 too big. */
const RPC_CLOSE_CODES = [1007, 1008, 1009]

interface RpcCase {
  readonly frames: ReadonlyArray<Frame>
  /** Whether the frames may end the connection (with one of the defined codes). */
  readonly mayClose: boolean
  /** A Send whose Exit must come back as a success echoing this text. */
  readonly send?: { readonly id: string; readonly text: string } | undefined
}

const requestIds = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 70n }).map(String),
  fc.stringMatching(/^[0-9]{20,200}$/u),
  fc.constantFrom<unknown>("-1", "1.5", "0x10", "", " 1", "1e3", -1, 1.5, 2 ** 60, null, true, {}, [], "abc")
)
const headerLists = fc.oneof(
  fc.constant<unknown>([]),
  fc.array(fc.tuple(fc.string({ maxLength: 20 }), fc.string({ maxLength: 40 })), { maxLength: 4 }),
  fc.constant<unknown>([["authorization", "Bearer forged.token.here"]]),
  fc.constant<unknown>([["x-correlation-id", "c".repeat(500)]]),
  fc.jsonValue()
)
const rpcPayloads = fc.oneof(
  sendPayloadLike,
  fc.record({
    scopeType: fc.constantFrom<unknown>(0, 1, 7),
    scopeId: fc.string({ maxLength: 40 }),
    limit: fc.jsonValue(),
    before: fc.jsonValue(),
    after: fc.jsonValue()
  }, { requiredKeys: [] }),
  fc.jsonValue()
)
const rpcLine = fc.oneof(
  fc.record({
    _tag: fc.constant("Request"),
    id: fc.oneof(fc.nat(1_000_000).map(String), requestIds),
    tag: fc.oneof(
      fc.constantFrom<unknown>(
        "Send",
        "Send",
        "History",
        "Presence",
        "Subscribe",
        "send",
        "Nope",
        "__proto__",
        "constructor"
      ),
      fc.jsonValue()
    ),
    payload: rpcPayloads,
    headers: headerLists,
    traceId: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
    spanId: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
    sampled: fc.option(fc.jsonValue(), { nil: undefined })
  }, { requiredKeys: ["_tag"] }).map((value) => JSON.stringify(value)),
  fc.record({ _tag: fc.constantFrom("Ack", "Interrupt"), requestId: fc.oneof(fc.nat(1_000).map(String), requestIds) }, {
    requiredKeys: []
  })
    .map((value) => JSON.stringify(value)),
  fc.constantFrom(
    `{"_tag":"Ping"}`,
    `{"_tag":"Eof"}`,
    `{"_tag":"Pong"}`,
    `{"_tag":"Exit"}`,
    `{"_tag":null}`,
    `{"_tag":"__proto__"}`,
    `{"__proto__":{"_tag":"Ping"}}`
  ),
  fc.jsonValue().map((value) => JSON.stringify(value)),
  deepJson.map((nested) => `{"_tag":"Request","id":"1","tag":"Send","headers":[],"payload":${nested}}`)
)
/** Lines that cannot be read as JSON: the connection closes with 1007. */
const brokenLine = fc.oneof(
  rpcLine.chain((line) => fc.nat(Math.max(0, line.length - 1)).map((cut) => line.slice(0, cut))).filter((line) => {
    try {
      JSON.parse(line)
      return false
    } catch {
      return true
    }
  }),
  fc.constantFrom("{", "[", "nul", "{\"_tag\":", "\u0000", "'single'", "{\"a\":1}}")
)
const sendText = fc.array(fc.constantFrom("a", "é", "€", "😀", "中", " ", "Z", "\u{10ffff}"), {
  minLength: 1,
  maxLength: 40
})
  .map((parts) => `x${parts.join("")}`)

const rpcCase: fc.Arbitrary<RpcCase> = fc.oneof(
  // well-formed lines, framed whole, one per frame, or split at random code points
  fc.tuple(
    fc.array(rpcLine, { minLength: 1, maxLength: 8 }),
    fc.constantFrom("one frame", "frame per line", "split"),
    fc.array(fc.nat(), { maxLength: 12 })
  )
    .map(([lines, framing, cuts]): RpcCase => {
      const text = lines.map((line) => `${line}\n`).join("")
      const frames = framing === "one frame"
        ? [{ text }]
        : framing === "frame per line"
        ? lines.map((line) => ({ text: `${line}\n` }))
        : splitText(text, cuts)
      // a frame or a line larger than a frame may be closes the connection (1009)
      return { frames, mayClose: Buffer.byteLength(text) > MAX_FRAME_BYTES }
    }),
  // a valid Send split into binary frames at random bytes (at every byte, some of the time)
  fc.tuple(sendText, fc.nat(1_000_000), fc.boolean(), fc.array(fc.nat(), { maxLength: 16 })).map(
    ([text, id, everyByte, cuts]): RpcCase => {
      const line = `${
        JSON.stringify({
          _tag: "Request",
          id: String(id),
          tag: "Send",
          payload: { scopeType: 0, scopeId: "fuzz", text },
          headers: []
        })
      }\n`
      const bytes = Buffer.byteLength(line)
      return {
        frames: splitBytes(
          line,
          everyByte
            ? Array.from({ length: bytes }, (_, i) => i)
            : cuts
        ),
        mayClose: false,
        send: { id: String(id), text }
      }
    }
  ),
  // a line that is no JSON (then the connection closes with 1007)
  fc.tuple(fc.array(rpcLine, { maxLength: 3 }), brokenLine).map(([lines, broken]): RpcCase => ({
    frames: [{ text: [...lines, broken].map((line) => `${line}\n`).join("") }],
    mayClose: true
  })),
  // bytes that are not UTF-8 in a text frame (1007), a frame or a line too big (1009)
  fc.uint8Array({ minLength: 1, maxLength: 200 }).map((bytes): RpcCase => ({
    frames: [{ rawText: Buffer.concat([bytes, Buffer.from([0xc3, 0x28, 0x0a])]) }],
    mayClose: true
  })),
  fc.integer({ min: MAX_FRAME_BYTES + 1, max: MAX_FRAME_BYTES * 3 }).map((n): RpcCase => ({
    frames: [{ text: `${"x".repeat(n)}\n` }],
    mayClose: true
  })),
  fc.integer({ min: 2, max: 8 }).map((parts): RpcCase => ({
    frames: Array.from({ length: parts }, () => ({ text: "y".repeat(MAX_FRAME_BYTES / 2) })),
    mayClose: true
  }))
)

const parseRpcLines = (text: string) =>
  text.split("\n").filter((line) => line.length > 0).map((line) => JSON.parse(line) as unknown)

const tagOf = (
  value: unknown
) => (typeof value === "object" && value !== null && "_tag" in value ? value._tag : undefined)

/**
 * One /rpc connection reused across cases; a case that ends it opens the next one. A case may
 * leave state behind on its connection (half a line, say), so a failure names the case before it.
 */
class RpcSession {
  connections = 0
  readonly closes = new Map<number, number>()
  private socket: { readonly ws: WebSocket; readonly inbox: Inbox } | undefined
  private probes = 0
  private previous: RpcCase | undefined

  async run(item: RpcCase, index: number) {
    const previous = this.previous
    this.previous = item
    try {
      await this.exchange(item, index)
    } catch (error) {
      throw new Error(
        `${String(error)}\nthe case before it on the same connection: ${
          previous === undefined ? "none" : describeCase(previous)
        }`
      )
    }
  }

  private async exchange(item: RpcCase, index: number) {
    this.socket ??= await this.open()
    const { inbox, ws } = this.socket
    inbox.lines.length = 0
    for (const frame of item.frames) sendFrame(ws, frame)
    // a request id no case uses, for a probe RpcServer answers with an Exit of its own (a payload
    // that does not decode): a Pong would not do, as a case may hold Pings of its own
    const probeId = `${PROBE_ID_PREFIX}${String(index).padStart(8, "0")}${String(this.probes++).padStart(8, "0")}`
    if (item.send !== undefined) {
      const sent = item.send
      await until(
        inbox,
        () => inbox.closed !== undefined || inbox.lines.some((line) => isExitOf(line, sent.id)),
        `the Exit of Send ${sent.id}`
      )
      const exit = inbox.lines.find((line) => isExitOf(line, sent.id))
      expect(exit, JSON.stringify(inbox.closed)).toBeDefined()
      expect(exit).toMatchObject({ exit: { _tag: "Success", value: { chatEvent: { text: sent.text } } } })
    }
    // every case ends its last line (or closes): the probe's Exit says everything before it was read
    if (inbox.closed === undefined && ws.readyState === WebSocket.OPEN) {
      ws.send(`{"_tag":"Request","id":"${probeId}","tag":"Presence","payload":null,"headers":[]}\n`)
    }
    await until(
      inbox,
      () => inbox.closed !== undefined || inbox.lines.some((line) => isExitOf(line, probeId)),
      "the probe's Exit or a close"
    )
    for (const line of inbox.lines) expect(RPC_TAGS.has(String(tagOf(line))), JSON.stringify(line)).toBe(true)
    if (inbox.closed !== undefined) {
      this.closes.set(inbox.closed.code, (this.closes.get(inbox.closed.code) ?? 0) + 1)
      this.socket = undefined
      expect(item.mayClose, `closed ${JSON.stringify(inbox.closed)}`).toBe(true)
      expect(RPC_CLOSE_CODES, JSON.stringify(inbox.closed)).toContain(inbox.closed.code)
    }
  }

  private async open() {
    this.connections++
    return openSocket("/rpc", parseRpcLines)
  }

  close() {
    this.socket?.ws.terminate()
  }
}

/** The probes' request ids: 40 digits, where the cases' are up to 7, or 20 to 200 random ones. */
const PROBE_ID_PREFIX = "777777777777777777777777"

const isExitOf = (line: unknown, requestId: string) =>
  tagOf(line) === "Exit" && typeof line === "object" && line !== null && "requestId" in line &&
  line.requestId === requestId

// ---------------------------------------------------------------------------------------------
// /hubs/chat

const RS = "\u001e"
const HANDSHAKE = `{"protocol":"json","version":1}${RS}`

interface HubCase {
  /** A handshake to try on a connection of its own, instead of records on the shared one. */
  readonly handshake?: ReadonlyArray<Frame> | undefined
  readonly frames: ReadonlyArray<Frame>
}

const hubArgument = fc.oneof(
  sendPayloadLike,
  fc.constantFrom<unknown>("general", "fuzz", "dm:a:b", "", null, 0, true, [], {}),
  fc.string({ maxLength: 300 }),
  fc.jsonValue()
)
const invocationIds = fc.oneof(
  fc.nat(1_000_000).map(String),
  fc.string({ maxLength: 40 }),
  fc.constantFrom<unknown>(null, 1, true, {}, [], "x".repeat(5_000))
)
const hubRecord = fc.oneof(
  fc.record({
    type: fc.constant(1),
    invocationId: invocationIds,
    target: fc.oneof(
      fc.constantFrom<unknown>(
        "SendAsync",
        "JoinScopeAsync",
        "LeaveScopeAsync",
        "sendasync",
        "ReceiveMessage",
        "",
        "toString",
        "__proto__"
      ),
      fc.jsonValue()
    ),
    arguments: fc.oneof(fc.array(hubArgument, { maxLength: 4 }), fc.jsonValue()),
    streamIds: fc.jsonValue(),
    headers: fc.jsonValue()
  }, { requiredKeys: ["type"] }).map((value) => JSON.stringify(value)),
  fc.record({
    type: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.constantFrom<unknown>(0, -1, 10, 1.5, "1", null, 2 ** 53)),
    invocationId: invocationIds,
    target: fc.string({ maxLength: 20 }),
    arguments: fc.jsonValue(),
    item: fc.jsonValue(),
    result: fc.jsonValue(),
    error: fc.jsonValue(),
    allowReconnect: fc.jsonValue()
  }, { requiredKeys: [] }).map((value) => JSON.stringify(value)),
  fc.jsonValue().map((value) => JSON.stringify(value)),
  fc.string({ maxLength: 100 }),
  deepJson,
  fc.constant("")
)

const hubCase: fc.Arbitrary<HubCase> = fc.oneof(
  {
    weight: 9,
    arbitrary: fc.tuple(
      fc.array(hubRecord, { minLength: 1, maxLength: 6 }),
      fc.constantFrom("one frame", "frame per record", "split"),
      fc.array(fc.nat(), { maxLength: 10 })
    )
      .map(([records, framing, cuts]): HubCase => {
        const text = records.map((record) => `${record}${RS}`).join("")
        return {
          frames: framing === "one frame"
            ? [{ text }]
            : framing === "frame per record"
            ? records.map((record) => ({ text: `${record}${RS}` }))
            : splitText(text, cuts)
        }
      })
  },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.constantFrom(
        HANDSHAKE,
        `{"protocol":"messagepack","version":1}${RS}`,
        `{"protocol":"json","version":2}${RS}`,
        `{"protocol":"json"}${RS}`,
        `{}${RS}`,
        `null${RS}`,
        `[]${RS}`,
        `{"protocol":"json","version":1}`,
        RS,
        `${HANDSHAKE}{"type":6}${RS}`,
        `${HANDSHAKE}{"type":7}${RS}`,
        `${HANDSHAKE}not json${RS}`
      ),
      fc.record({ protocol: fc.jsonValue(), version: fc.jsonValue() }, { requiredKeys: [] }).map((value) =>
        `${JSON.stringify(value)}${RS}`
      ),
      fc.string({ maxLength: 200 })
    ).chain((handshake) =>
      fc.array(fc.nat(), { maxLength: 6 }).map((cuts): HubCase => ({
        handshake: splitText(handshake, cuts),
        frames: []
      }))
    )
  }
)

const parseHubRecords = (text: string) =>
  text.split(RS).filter((record) => record.length > 0).map((record) => JSON.parse(record) as unknown)

const typeOf = (
  value: unknown
) => (typeof value === "object" && value !== null && "type" in value ? value.type : undefined)

/** One hub connection reused across cases (after its handshake); a case that ends it opens the next one. */
class HubSession {
  connections = 0
  readonly endings = new Map<string, number>()
  private socket: { readonly ws: WebSocket; readonly inbox: Inbox } | undefined
  private probes = 0
  private previous: HubCase | undefined

  /** A case, and on failure the one before it on the same connection (which may have left state behind). */
  async run(item: HubCase, index: number) {
    const previous = this.previous
    this.previous = item
    try {
      await this.exchange(item, index)
    } catch (error) {
      throw new Error(
        `${String(error)}\nthe case before it on the same connection: ${
          previous === undefined ? "none" : describeCase(previous)
        }`
      )
    }
  }

  private async exchange(item: HubCase, index: number) {
    if (item.handshake !== undefined) return this.tryHandshake(item.handshake)
    this.socket ??= await this.open()
    const { inbox, ws } = this.socket
    inbox.lines.length = 0
    for (const frame of item.frames) sendFrame(ws, frame)
    const probe = `probe-${index}-${this.probes++}`
    // every case ends its last record: an invocation after it, whose completion says everything before it was read
    if (inbox.closed === undefined && ws.readyState === WebSocket.OPEN) {
      ws.send(`{"type":1,"invocationId":"${probe}","target":"LeaveScopeAsync","arguments":["probe"]}${RS}`)
    }
    const isProbeCompletion = (line: unknown) =>
      typeOf(line) === 3 && typeof line === "object" && line !== null && "invocationId" in line &&
      line.invocationId === probe
    await until(
      inbox,
      () => inbox.closed !== undefined || inbox.lines.some(isProbeCompletion),
      "the probe's completion or a close"
    )
    for (const line of inbox.lines) {
      expect([1, 3, 6, 7], JSON.stringify(line)).toContain(typeOf(line))
      // a completion carries a result or an error message, never both
      if (typeOf(line) === 3 && typeof line === "object" && line !== null && "error" in line) {
        expect(typeof line.error).toBe("string")
      }
    }
    if (inbox.closed !== undefined) {
      this.socket = undefined
      const last = inbox.lines.at(-1)
      // the server said why (a Close with an error), or the client asked for the close, or a frame was too big
      // (a Close record may be split over several frames, text or binary)
      const clientClosed = /"type":7/u.test(
        item.frames.map((frame) =>
          "text" in frame ? frame.text : Buffer.from("binary" in frame ? frame.binary : frame.rawText).toString("utf8")
        ).join("")
      )
      const why = typeOf(last) === 7 && typeof last === "object" && last !== null && "error" in last
        ? "close with error"
        : undefined
      const ending = why ?? (clientClosed ? "client close" : `code ${inbox.closed.code}`)
      this.endings.set(ending, (this.endings.get(ending) ?? 0) + 1)
      expect(
        why !== undefined || clientClosed || inbox.closed.code === 1009,
        `closed ${JSON.stringify(inbox.closed)} after ${JSON.stringify(last)}`
      )
        .toBe(true)
    }
  }

  /** A handshake on a fresh connection: accepted (`{}`), or refused with an error and the socket closed. */
  private async tryHandshake(frames: ReadonlyArray<Frame>) {
    const { inbox, ws } = await openSocket(
      "/hubs/chat",
      (text) => text.split(RS).filter((part) => part.length > 0).map((part) => JSON.parse(part) as unknown)
    )
    this.connections++
    try {
      for (const frame of frames) sendFrame(ws, frame)
      // the handshake's answer or a close; a handshake without its separator is not finished, and
      // waits for more (until the server's handshake timeout): a moment is enough to see it not fail
      const finished = frames.some((frame) => "text" in frame && frame.text.includes(RS))
      if (finished) await until(inbox, () => inbox.closed !== undefined || inbox.lines.length > 0, "a handshake answer")
      else await new Promise((resolve) => setTimeout(resolve, 50))
      const first = inbox.lines[0]
      const ending = first === undefined
        ? `no answer, ${inbox.closed === undefined ? "open" : `closed ${inbox.closed.code}`}`
        : "answered"
      this.endings.set(`handshake ${ending}`, (this.endings.get(`handshake ${ending}`) ?? 0) + 1)
      if (first !== undefined) {
        expect(typeof first === "object" && first !== null, JSON.stringify(first)).toBe(true)
        // {} accepts, {"error": "..."} refuses
        if (typeof first === "object" && first !== null && "error" in first) expect(typeof first.error).toBe("string")
      }
    } finally {
      ws.terminate()
    }
  }

  private async open() {
    this.connections++
    const socket = await openSocket("/hubs/chat", parseHubRecords)
    socket.ws.send(HANDSHAKE)
    await until(
      socket.inbox,
      () => socket.inbox.lines.length > 0 || socket.inbox.closed !== undefined,
      "the handshake answer"
    )
    expect(socket.inbox.lines[0]).toEqual({})
    return socket
  }

  close() {
    this.socket?.ws.terminate()
  }
}

// ---------------------------------------------------------------------------------------------
// raw HTTP

const rawRequest = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((bytes) =>
    Buffer.concat([Buffer.from(bytes), Buffer.from("\r\n\r\n")])
  ),
  fc.tuple(
    fc.constantFrom("GET", "POST", "G\u0000T", "", "GET GET"),
    fc.string({ maxLength: 100 }),
    fc.constantFrom("HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9", ""),
    fc.array(fc.string({ maxLength: 60 }), { maxLength: 5 })
  )
    .map(([method, path, version, headers]) =>
      Buffer.from(`${method} ${path} ${version}\r\nhost: x\r\n${headers.join("\r\n")}\r\n\r\n`, "latin1")
    ),
  fc.constantFrom(
    "POST /api/chat/send HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\nhello",
    "POST /api/chat/send HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "POST /api/chat/send HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n",
    "GET /health/live HTTP/1.1\r\nhost: x\r\nx-big: " + "a".repeat(20_000) + "\r\n\r\n",
    "GET /health/live HTTP/1.1\r\n\r\n"
  ).map((text) => Buffer.from(text, "latin1"))
)

/** Writes `bytes` on a fresh connection: the first answer (its head, and its body by Content-Length), or undefined when none came. */
const rawExchange = (bytes: Buffer) =>
  new Promise<HttpAnswer | undefined>((resolve) => {
    const url = new URL(base)
    const socket = tcpConnect(Number(url.port), url.hostname)
    let received = Buffer.alloc(0)
    const answer = (): HttpAnswer | undefined => {
      const headEnd = received.indexOf("\r\n\r\n")
      if (headEnd < 0) return undefined
      const head = received.subarray(0, headEnd).toString("latin1")
      const status = /^HTTP\/1\.[01] (\d{3})/u.exec(head)?.[1]
      const length = Number(/^content-length: *(\d+)/imu.exec(head)?.[1] ?? 0)
      if (status === undefined || received.length < headEnd + 4 + length) return undefined
      return {
        status: Number(status),
        headers: { "content-type": /^content-type: *(.*)$/imu.exec(head)?.[1]?.trim() },
        body: received.subarray(headEnd + 4, headEnd + 4 + length).toString("utf8")
      }
    }
    const finish = () => {
      socket.destroy()
      resolve(answer())
    }
    socket.setTimeout(2_000, finish)
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      if (answer() !== undefined) finish()
    })
    socket.on("error", finish)
    socket.on("close", finish)
    socket.write(bytes)
  })
