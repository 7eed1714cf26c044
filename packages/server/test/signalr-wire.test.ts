/**
 * The hub's wire behaviour seen from a raw WebSocket (the `ws` package): negotiate versions, ids,
 * refusals with their HTTP status, framing, and what a misbehaving client costs (its connection only).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Logger, LogLevel, Option, Queue, Schema } from "effect"
import { SignJWT } from "jose"
import WebSocket from "ws"
import { EnrichedChatEvent, PROBLEM_CONTENT_TYPE, ProblemDetails } from "@chatify/domain"
import { startTestServer, hs256TestAuth } from "../src/testing.js"

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

const RS = "\u001e"
const record = (message: unknown) => JSON.stringify(message) + RS
const HANDSHAKE = record({ protocol: "json", version: 1 })

/** A parsed record from the server, or `{closed: code}` when the socket closed. */
type Received = Record<string, unknown>

interface RawClient {
  readonly send: (text: string) => Effect.Effect<void>
  readonly next: Effect.Effect<Received>
  /** The next message that is not a Ping. */
  readonly nextNonPing: Effect.Effect<Received>
}

interface Refused {
  readonly status: number
  readonly body: unknown
}

const decodeRecord = Schema.decodeUnknownSync(
  Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
)
const parseRecords = (text: string): Array<Received> => text.split(RS).slice(0, -1).map((part) => decodeRecord(part))

/** Opens a raw WebSocket; a refused upgrade comes back as its HTTP status and body. */
const openRaw = (url: string, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const inbox = yield* Queue.unbounded<Received>()
    const ws = yield* Effect.acquireRelease(
      Effect.sync(() => new WebSocket(url, { headers })),
      (socket) => Effect.sync(() => socket.terminate())
    )
    ws.on("message", (data) => {
      const bytes = Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)])
      for (const message of parseRecords(bytes.toString("utf8"))) inbox.unsafeOffer(message)
    })
    ws.on("close", (code) => {
      inbox.unsafeOffer({ closed: code })
    })
    const opened = yield* Effect.async<Either.Either<void, Refused>>((resume) => {
      ws.once("open", () => resume(Effect.succeed(Either.right(undefined))))
      ws.once("unexpected-response", (request, response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8")
          request.destroy()
          resume(
            Effect.succeed(
              Either.left({
                status: response.statusCode ?? 0,
                body: text.length > 0 ? (JSON.parse(text) as unknown) : undefined
              })
            )
          )
        })
      })
      ws.once("error", () => resume(Effect.succeed(Either.left({ status: -1, body: undefined }))))
    })
    const client: RawClient = {
      send: (text) => Effect.sync(() => ws.send(text)),
      next: Queue.take(inbox),
      nextNonPing: Queue.take(inbox).pipe(Effect.repeat({ until: (m) => m["type"] !== 6 }))
    }
    return Either.map(opened, () => client)
  })

/** Opens, handshakes and expects `{}`. */
const connectRaw = (url: string, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const opened = yield* openRaw(url, headers)
    if (Either.isLeft(opened)) return yield* Effect.dieMessage(`refused with ${opened.left.status}`)
    const client = opened.right
    yield* client.send(HANDSHAKE)
    expect(yield* client.next).toEqual({})
    return client
  })

const refusalOf = (url: string, headers: Record<string, string> = {}) =>
  Effect.flatMap(
    openRaw(url, headers),
    (opened) => Either.isLeft(opened) ? Effect.succeed(opened.left) : Effect.dieMessage("the upgrade was not refused")
  )

const negotiate = (url: string, query: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(`${url}/negotiate${query}`, { method: "POST", headers })
    const body = decodeRecord(await response.text())
    return { status: response.status, contentType: response.headers.get("content-type") ?? "", body }
  })

const invocation = (target: string, args: ReadonlyArray<unknown>, invocationId?: string) =>
  record({ type: 1, target, arguments: args, ...(invocationId === undefined ? {} : { invocationId }) })

const room = () => `room-${crypto.randomUUID()}`

describe("SignalR hub on the wire", () => {
  it.scopedLive("negotiate v1 hands out a connectionToken, v0 (or no version) only the connectionId; WebSockets/Text only", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const url = `${server.httpUrl}/hubs/chat`
      const transports = [{ transport: "WebSockets", transferFormats: ["Text"] }]

      const v1 = yield* negotiate(url, "?negotiateVersion=1")
      expect(v1.status).toBe(200)
      expect(Object.keys(v1.body).sort()).toEqual([
        "availableTransports",
        "connectionId",
        "connectionToken",
        "negotiateVersion"
      ])
      expect(v1.body).toMatchObject({ negotiateVersion: 1, availableTransports: transports })
      expect(v1.body["connectionToken"]).not.toBe(v1.body["connectionId"])
      expect(String(v1.body["connectionToken"])).toMatch(/^[A-Za-z0-9_-]{22}$/u)

      for (const query of ["?negotiateVersion=0", ""]) {
        const v0 = yield* negotiate(url, query)
        expect(v0.status).toBe(200)
        expect(Object.keys(v0.body).sort()).toEqual(["availableTransports", "connectionId", "negotiateVersion"])
        expect(v0.body).toMatchObject({ negotiateVersion: 0, availableTransports: transports })
      }
      // newer clients are answered with the newest version this server speaks, as ASP.NET Core does
      expect((yield* negotiate(url, "?negotiateVersion=2")).body["negotiateVersion"]).toBe(1)

      const bad = yield* negotiate(url, "?negotiateVersion=latest")
      expect(bad.status).toBe(400)
      expect(bad.contentType).toContain(PROBLEM_CONTENT_TYPE)
      expect(Schema.decodeUnknownSync(ProblemDetails)(bad.body).errors?.[0]?.field).toBe("negotiateVersion")
    }).pipe(quiet))

  it.scopedLive("connect with the v1 connectionToken or the v0 connectionId, each once; unknown ids and plain GETs are refused", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const http = `${server.httpUrl}/hubs/chat`
      const ws = http.replace(/^http/u, "ws")

      const v1 = (yield* negotiate(http, "?negotiateVersion=1")).body
      yield* connectRaw(`${ws}?id=${String(v1["connectionToken"])}`)
      const reused = yield* refusalOf(`${ws}?id=${String(v1["connectionToken"])}`)
      expect(reused.status).toBe(404)
      expect(reused.body).toMatchObject({ status: 404, detail: "No connection with that id: negotiate again" })

      // v1: the connection id is not the secret, the token is
      const other = (yield* negotiate(http, "?negotiateVersion=1")).body
      expect((yield* refusalOf(`${ws}?id=${String(other["connectionId"])}`)).status).toBe(404)
      expect((yield* refusalOf(`${ws}?id=made-up`)).status).toBe(404)

      const v0 = (yield* negotiate(http, "?negotiateVersion=0")).body
      yield* connectRaw(`${ws}?id=${String(v0["connectionId"])}`)

      const plain = yield* Effect.promise(() =>
        fetch(http).then(async (r) => ({ status: r.status, body: await r.json() }))
      )
      expect(plain.status).toBe(400)
      expect(plain.body).toMatchObject({
        status: 400,
        errors: [{ field: "request", message: "expected a WebSocket upgrade (the only transport offered)" }]
      })
    }).pipe(quiet))

  it.scopedLive("several messages per frame, a message split across frames, non-blocking invocations; ReceiveMessage and the SendAsync result are the domain's wire JSON", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const ws = `${server.httpUrl.replace(/^http/u, "ws")}/hubs/chat`
      const opened = yield* openRaw(ws)
      if (Either.isLeft(opened)) return yield* Effect.dieMessage("refused")
      const client = opened.right
      const scopeId = room()
      // handshake, a Ping and the join in one frame
      yield* client.send(HANDSHAKE + record({ type: 6 }) + invocation("JoinScopeAsync", [scopeId], "join"))
      expect(yield* client.next).toEqual({})
      expect(yield* client.nextNonPing).toEqual({ type: 3, invocationId: "join" })

      const split = invocation("SendAsync", [{ scopeType: 0, scopeId, text: "split" }], "send-1")
      yield* client.send(split.slice(0, 7))
      yield* client.send(split.slice(7, 30))
      yield* client.send(split.slice(30))
      const received: Array<Received> = []
      const until = (done: () => boolean) =>
        Effect.gen(function*() {
          while (!done()) received.push(yield* client.nextNonPing)
        })
      yield* until(() => received.length === 2)
      const completion = received.find((m) => m["type"] === 3)
      const message = received.find((m) => m["type"] === 1)
      expect(completion).toMatchObject({ invocationId: "send-1" })
      const sent = Schema.decodeUnknownSync(EnrichedChatEvent)(completion?.["result"])
      expect(completion?.["result"]).toEqual(Schema.encodeSync(EnrichedChatEvent)(sent))
      expect(message).toEqual({
        type: 1,
        target: "ReceiveMessage",
        arguments: [Schema.encodeSync(EnrichedChatEvent)(sent).chatEvent]
      })

      // without an invocationId: delivered, never answered
      received.length = 0
      yield* client.send(
        invocation("SendAsync", [{ scopeType: 0, scopeId, text: "fire and forget" }]) +
          invocation("SendAsync", [{ scopeType: 0, scopeId, text: "" }])
      )
      yield* client.send(invocation("SendAsync", [{ scopeType: 0, scopeId, text: "answered" }], "send-2"))
      yield* until(() =>
        received.some((m) => m["invocationId"] === "send-2") && received.filter((m) => m["type"] === 1).length === 2
      )
      expect(received.filter((m) => m["type"] === 3).map((m) => m["invocationId"])).toEqual(["send-2"])
      const texts = received.filter((m) => m["type"] === 1).map((m) =>
        (m["arguments"] as Array<Record<string, unknown>>)[0]?.["text"]
      )
      expect(texts).toEqual([
        "fire and forget",
        "answered"
      ])
    }).pipe(quiet))

  it.scopedLive("a malformed frame or an oversize message closes only that connection, with a Close carrying the error", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const ws = `${server.httpUrl.replace(/^http/u, "ws")}/hubs/chat`
      const scopeId = room()
      const bystander = yield* connectRaw(ws)
      yield* bystander.send(invocation("JoinScopeAsync", [scopeId], "j"))
      expect(yield* bystander.nextNonPing).toEqual({ type: 3, invocationId: "j" })

      const garbled = yield* connectRaw(ws)
      yield* garbled.send("{\"type\":1,\"target\":" + RS)
      expect(yield* garbled.nextNonPing).toEqual({ type: 7, error: "Invalid message: the message is not valid JSON." })
      expect(yield* garbled.next).toEqual({ closed: 1000 })

      const shapeless = yield* connectRaw(ws)
      yield* shapeless.send(record({ type: 1, target: "SendAsync" }))
      expect(yield* shapeless.nextNonPing).toEqual({
        type: 7,
        error: "Invalid message: invalid message of type 1: arguments: is missing."
      })

      // a message is bounded by CHATIFY__LIMITS__MAXFRAMEBYTES (64 KiB), also when it spans frames
      const flooding = yield* connectRaw(ws)
      yield* flooding.send("x".repeat(40 * 1024))
      yield* flooding.send("x".repeat(40 * 1024))
      expect(yield* flooding.nextNonPing).toEqual({
        type: 7,
        error: "Invalid message: a message exceeded the maximum size of 65536 bytes."
      })
      expect(yield* flooding.next).toEqual({ closed: 1000 })
      // and a frame beyond it is refused by the WebSocket layer before it is buffered
      const oversized = yield* connectRaw(ws)
      yield* oversized.send("x".repeat(64 * 1024 + 1))
      expect(yield* oversized.next).toEqual({ closed: 1009 })

      const wrongProtocol = yield* openRaw(ws)
      if (Either.isLeft(wrongProtocol)) return yield* Effect.dieMessage("refused")
      yield* wrongProtocol.right.send(record({ protocol: "messagepack", version: 1 }))
      expect(yield* wrongProtocol.right.next).toEqual({ error: "The protocol 'messagepack' is not supported." })
      expect(yield* wrongProtocol.right.next).toEqual({ closed: 1000 })

      // the process and every other connection carry on
      yield* bystander.send(invocation("SendAsync", [{ scopeType: 0, scopeId, text: "still here" }], "s"))
      const seen: Array<Received> = [yield* bystander.nextNonPing, yield* bystander.nextNonPing]
      expect(seen.map((m) => m["type"]).sort()).toEqual([1, 3])
      const health = yield* Effect.promise(() => fetch(`${server.httpUrl}/health/ready`).then((r) => r.status))
      expect(health).toBe(200)
    }).pipe(quiet))
})

const SECRET = "a-signalr-wire-secret-of-32-bytes!!"
const auth = hs256TestAuth(SECRET)
const tokenFor = (sub: string, expiresAt = Math.floor(Date.now() / 1000) + 600) =>
  Effect.promise(() =>
    new SignJWT({ sub }).setProtectedHeader({ alg: "HS256" }).setIssuedAt().setExpirationTime(expiresAt)
      .sign(new TextEncoder().encode(SECRET))
  )

describe("SignalR hub on the wire, with JWT authentication", () => {
  it.scopedLive("refuses the upgrade with 401 ProblemDetails before upgrading; accepts access_token in the query (browsers)", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const ws = `${server.httpUrl.replace(/^http/u, "ws")}/hubs/chat`

      const missing = yield* refusalOf(ws)
      expect(missing.status).toBe(401)
      expect(missing.body).toMatchObject({ status: 401, detail: "a bearer access token is required" })

      const expired = yield* refusalOf(
        `${ws}?access_token=${yield* tokenFor("alice", Math.floor(Date.now() / 1000) - 10)}`
      )
      expect(expired.status).toBe(401)
      expect(expired.body).toMatchObject({ detail: "the access token expired" })

      const client = yield* connectRaw(`${ws}?access_token=${yield* tokenFor("alice")}`)
      const scopeId = room()
      yield* client.send(invocation("SendAsync", [{ scopeType: 0, scopeId, text: "hi", senderId: "mallory" }], "1"))
      const completion = yield* client.nextNonPing
      // the sender is the token's subject; a senderId in the payload is ignored
      expect(Schema.decodeUnknownSync(EnrichedChatEvent)(completion["result"]).chatEvent.senderId).toBe("alice")
    }).pipe(quiet))

  it.scopedLive("an id negotiated by one user cannot be used by another (403); its owner can, once", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const http = `${server.httpUrl}/hubs/chat`
      const ws = http.replace(/^http/u, "ws")
      const alice = yield* tokenFor("alice")
      const bob = yield* tokenFor("bob")
      const negotiated = yield* negotiate(http, "?negotiateVersion=1", { authorization: `Bearer ${alice}` })
      expect(negotiated.status).toBe(200)
      const id = String(negotiated.body["connectionToken"])
      const stolen = yield* refusalOf(`${ws}?id=${id}`, { authorization: `Bearer ${bob}` })
      expect(stolen.status).toBe(403)
      expect(stolen.body).toMatchObject({ detail: "the connection was negotiated by another user" })
      // refusals do not use the id up: its owner still connects with it, once
      yield* connectRaw(`${ws}?id=${id}`, { authorization: `Bearer ${alice}` })
      expect((yield* refusalOf(`${ws}?id=${id}`, { authorization: `Bearer ${alice}` })).status).toBe(404)
    }).pipe(quiet))
})
