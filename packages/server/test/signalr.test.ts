/**
 * The SignalR hub end to end with the official @microsoft/signalr client, unchanged, against the
 * embedded server on port 0. Every wait is for an event (a message, a callback), never a delay.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  HttpTransportType,
  type HubConnection,
  HubConnectionBuilder,
  HubConnectionState,
  type IHttpConnectionOptions,
  LogLevel
} from "@microsoft/signalr"
import {
  Chunk,
  Data,
  Deferred,
  Effect,
  Exit,
  Logger,
  LogLevel as EffectLogLevel,
  Option,
  Queue,
  Schema,
  Scope
} from "effect"
import { SignJWT } from "jose"
import { directMessageScopeId } from "@chatify/domain"
import { EnrichedChatEvent } from "@chatify/domain"
import { startTestServer, hs256TestAuth } from "../src/testing.js"

// SIGNALR_DEBUG=1 shows the server's debug logs and the client's own
const debug = process.env["SIGNALR_DEBUG"] !== undefined
const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Logger.withMinimumLogLevel(effect, debug ? EffectLogLevel.Debug : EffectLogLevel.Warning)

class InvokeError extends Data.TaggedError("InvokeError")<{ readonly message: string }> {}

interface Client {
  readonly connection: HubConnection
  /** ReceiveMessage payloads, as the client got them. */
  readonly received: Queue.Queue<Record<string, unknown>>
  readonly invoke: (method: string, ...args: ReadonlyArray<unknown>) => Effect.Effect<unknown, InvokeError>
  /** The next ReceiveMessage payload's text. */
  readonly nextText: Effect.Effect<unknown>
}

const invokeOn = (connection: HubConnection) => (method: string, ...args: ReadonlyArray<unknown>) =>
  Effect.tryPromise({
    try: () => connection.invoke<unknown>(method, ...args),
    catch: (error) => new InvokeError({ message: error instanceof Error ? error.message : String(error) })
  })

/** Builds (does not start) a client of the hub at `url`, collecting ReceiveMessage payloads. */
const build = (
  url: string,
  options: IHttpConnectionOptions = {},
  configure: (builder: HubConnectionBuilder) => HubConnectionBuilder = (builder) => builder
) =>
  Effect.gen(function*() {
    const received = yield* Queue.unbounded<Record<string, unknown>>()
    const connection = configure(
      new HubConnectionBuilder()
        .withUrl(url, { transport: HttpTransportType.WebSockets, ...options })
        .configureLogging(debug ? LogLevel.Debug : LogLevel.None)
    ).build()
    connection.on("ReceiveMessage", (event: Record<string, unknown>) => {
      received.unsafeOffer(event)
    })
    yield* Effect.addFinalizer(() => Effect.promise(() => connection.stop()))
    const client: Client = {
      connection,
      received,
      invoke: invokeOn(connection),
      nextText: Effect.map(Queue.take(received), (event) => event["text"])
    }
    return client
  })

const connect = (url: string, options: IHttpConnectionOptions = {}) =>
  Effect.tap(build(url, options), (client) => Effect.promise(() => client.connection.start()))

const send = (client: Client, scopeId: string, text: string) =>
  Effect.flatMap(client.invoke("SendAsync", { scopeType: 0, scopeId, text }), Schema.decodeUnknown(EnrichedChatEvent))

/** Takes ReceiveMessage texts until `last` arrives. */
const textsUntil = (client: Client, last: string) =>
  Effect.gen(function*() {
    const texts: Array<unknown> = []
    for (;;) {
      const text = yield* client.nextText
      texts.push(text)
      if (text === last) return texts
    }
  })

const room = () => `room-${crypto.randomUUID()}`

const CHAT_EVENT_FIELDS = ["messageId", "scopeType", "scopeId", "senderId", "text", "createdAtUtc", "originPodId"]

describe("SignalR hub with the official client", () => {
  it.scopedLive("connects (negotiate v1), joins, sends, and receives ReceiveMessage with the original ChatEventDto JSON", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const client = yield* connect(`${server.httpUrl}/hubs/chat`)
      expect(client.connection.state).toBe(HubConnectionState.Connected)
      const scopeId = room()
      // a void hub method completes without a result
      expect(yield* client.invoke("JoinScopeAsync", scopeId)).toBeUndefined()
      const raw = yield* client.invoke("SendAsync", { scopeType: 0, scopeId, text: "Hello, Chatify!" })
      // SendAsync answers with the EnrichedChatEvent, as POST /api/chat/send does
      expect(Object.keys(raw as object)).toEqual(["chatEvent", "partition", "offset"])
      const sent = yield* Schema.decodeUnknown(EnrichedChatEvent)(raw)

      const event = yield* Queue.take(client.received)
      expect(Object.keys(event)).toEqual(CHAT_EVENT_FIELDS)
      expect(event).toEqual({
        messageId: sent.chatEvent.messageId,
        scopeType: 0,
        scopeId,
        senderId: sent.chatEvent.senderId,
        text: "Hello, Chatify!",
        createdAtUtc: sent.chatEvent.createdAtUtc.toISOString(),
        originPodId: "pod-test"
      })
      expect(event["createdAtUtc"]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/u)
      expect(String(event["senderId"])).toMatch(/^anon_/u)
    }).pipe(quiet))

  it.scopedLive("two clients in one scope both receive every message exactly once, in order; joining twice changes nothing", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const url = `${server.httpUrl}/hubs/chat`
      const alice = yield* connect(url)
      const bob = yield* connect(url)
      const scopeId = room()
      yield* alice.invoke("JoinScopeAsync", scopeId)
      yield* bob.invoke("JoinScopeAsync", scopeId)
      yield* bob.invoke("JoinScopeAsync", scopeId) // idempotent
      yield* send(alice, scopeId, "one")
      yield* send(bob, scopeId, "two")
      yield* send(alice, scopeId, "three")
      expect(yield* textsUntil(alice, "three")).toEqual(["one", "two", "three"])
      expect(yield* textsUntil(bob, "three")).toEqual(["one", "two", "three"])
      // a duplicate from the second join would sit before this one
      yield* send(bob, scopeId, "end")
      expect(yield* textsUntil(bob, "end")).toEqual(["end"])
      expect(yield* textsUntil(alice, "end")).toEqual(["end"])
    }).pipe(quiet))

  it.scopedLive("sends fired without awaiting (a join, then 300 sends in a row) take effect in the order they were sent", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const url = `${server.httpUrl}/hubs/chat`
      const sender = yield* connect(url)
      const reader = yield* connect(url)
      const scopeId = room()
      yield* reader.invoke("JoinScopeAsync", scopeId)
      const texts = Array.from({ length: 300 }, (_, i) => `message ${i}`)
      // all invocations leave the client at once; the server runs the sends pipelined after the join
      const results = yield* Effect.all(
        [
          sender.invoke("JoinScopeAsync", scopeId),
          ...texts.map((text) => sender.invoke("SendAsync", { scopeType: 0, scopeId, text }))
        ],
        { concurrency: "unbounded" }
      )
      const offsets = results.slice(1).map((result) => Schema.decodeUnknownSync(EnrichedChatEvent)(result).offset)
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b))
      expect(yield* textsUntil(reader, "message 299")).toEqual(texts)
      // the join ran before the first send: the sender hears its own first message
      expect(yield* textsUntil(sender, "message 299")).toEqual(texts)
    }).pipe(quiet))

  it.scopedLive("LeaveScopeAsync stops delivery; joining again delivers only what comes after", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const url = `${server.httpUrl}/hubs/chat`
      const alice = yield* connect(url)
      const bob = yield* connect(url)
      const scopeId = room()
      yield* alice.invoke("JoinScopeAsync", scopeId)
      yield* bob.invoke("JoinScopeAsync", scopeId)
      yield* send(bob, scopeId, "before")
      expect(yield* alice.nextText).toBe("before")
      expect(yield* alice.invoke("LeaveScopeAsync", scopeId)).toBeUndefined()
      expect(yield* alice.invoke("LeaveScopeAsync", "never-joined")).toBeUndefined()
      yield* send(bob, scopeId, "while away 1")
      yield* send(bob, scopeId, "while away 2")
      // bob's copies prove the fan-out ran for both before alice rejoins
      expect(yield* textsUntil(bob, "while away 2")).toEqual(["before", "while away 1", "while away 2"])
      yield* alice.invoke("JoinScopeAsync", scopeId)
      yield* send(bob, scopeId, "back")
      expect(yield* textsUntil(alice, "back")).toEqual(["back"])
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(alice.received))).toEqual([])
    }).pipe(quiet))

  it.scopedLive("errors reject the invocation with a message naming the problem, and the connection stays usable", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const client = yield* connect(`${server.httpUrl}/hubs/chat`)
      const scopeId = room()
      const errorOf = (method: string, ...args: ReadonlyArray<unknown>) =>
        Effect.map(Effect.flip(client.invoke(method, ...args)), (error) => error.message)

      expect(yield* errorOf("NoSuchMethod", 1)).toBe("Unknown hub method 'NoSuchMethod'.")
      expect(yield* errorOf("SendAsync")).toBe(
        "Failed to invoke 'SendAsync': it takes 1 argument(s), the invocation provides 0."
      )
      expect(yield* errorOf("JoinScopeAsync", 42)).toBe(
        "Failed to invoke 'JoinScopeAsync': argument 1: Expected string, actual 42"
      )
      expect(yield* errorOf("SendAsync", { scopeType: 7, scopeId, text: "hi" })).toContain("argument 1 (scopeType)")
      expect(yield* errorOf("SendAsync", { scopeType: 0, scopeId, text: "" })).toBe(
        "Validation failed: text: must not be empty"
      )
      expect(yield* errorOf("SendAsync", { scopeType: 0, scopeId, text: "x".repeat(4097) })).toBe(
        "Validation failed: text: must be at most 4096 characters"
      )
      expect(yield* errorOf("JoinScopeAsync", "   ")).toBe("Validation failed: scopeId: must not be whitespace only")
      expect(yield* errorOf("SendAsync", { scopeType: 1, scopeId: "not-a-dm", text: "hi" })).toMatch(/^Forbidden: /u)

      expect(client.connection.state).toBe(HubConnectionState.Connected)
      yield* client.invoke("JoinScopeAsync", scopeId)
      yield* send(client, scopeId, "still works")
      expect(yield* client.nextText).toBe("still works")
    }).pipe(quiet))

  it.scopedLive("negotiate v0: the client connects with the connectionId when the server offers no connectionToken", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      // the client asks for negotiateVersion=1 unless the URL already names a version
      const client = yield* connect(`${server.httpUrl}/hubs/chat?negotiateVersion=0`)
      expect(client.connection.connectionId).toMatch(/^[0-9a-f-]{36}$/u)
      const scopeId = room()
      yield* client.invoke("JoinScopeAsync", scopeId)
      const sent = yield* send(client, scopeId, "v0")
      // one anonymous identity per connection, in the format of every interface (issue 15); no
      // longer the connection id itself, which SignalR shares with other parties
      expect(sent.chatEvent.senderId).toMatch(/^anon_[0-9a-f]{20}$/u)
      expect(sent.chatEvent.senderId).not.toContain(client.connection.connectionId ?? "none")
      expect(yield* client.nextText).toBe("v0")
    }).pipe(quiet))

  it.scopedLive("skipNegotiation connects straight over WebSockets", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const client = yield* connect(`${server.httpUrl}/hubs/chat`, { skipNegotiation: true })
      const scopeId = room()
      yield* client.invoke("JoinScopeAsync", scopeId)
      const sent = yield* send(client, scopeId, "no negotiate")
      expect(sent.chatEvent.senderId).toMatch(/^anon_/u)
      expect(yield* client.nextText).toBe("no negotiate")
    }).pipe(quiet))

  it.scopedLive("stop then start: a fresh connection that joins again receives again", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const client = yield* connect(`${server.httpUrl}/hubs/chat`)
      const scopeId = room()
      yield* client.invoke("JoinScopeAsync", scopeId)
      yield* Effect.promise(() => client.connection.stop())
      expect(client.connection.state).toBe(HubConnectionState.Disconnected)
      yield* Effect.promise(() => client.connection.start())
      yield* client.invoke("JoinScopeAsync", scopeId)
      yield* send(client, scopeId, "after restart")
      expect(yield* client.nextText).toBe("after restart")
    }).pipe(quiet))

  it.scopedLive("server shutdown sends Close with allowReconnect: the client learns why", () =>
    Effect.gen(function*() {
      const serverScope = yield* Scope.make()
      const server = yield* startTestServer().pipe(Scope.extend(serverScope))
      const client = yield* connect(`${server.httpUrl}/hubs/chat`)
      const closed = yield* Deferred.make<string>()
      client.connection.onclose((error) => {
        Deferred.unsafeDone(closed, Effect.succeed(error?.message ?? "no error"))
      })
      yield* client.invoke("JoinScopeAsync", room())
      yield* Scope.close(serverScope, Exit.void)
      expect(yield* Deferred.await(closed)).toBe("Server returned an error on close: The server is shutting down.")
    }).pipe(quiet))
})

// ---------------------------------------------------------------------------------------------

const SECRET = "a-signalr-test-secret-of-32-bytes!!"
const auth = hs256TestAuth(SECRET)
const tokenFor = (sub: string, expiresInSeconds = 600) =>
  new SignJWT({ sub })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSeconds)
    .sign(new TextEncoder().encode(SECRET))

describe("SignalR hub with JWT authentication", () => {
  it.scopedLive("negotiate and upgrade refuse a missing token with 401; a valid token makes its subject the sender", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const url = `${server.httpUrl}/hubs/chat`
      const negotiate = yield* Effect.promise(() => fetch(`${url}/negotiate?negotiateVersion=1`, { method: "POST" }))
      expect(negotiate.status).toBe(401)
      expect(negotiate.headers.get("content-type")).toContain("application/problem+json")
      expect(yield* Effect.promise(() => negotiate.json())).toMatchObject({
        status: 401,
        detail: "a bearer access token is required"
      })

      const anonymous = yield* build(url)
      const refused = yield* Effect.flip(Effect.tryPromise(() => anonymous.connection.start()))
      expect(String(refused.error)).toContain("401")
      const anonymousSkip = yield* build(url, { skipNegotiation: true })
      // the client cannot see the status of a refused upgrade (signalr-wire.test.ts checks it is 401)
      yield* Effect.flip(Effect.tryPromise(() => anonymousSkip.connection.start()))
      expect(anonymousSkip.connection.state).toBe(HubConnectionState.Disconnected)

      const alice = yield* connect(url, { accessTokenFactory: () => tokenFor("alice") })
      const scopeId = room()
      yield* alice.invoke("JoinScopeAsync", scopeId)
      const sent = yield* send(alice, scopeId, "signed")
      expect(sent.chatEvent.senderId).toBe("alice")
      const event = yield* Queue.take(alice.received)
      expect(event["senderId"]).toBe("alice")
    }).pipe(quiet))

  it.scopedLive("a connection ends when its token expires (Close saying so) and withAutomaticReconnect resumes with a fresh token", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      // tokens live a second or two until the server has closed the connection; the reconnect gets a long-lived one
      let closedByServer = false
      let longLived = 0
      const accessTokenFactory = () => {
        if (closedByServer) longLived++
        return tokenFor("alice", closedByServer ? 600 : 2)
      }
      const client = yield* build(
        `${server.httpUrl}/hubs/chat`,
        { accessTokenFactory },
        (builder) => builder.withAutomaticReconnect([0, 100, 500, 1000])
      )
      const reconnecting = yield* Deferred.make<string>()
      const reconnected = yield* Deferred.make<void>()
      client.connection.onreconnecting((error) => {
        closedByServer = true
        Deferred.unsafeDone(reconnecting, Effect.succeed(error?.message ?? "no error"))
      })
      client.connection.onreconnected(() => {
        Deferred.unsafeDone(reconnected, Effect.void)
      })
      yield* Effect.promise(() => client.connection.start())
      const scopeId = room()
      yield* client.invoke("JoinScopeAsync", scopeId)

      expect(yield* Deferred.await(reconnecting)).toBe(
        "Server returned an error on close: Unauthenticated: the access token expired"
      )
      yield* Deferred.await(reconnected)
      expect(longLived).toBeGreaterThanOrEqual(1)
      // memberships belong to a connection, as SignalR groups do: the client joins again
      yield* client.invoke("JoinScopeAsync", scopeId)
      yield* send(client, scopeId, "after reconnect")
      expect(yield* client.nextText).toBe("after reconnect")
    }).pipe(quiet))

  it.scopedLive("a direct-message scope is joined and written by its two members only", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const url = `${server.httpUrl}/hubs/chat`
      const dm = directMessageScopeId("alice", "bob")
      const alice = yield* connect(url, { accessTokenFactory: () => tokenFor("alice") })
      const bob = yield* connect(url, { accessTokenFactory: () => tokenFor("bob") })
      const carol = yield* connect(url, { accessTokenFactory: () => tokenFor("carol") })

      const joinRefused = yield* Effect.flip(carol.invoke("JoinScopeAsync", dm))
      expect(String(joinRefused)).toContain("Forbidden")
      const sendRefused = yield* Effect.flip(
        carol.invoke("SendAsync", { scopeType: 1, scopeId: dm, text: "let me in" })
      )
      expect(String(sendRefused)).toContain("Forbidden")

      yield* alice.invoke("JoinScopeAsync", dm)
      yield* bob.invoke("SendAsync", { scopeType: 1, scopeId: dm, text: "hi alice" })
      const event = yield* Queue.take(alice.received)
      expect(event).toMatchObject({ scopeType: 1, scopeId: dm, senderId: "bob", text: "hi alice" })
      // carol's connection still works after the refusals
      yield* carol.invoke("JoinScopeAsync", room())
    }).pipe(quiet))
})
