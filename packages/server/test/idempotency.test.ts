/**
 * Idempotent sends end to end (hardening issue, item 4): a repeat of (sender, clientMessageId) on
 * REST, /rpc (fast path and RpcServer's path) and the SignalR hub returns the first EnrichedChatEvent
 * and writes nothing: the next message of the scope takes the very next offset, and the history
 * holds the message once. Concurrent repeats make one message too.
 */
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeSocket } from "@effect/platform-node"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { HttpTransportType, HubConnectionBuilder, LogLevel as SignalRLogLevel } from "@microsoft/signalr"
import { ConfigProvider, Deferred, Effect, Fiber, Layer, Logger, LogLevel, Option, Schedule, Schema } from "effect"
import { SignJWT } from "jose"
import {
  ChatEventProducer,
  ChatPolicy,
  CurrentUser,
  PodIdentity,
  RateLimiter,
  ScopeAuthorizer,
  SendDeduplicator,
  sendMessage
} from "@chatify/core"
import { MemorySendDeduplicator, UuidV7IdGenerator } from "@chatify/adapters/memory"
import { SqliteSendDeduplicator } from "@chatify/adapters/sqlite"
import { ChatRpcs, defaultPolicyLimits, EnrichedChatEvent, HistoryPage, ProblemDetails } from "@chatify/domain"
import { loadServerConfig } from "../src/index.js"
import { hs256TestAuth, startTestServer, type TestServer } from "../src/testing.js"
import { endpoints, ensureService } from "../../adapters/test/support/services.js"

beforeAll(() => ensureService("redis"), 120_000)

const SECRET = "a-development-secret-of-32-bytes!"
const auth = hs256TestAuth(SECRET)
const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

const tokenFor = (sub: string) =>
  Effect.promise(() =>
    new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub)
      .setExpirationTime(Math.floor(Date.now() / 1000) + 600).sign(new TextEncoder().encode(SECRET))
  )

const decodeEnriched = Schema.decodeUnknownSync(EnrichedChatEvent)
const decodeProblem = Schema.decodeUnknownSync(ProblemDetails)
const room = () => `idem-${randomUUID()}`

const post = (server: TestServer, body: unknown, token?: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${server.httpUrl}/api/chat/send`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` })
      },
      body: JSON.stringify(body)
    })
    return { status: response.status, body: await response.json() }
  })

const sentBy = (server: TestServer, body: unknown, token?: string) =>
  Effect.map(post(server, body, token), (response) => {
    expect(response.status).toBe(200)
    return decodeEnriched(response.body)
  })

/**
 * The scope's history once `last` is in it: the history writer follows the log in order, so
 * everything produced before `last` is there too.
 */
const historyThrough = (server: TestServer, scopeId: string, last: string, token?: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${server.httpUrl}/api/chat/scopes/0/${scopeId}/history?limit=500`, {
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` }
    })
    return Schema.decodeUnknownSync(HistoryPage)(await response.json()).items
  }).pipe(
    Effect.filterOrFail(
      (items) => items.some((e) => e.chatEvent.text === last),
      () => new Error(`${last} never reached the history`)
    ),
    Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 500 })
  )

/**
 * After the sends under test, one more message without a key: it takes the offset right after the
 * first send's (nothing was written in between: the scope has the partition to itself in a fresh
 * server), and the history holds `text` exactly once.
 */
const expectWrittenOnce = (
  server: TestServer,
  first: EnrichedChatEvent,
  sendSentinel: (text: string) => Effect.Effect<EnrichedChatEvent, unknown>,
  token?: string
) =>
  Effect.gen(function*() {
    const sentinel = yield* sendSentinel(`after-${randomUUID()}`)
    expect(sentinel.partition).toBe(first.partition)
    expect(sentinel.offset).toBe(first.offset + 1)
    const history = yield* historyThrough(server, first.chatEvent.scopeId, sentinel.chatEvent.text, token)
    expect(history.filter((e) => e.chatEvent.text === first.chatEvent.text).map((e) => e.chatEvent.messageId)).toEqual([
      first.chatEvent.messageId
    ])
  })

const rpcClient = (server: TestServer, token?: string) =>
  Effect.gen(function*() {
    const url = token === undefined ? server.wsUrl : `${server.wsUrl}?access_token=${encodeURIComponent(token)}`
    const context = yield* Layer.build(
      RpcClient.layerProtocolSocket().pipe(
        Layer.provide(NodeSocket.layerWebSocket(url)),
        Layer.provide(RpcSerialization.layerNdjson)
      )
    )
    return yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))
  })

const hubClient = (server: TestServer, token: string) =>
  Effect.gen(function*() {
    const connection = new HubConnectionBuilder()
      .withUrl(`${server.httpUrl}/hubs/chat`, {
        transport: HttpTransportType.WebSockets,
        accessTokenFactory: () => token
      })
      .configureLogging(SignalRLogLevel.None)
      .build()
    yield* Effect.acquireRelease(
      Effect.promise(() => connection.start()),
      () => Effect.promise(() => connection.stop())
    )
    return {
      send: (argument: unknown) =>
        Effect.map(Effect.promise(() => connection.invoke<unknown>("SendAsync", argument)), decodeEnriched),
      sendRaw: (argument: unknown) =>
        Effect.tryPromise({
          try: () => connection.invoke<unknown>("SendAsync", argument),
          catch: (error) => (error instanceof Error ? error.message : String(error))
        })
    }
  })

describe("idempotent sends: REST", () => {
  it.scopedLive("a repeat returns the same messageId and position, and the history holds one message", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const alice = yield* tokenFor("alice")
      const body = { scopeType: 0, scopeId: room(), text: `once-${randomUUID()}`, clientMessageId: randomUUID() }
      const first = yield* sentBy(server, body, alice)
      const again = yield* sentBy(server, body, alice)
      expect(again).toEqual(first)
      yield* expectWrittenOnce(
        server,
        first,
        (text) => sentBy(server, { ...body, text, clientMessageId: undefined }, alice),
        alice
      )

      // the same key from another sender is another message
      const bob = yield* sentBy(server, body, yield* tokenFor("bob"))
      expect(bob.chatEvent.messageId).not.toBe(first.chatEvent.messageId)
      expect(bob.chatEvent.senderId).toBe("bob")
    }).pipe(quiet))

  it.scopedLive("concurrent sends with one key make one message", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const alice = yield* tokenFor("alice")
      const body = { scopeType: 0, scopeId: room(), text: `together-${randomUUID()}`, clientMessageId: randomUUID() }
      const results = yield* Effect.all(Array.from({ length: 8 }, () => sentBy(server, body, alice)), {
        concurrency: "unbounded"
      })
      for (const result of results) expect(result).toEqual(results[0])
      yield* expectWrittenOnce(server, results[0]!, (text) =>
        sentBy(server, { ...body, text, clientMessageId: undefined }, alice), alice)
    }).pipe(quiet))

  it.scopedLive("a key reused for another text is 409 Conflict; an invalid key is 400 naming clientMessageId", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const alice = yield* tokenFor("alice")
      const body = { scopeType: 0, scopeId: room(), text: "first", clientMessageId: randomUUID() }
      yield* sentBy(server, body, alice)
      const reused = yield* post(server, { ...body, text: "second" }, alice)
      expect(reused.status).toBe(409)
      expect(decodeProblem(reused.body).detail).toContain("clientMessageId")

      for (const clientMessageId of ["", "tab\there", "zero\u200bwidth", "x".repeat(129)]) {
        const invalid = yield* post(server, { ...body, clientMessageId }, alice)
        expect(invalid.status).toBe(400)
        expect(decodeProblem(invalid.body).errors?.map((e) => e.field)).toEqual(["clientMessageId"])
      }
      const notAString = yield* post(server, { ...body, clientMessageId: 42 }, alice)
      expect(notAString.status).toBe(400)
    }).pipe(quiet))

  it.scopedLive("the OpenAPI document describes clientMessageId and the 409", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const spec = yield* Effect.promise(() => fetch(`${server.httpUrl}/openapi.json`).then((r) => r.json()))
      const text = JSON.stringify(spec)
      expect(text).toContain("clientMessageId")
      expect(text).toContain("CHATIFY__CHAT__IDEMPOTENCYWINDOWSECONDS")
      expect(text).toContain("Problem409")
    }).pipe(quiet))
})

describe("idempotent sends: RPC", () => {
  it.scopedLive("a repeat, on the fast path or RpcServer's, returns the same message; concurrent repeats too; one message written", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const alice = yield* tokenFor("alice")
      const client = yield* rpcClient(server, alice)
      const payload = {
        scopeType: 0 as const,
        scopeId: room(),
        text: `rpc-${randomUUID()}`,
        clientMessageId: randomUUID()
      }
      // no headers of its own: the /rpc fast path
      const first = yield* client.Send(payload)
      // an Authorization header of its own: RpcServer's path
      const general = yield* client.Send(payload, { headers: { authorization: `Bearer ${alice}` } })
      expect(general).toEqual(first)
      const concurrent = yield* Effect.all(Array.from({ length: 6 }, () => client.Send(payload)), {
        concurrency: "unbounded"
      })
      for (const result of concurrent) expect(result).toEqual(first)
      yield* expectWrittenOnce(
        server,
        first,
        (text) => client.Send({ ...payload, text, clientMessageId: randomUUID() }),
        alice
      )

      const reused = yield* Effect.flip(client.Send({ ...payload, text: "another text" }))
      expect(reused._tag).toBe("Conflict")
      const invalid = yield* Effect.flip(client.Send({ ...payload, clientMessageId: "a\u0000b" }))
      expect(invalid._tag === "ValidationError" ? invalid.errors.map((e) => e.field) : invalid._tag).toEqual([
        "clientMessageId"
      ])
    }).pipe(quiet))

  it.scopedLive("concurrent first sends with one key (fast path) make one message", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const alice = yield* tokenFor("alice")
      const clients = yield* Effect.all([rpcClient(server, alice), rpcClient(server, alice)])
      const payload = {
        scopeType: 0 as const,
        scopeId: room(),
        text: `race-${randomUUID()}`,
        clientMessageId: randomUUID()
      }
      const results = yield* Effect.all(
        Array.from({ length: 10 }, (_, i) => clients[i % 2]!.Send(payload)),
        { concurrency: "unbounded" }
      )
      for (const result of results) expect(result).toEqual(results[0])
      yield* expectWrittenOnce(server, results[0]!, (text) =>
        clients[0].Send({ ...payload, text, clientMessageId: randomUUID() }), alice)
    }).pipe(quiet))

  it.scopedLive("anonymous, a repeat on the same connection is recognized (the identity is the connection's)", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const client = yield* rpcClient(server)
      const payload = {
        scopeType: 0 as const,
        scopeId: room(),
        text: `anon-${randomUUID()}`,
        clientMessageId: randomUUID()
      }
      const first = yield* client.Send(payload)
      expect(yield* client.Send(payload)).toEqual(first)
      yield* expectWrittenOnce(server, first, (text) => client.Send({ ...payload, text, clientMessageId: undefined }))
    }).pipe(quiet))
})

describe("idempotent sends: SignalR", () => {
  it.scopedLive("a SendAsync repeat returns the same message, concurrent ones too; null is no key", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const alice = yield* tokenFor("alice")
      const hub = yield* hubClient(server, alice)
      const argument = { scopeType: 0, scopeId: room(), text: `hub-${randomUUID()}`, clientMessageId: randomUUID() }
      const first = yield* hub.send(argument)
      expect(yield* hub.send(argument)).toEqual(first)
      const concurrent = yield* Effect.all(Array.from({ length: 6 }, () => hub.send(argument)), {
        concurrency: "unbounded"
      })
      for (const result of concurrent) expect(result).toEqual(first)
      yield* expectWrittenOnce(server, first, (text) => hub.send({ ...argument, text, clientMessageId: null }), alice)

      // null (as .NET writes an unset property) is no key: each send is its own message
      const scopeId = room()
      const a = yield* hub.send({ scopeType: 0, scopeId, text: "twice", clientMessageId: null })
      const b = yield* hub.send({ scopeType: 0, scopeId, text: "twice", clientMessageId: null })
      expect(b.chatEvent.messageId).not.toBe(a.chatEvent.messageId)

      const reused = yield* Effect.flip(hub.sendRaw({ ...argument, text: "another text" }))
      expect(reused).toContain("Conflict")
      const invalid = yield* Effect.flip(hub.sendRaw({ ...argument, clientMessageId: "x".repeat(129) }))
      expect(invalid).toContain("clientMessageId")
    }).pipe(quiet))
})

describe("idempotent sends: configuration and stores", () => {
  const withEnv = (env: Record<string, string>) =>
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)), { pathDelim: "__" }))

  it.effect("CHATIFY__CHAT__IDEMPOTENCYWINDOWSECONDS: 300 by default, a positive number of seconds, refused otherwise by name", () =>
    Effect.gen(function*() {
      expect((yield* loadServerConfig.pipe(withEnv({}))).idempotencyWindowSeconds).toBe(300)
      const set = yield* loadServerConfig.pipe(withEnv({ CHATIFY__CHAT__IDEMPOTENCYWINDOWSECONDS: "86400" }))
      expect(set.idempotencyWindowSeconds).toBe(86400)
      for (const bad of ["0", "-5", "soon"]) {
        const error = yield* Effect.flip(
          loadServerConfig.pipe(withEnv({ CHATIFY__CHAT__IDEMPOTENCYWINDOWSECONDS: bad }))
        )
        expect(error.message).toContain("CHATIFY__CHAT__IDEMPOTENCYWINDOWSECONDS")
      }
    }))

  it.scopedLive("the embedded server keeps keys for the configured window, then forgets them", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth), idempotencyWindowSeconds: 1 } })
      const alice = yield* tokenFor("alice")
      const body = { scopeType: 0, scopeId: room(), text: "window", clientMessageId: randomUUID() }
      const first = yield* sentBy(server, body, alice)
      expect(yield* sentBy(server, body, alice)).toEqual(first)
      yield* Effect.sleep("1500 millis")
      const later = yield* sentBy(server, body, alice)
      expect(later.chatEvent.messageId).not.toBe(first.chatEvent.messageId)
    }).pipe(quiet))

  it.scopedLive("with Redis, pods share the keys: a repeat on another pod returns the first pod's result and writes nothing there", () =>
    Effect.gen(function*() {
      const config = { auth: Option.some(auth), caching: Option.some({ connectionString: endpoints.redis }) }
      const podA = yield* startTestServer({ config: { ...config, podId: "pod-a" } })
      const podB = yield* startTestServer({ config: { ...config, podId: "pod-b" } })
      const alice = yield* tokenFor("alice")
      const body = { scopeType: 0, scopeId: room(), text: "shared", clientMessageId: randomUUID() }
      const first = yield* sentBy(podA, body, alice)
      expect(first.chatEvent.originPodId).toBe("pod-a")
      expect(yield* sentBy(podB, body, alice)).toEqual(first)
      // pod B's own log (embedded, its own) took nothing for the scope: its first message there is at the offset pod A's was
      const onB = yield* sentBy(podB, { ...body, text: "only on b", clientMessageId: undefined }, alice)
      expect(onB.offset).toBe(first.offset)
    }).pipe(quiet))
})

describe("idempotent sends: the pipeline on each embedded store, with a slow produce", () => {
  const tempDirectory = Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "chatify-idempotency-"))),
    (directory) => Effect.sync(() => rmSync(directory, { recursive: true, force: true }))
  )
  const stores: ReadonlyArray<readonly [string, Layer.Layer<SendDeduplicator, unknown>]> = [
    ["in memory", MemorySendDeduplicator({ windowSeconds: 60 })],
    [
      "SQLite",
      Layer.unwrapScoped(
        Effect.map(tempDirectory, (dataDirectory) => SqliteSendDeduplicator.layer({ dataDirectory, windowSeconds: 60 }))
      )
    ]
  ]
  for (const [name, store] of stores) {
    it.scopedLive(`${name}: two concurrent sends with one key make one message; the second waits for the first's result`, () =>
      Effect.gen(function*() {
        const produced: Array<string> = []
        const gate = yield* Deferred.make<void>()
        const producing = yield* Deferred.make<void>()
        const services = yield* Layer.build(Layer.mergeAll(
          store,
          UuidV7IdGenerator,
          Layer.succeed(ChatPolicy, defaultPolicyLimits),
          Layer.succeed(PodIdentity, { podId: "pod-a" }),
          Layer.succeed(CurrentUser, { userId: "alice", connectionId: "c1" }),
          Layer.succeed(ScopeAuthorizer, { authorize: () => Effect.succeed(true) }),
          Layer.succeed(RateLimiter, {
            checkAndIncrement: () =>
              Effect.succeed({ allowed: true, limit: 100, remaining: 99, windowSeconds: 60, retryAfterSeconds: 0 })
          }),
          Layer.succeed(ChatEventProducer, {
            produce: (event) =>
              Effect.gen(function*() {
                produced.push(event.messageId)
                yield* Deferred.succeed(producing, undefined)
                yield* Deferred.await(gate)
                return { partition: 0, offset: produced.length - 1 }
              })
          })
        ))
        const send = sendMessage({ scopeType: 0, scopeId: "general", text: "hi", clientMessageId: "m-1" }).pipe(
          Effect.provide(services)
        )
        const first = yield* Effect.fork(send)
        yield* Deferred.await(producing)
        const second = yield* Effect.fork(send)
        yield* Effect.sleep("100 millis")
        expect(produced).toHaveLength(1)
        yield* Deferred.succeed(gate, undefined)
        const [a, b] = yield* Effect.all([Fiber.join(first), Fiber.join(second)])
        expect(b).toEqual(a)
        expect(produced).toEqual([a.chatEvent.messageId])
        // and afterwards, a third is answered from the store
        expect(yield* send).toEqual(a)
        expect(produced).toHaveLength(1)
      }).pipe(quiet))
  }
})
