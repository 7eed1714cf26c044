import { SignJWT } from "jose"
import type { IncomingMessage } from "node:http"
import { WebSocket as NodeWebSocket, WebSocketServer } from "ws"
import { NodeSocket } from "@effect/platform-node"
import * as Socket from "@effect/platform/Socket"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import {
  Cause,
  Chunk,
  Deferred,
  type Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Logger,
  LogLevel,
  Option,
  Schedule,
  Schema,
  Scope,
  Stream
} from "effect"
import {
  ChatRpcs,
  type EnrichedChatEvent,
  partitionForScope,
  PROBLEM_CONTENT_TYPE,
  positionOf,
  ProblemDetails,
  type ScopeRef,
  type StreamPosition,
  Subscribed,
  SubscriptionLagged
} from "@chatify/domain"
// By package name, as another workspace package would import it (a self-reference through "exports").
import { ChatClient } from "@chatify/sdk/node"
import * as Core from "../src/index.js"
import { type ChatClientService, makeChatClient, type SubscriptionUpdate } from "../src/node.js"
import { freeLoopbackPort } from "../../adapters/test/support/ports.js"
import { startTcpProxy } from "./support/TcpProxy.js"
import { hs256TestAuth, makeTempDirectory, startTestServer } from "@chatify/server/testing"

const END = "--end--"

const freshScope = (): ScopeRef => ({ scopeType: 0, scopeId: `room-${crypto.randomUUID()}` })

/** Startup and shutdown logs of the server are noise here; warnings and errors still show. */
const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

const within = (duration: Duration.DurationInput, what: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration, onTimeout: () => new Error(`timed out waiting for ${what}`) })

const ids = (events: ReadonlyArray<EnrichedChatEvent>) => events.map((e) => e.chatEvent.messageId)
const offsets = (events: ReadonlyArray<EnrichedChatEvent>) => events.map((e) => e.offset)
const byOffset = (events: ReadonlyArray<EnrichedChatEvent>) => [...events].sort((a, b) => a.offset - b.offset)

const expectStrictlyIncreasing = (values: ReadonlyArray<number>) => {
  const violations = values.filter((value, i) => i > 0 && value <= values[i - 1]!)
  expect(violations).toEqual([])
}

const sendMany = (client: ChatClientService, scope: ScopeRef, count: number, concurrency: number, prefix = "m") =>
  Effect.forEach(
    Array.from({ length: count }, (_, i) => i),
    (i) => client.send({ ...scope, text: `${prefix}-${i}` }),
    { concurrency }
  )

const lastPosition = (events: ReadonlyArray<EnrichedChatEvent>): Effect.Effect<StreamPosition, Error> =>
  Option.match(Option.fromNullable(events.at(-1)), {
    onNone: () => Effect.fail(new Error("no event received")),
    onSome: (event) => Effect.succeed(positionOf(event))
  })

/**
 * Subscribes in the background until `done` holds for what arrived, and returns once the server
 * reported the subscription live, so nothing sent afterwards can be missed.
 */
const collectUntil = (
  client: ChatClientService,
  scope: ScopeRef,
  done: (received: ReadonlyArray<EnrichedChatEvent>) => boolean,
  options: { readonly after?: StreamPosition } = {}
) =>
  Effect.gen(function*() {
    const live = yield* Deferred.make<void>()
    const received: Array<EnrichedChatEvent> = []
    const fiber = yield* client.subscribe(scope, { ...options, onLive: live }).pipe(
      Stream.tap((event) => Effect.sync(() => received.push(event))),
      Stream.takeUntil(() => done(received)),
      Stream.runDrain,
      Effect.as(received),
      Effect.forkScoped
    )
    yield* Deferred.await(live).pipe(within("5 seconds", "the subscription to be live"))
    return fiber
  })

/**
 * As `collectUntil`, on a bare RpcClient: the raw Subscribe items, without the SDK's dedupe by
 * messageId, so a duplicate the server sends is counted. Returns once `Subscribed` came.
 */
const collectRawUntil = (
  wsUrl: string,
  scope: ScopeRef,
  done: (received: ReadonlyArray<EnrichedChatEvent>) => boolean,
  options: { readonly after?: StreamPosition } = {}
) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      RpcClient.layerProtocolSocket().pipe(
        Layer.provide(NodeSocket.layerWebSocket(wsUrl)),
        Layer.provide(RpcSerialization.layerNdjson)
      )
    )
    const rpc = yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))
    const subscribed = yield* Deferred.make<void>()
    const received: Array<EnrichedChatEvent> = []
    const fiber = yield* rpc.Subscribe({ scopeType: scope.scopeType, scopeId: scope.scopeId, ...options }).pipe(
      Stream.tap((item) =>
        item instanceof Subscribed
          ? Effect.asVoid(Deferred.succeed(subscribed, undefined))
          : Effect.sync(() => void received.push(item))
      ),
      Stream.takeUntil(() => done(received)),
      Stream.runDrain,
      Effect.as(received),
      Effect.forkScoped
    )
    yield* Deferred.await(subscribed).pipe(within("5 seconds", "Subscribed"))
    return fiber
  })

const untilEnd = (received: ReadonlyArray<EnrichedChatEvent>) => received.at(-1)?.chatEvent.text === END
const untilCount = (count: number) => (received: ReadonlyArray<EnrichedChatEvent>) => received.length >= count

/**
 * Sends `count` messages while the slow client's subscription holds its first event, until a fast
 * probe subscriber on the same scope has them all (so the fan-out offered everything): everything
 * behind that first event piles up. Returns what the slow subscription then delivered, why it
 * reconnected meanwhile, and what was sent.
 */
const floodHeldSubscriber = (
  wsUrl: string,
  slow: ChatClientService,
  sender: ChatClientService,
  scope: ScopeRef,
  count: number
) =>
  Effect.gen(function*() {
    const live = yield* Deferred.make<void>()
    const gate = yield* Deferred.make<void>()
    const received: Array<EnrichedChatEvent> = []
    const reconnectReasons: Array<Extract<SubscriptionUpdate, { _tag: "Reconnecting" }>["reason"]> = []
    const consuming = yield* slow.subscribeWithStatus(scope).pipe(
      Stream.tap((update): Effect.Effect<void> => {
        switch (update._tag) {
          case "Live":
            return Deferred.succeed(live, undefined)
          case "Reconnecting":
            return Effect.sync(() => reconnectReasons.push(update.reason))
          case "PositionLost":
            return Effect.dieMessage("no position was lost here")
          case "Event":
            received.push(update.event)
            return received.length === 1 ? Deferred.await(gate) : Effect.void
        }
      }),
      Stream.takeUntil(() => received.length >= count),
      Stream.runDrain,
      Effect.forkScoped
    )
    yield* Deferred.await(live).pipe(within("5 seconds", "the slow subscription to be live"))
    const probe = yield* makeChatClient({ url: wsUrl })
    const probing = yield* collectUntil(probe, scope, untilCount(count))

    const sent = yield* sendMany(sender, scope, count, 32)
    yield* Fiber.join(probing).pipe(within("20 seconds", "the probe subscriber"))
    yield* Deferred.succeed(gate, undefined)
    yield* Fiber.join(consuming).pipe(within("20 seconds", "the lagging subscriber"))
    return { received, reconnectReasons, sent }
  })

describe("ChatClient end to end", () => {
  it.scopedLive("two subscribers and a sender: each subscriber gets every message exactly once", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const scope = freshScope()
      const [alice, sender] = yield* Effect.all([
        makeChatClient({ url: server.wsUrl }),
        makeChatClient({ url: server.wsUrl })
      ])
      const forAlice = yield* collectUntil(alice, scope, untilEnd)
      // bob counts what the server sent him, as it came (the SDK would drop a duplicate)
      const forBob = yield* collectRawUntil(server.wsUrl, scope, untilEnd)

      const sent = yield* sendMany(sender, scope, 50, 8)
      const end = yield* sender.send({ ...scope, text: END })
      const [gotAlice, gotBob] = yield* Fiber.join(Fiber.zip(forAlice, forBob)).pipe(
        within("10 seconds", "both subscribers")
      )

      // The end marker is sent after every other send returned, so it is last in the log too.
      const expected = [...ids(byOffset(sent)), end.chatEvent.messageId]
      expect(ids(gotAlice)).toEqual(expected)
      expect(ids(gotBob)).toEqual(expected)
      expect(new Set(ids(gotAlice)).size).toBe(51)
      expect(gotBob.length).toBe(51)
    }).pipe(quiet))

  it.scopedLive("1,000 pipelined sends arrive complete and in log order", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const scope = freshScope()
      // without the SDK's dedupe: a duplicate from the server takes the place of a message
      const subscriber = yield* makeChatClient({ url: server.wsUrl, dedupe: false })
      const sender = yield* makeChatClient({ url: server.wsUrl })
      const collecting = yield* collectUntil(subscriber, scope, untilCount(1_000))

      const sent = yield* sendMany(sender, scope, 1_000, 32)
      const received = yield* Fiber.join(collecting).pipe(within("20 seconds", "1,000 events"))

      expect(received.length).toBe(1_000)
      expectStrictlyIncreasing(offsets(received))
      expect(ids(received)).toEqual(ids(byOffset(sent)))
      expect(offsets(received)).toEqual(offsets(byOffset(sent)))
      expect(new Set(received.map((e) => e.partition))).toEqual(new Set([partitionForScope(scope, 3)]))
    }).pipe(quiet))

  it.scopedLive("a new client resuming after the last seen position gets exactly the gap, then live events", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const scope = freshScope()
      const sender = yield* makeChatClient({ url: server.wsUrl })

      const firstClientScope = yield* Scope.make()
      const first = yield* makeChatClient({ url: server.wsUrl }).pipe(Scope.extend(firstClientScope))
      const firstCollecting = yield* collectUntil(first, scope, untilCount(10))
      const before = yield* sendMany(sender, scope, 10, 1, "before")
      const seen = yield* Fiber.join(firstCollecting).pipe(within("10 seconds", "the first 10 events"))
      expect(ids(seen)).toEqual(ids(before))
      const resumeAt = yield* lastPosition(seen)
      yield* Scope.close(firstClientScope, Exit.void)

      const gap = yield* sendMany(sender, scope, 10, 1, "gap")
      // the resume on a bare RpcClient: exactly what the server sent, duplicates included
      const secondCollecting = yield* collectRawUntil(server.wsUrl, scope, untilEnd, { after: resumeAt })
      const live = yield* sendMany(sender, scope, 5, 1, "live")
      const end = yield* sender.send({ ...scope, text: END })
      const resumed = yield* Fiber.join(secondCollecting).pipe(within("15 seconds", "the resumed subscription"))

      expect(ids(resumed)).toEqual([...ids(gap), ...ids(live), end.chatEvent.messageId])
      expectStrictlyIncreasing(offsets(resumed))
    }).pipe(quiet))

  it.scopedLive("reconnects on its own when the transport drops, delivering every message once and in order", () =>
    Effect.gen(function*() {
      const N = 300
      const server = yield* startTestServer()
      const proxy = yield* startTcpProxy(server.port)
      const scope = freshScope()
      // without the SDK's dedupe: each resume must start after the last event, not repeat it
      const subscriber = yield* makeChatClient({ url: `ws://127.0.0.1:${proxy.port}/rpc`, dedupe: false })
      const sender = yield* makeChatClient({ url: server.wsUrl })

      const live = yield* Deferred.make<void>()
      // Flow control: the sender stays at most 16 messages ahead of the subscriber, so most events
      // are still to come when a connection is cut and the subscriber must reconnect to get them.
      const window = yield* Effect.makeSemaphore(16)
      const received: Array<EnrichedChatEvent> = []
      const reconnectReasons: Array<string> = []
      let lives = 0
      let cut = 0
      const onUpdate = (update: SubscriptionUpdate): Effect.Effect<void> => {
        switch (update._tag) {
          case "Live":
            lives++
            return Deferred.succeed(live, undefined)
          case "Reconnecting":
            reconnectReasons.push(update.reason._tag)
            return Effect.void
          case "PositionLost":
            return Effect.dieMessage("no position was lost here")
          case "Event":
            received.push(update.event)
            // Cut the connection from outside twice while events are still streaming in.
            return Effect.zipRight(
              window.release(1),
              received.length === 60 || received.length === 180
                ? Effect.map(proxy.dropConnections, (n) => {
                  cut += n
                })
                : Effect.void
            )
        }
      }
      const consuming = yield* subscriber.subscribeWithStatus(scope).pipe(
        Stream.tap(onUpdate),
        Stream.takeUntil(() => received.length >= N),
        Stream.runDrain,
        Effect.forkScoped
      )
      yield* Deferred.await(live).pipe(within("5 seconds", "the subscription to be live"))

      const sent = yield* Effect.forEach(
        Array.from({ length: N }, (_, i) => i),
        (i) => window.take(1).pipe(Effect.zipRight(sender.send({ ...scope, text: `m-${i}` }))),
        { concurrency: 4 }
      ).pipe(within("30 seconds", `${N} sends`))
      yield* Fiber.join(consuming).pipe(within("30 seconds", `${N} events through the proxy`))

      expect(cut).toBe(2)
      expect(lives).toBe(3)
      expect(reconnectReasons.length).toBeGreaterThanOrEqual(2)
      expect(new Set(reconnectReasons)).toEqual(new Set(["RpcClientError"]))
      expect(yield* proxy.accepted).toBe(3)
      expect(received.length).toBe(N)
      expectStrictlyIncreasing(offsets(received))
      expect(ids(received)).toEqual(ids(byOffset(sent)))
    }).pipe(quiet))

  // The RPC client pings every 10 s and, with no Pong by the next ping, reconnects its socket on
  // its own without failing the calls it had open (@effect/rpc swallows that "OpenTimeout" under
  // retryTransientErrors): a subscription must not stay on the dead connection, silently.
  it.scopedLive("a connection whose replies stop is replaced and its subscription resumes, no gap, no duplicate", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const proxy = yield* startTcpProxy(server.port)
      const scope = freshScope()
      const subscriber = yield* makeChatClient({ url: `ws://127.0.0.1:${proxy.port}/rpc`, dedupe: false })
      const sender = yield* makeChatClient({ url: server.wsUrl })

      const live = yield* Deferred.make<void>()
      const received: Array<EnrichedChatEvent> = []
      const reconnectReasons: Array<string> = []
      const consuming = yield* subscriber.subscribeWithStatus(scope).pipe(
        Stream.tap((update) => {
          switch (update._tag) {
            case "Live":
              return Deferred.succeed(live, undefined)
            case "Reconnecting":
              return Effect.sync(() => void reconnectReasons.push(update.reason._tag))
            case "PositionLost":
              return Effect.dieMessage("no position was lost here")
            case "Event":
              return Effect.sync(() => void received.push(update.event))
          }
        }),
        Stream.takeUntil(() => received.length >= 10),
        Stream.runDrain,
        Effect.forkScoped
      )
      yield* Deferred.await(live).pipe(within("5 seconds", "the subscription to be live"))
      const before = yield* sendMany(sender, scope, 5, 1, "before")
      yield* Effect.sync(() => received.length).pipe(
        Effect.repeat({ until: (n) => n >= 5, schedule: Schedule.spaced("20 millis") }),
        within("10 seconds", "the first events")
      )

      yield* proxy.stallReplies
      // reads made on the stalled connection: asked again on the new one, not left waiting for ever
      const reads = yield* Effect.all([
        subscriber.history({ ...scope, limit: 50 }),
        subscriber.presence(scope),
        subscriber.stats({ ...scope, from: new Date(Date.now() - 60_000), to: new Date(Date.now() + 60_000) })
      ], { concurrency: "unbounded" }).pipe(Effect.forkScoped)
      const after = yield* sendMany(sender, scope, 5, 1, "after")
      // the next ping finds no Pong within 10 to 20 s; then a new connection and a resume
      yield* Fiber.join(consuming).pipe(within("40 seconds", "the events sent while the replies stalled"))
      const [page, online, stats] = yield* Fiber.join(reads).pipe(within("20 seconds", "the reads made on the stall"))

      expect(yield* proxy.accepted).toBe(2)
      expect(reconnectReasons).toEqual(["RpcClientError"])
      expect(ids(received)).toEqual(ids([...before, ...after]))
      expect(page.items.length).toBeGreaterThanOrEqual(before.length)
      expect(online.scopeId).toBe(scope.scopeId)
      expect(stats.scopeId).toBe(scope.scopeId)
    }).pipe(quiet))

  it.scopedLive("a live-only subscription cut off before its first event resumes where it went live", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const scope = freshScope()
      const sender = yield* makeChatClient({ url: server.wsUrl })
      yield* sender.send({ ...scope, text: "before the subscription" })
      const proxy = yield* startTcpProxy(server.port)
      const subscriber = yield* makeChatClient({ url: `ws://127.0.0.1:${proxy.port}/rpc` })
      const live = yield* Deferred.make<void>()
      const received: Array<EnrichedChatEvent> = []
      const consuming = yield* subscriber.subscribe(scope, { onLive: live }).pipe(
        Stream.take(10),
        Stream.runForEach((event) => Effect.sync(() => received.push(event))),
        Effect.forkScoped
      )
      yield* Deferred.await(live).pipe(within("5 seconds", "the subscription to be live"))

      // point the proxy at a closed port, cut the connection, send while the subscriber cannot reconnect
      const closedPort = yield* Effect.promise(freeLoopbackPort)
      yield* proxy.retarget(closedPort)
      yield* proxy.dropConnections
      const sent = yield* sendMany(sender, scope, 10, 1)
      yield* proxy.retarget(server.port)

      yield* Fiber.join(consuming).pipe(within("20 seconds", "the 10 messages sent while disconnected"))
      expect(ids(received)).toEqual(ids(byOffset(sent)))
    }).pipe(quiet))

  it.scopedLive("a lagging subscriber is ended by the server and resumes without loss or duplicates", () =>
    Effect.gen(function*() {
      const N = 1_500
      // A tiny server-side buffer, so a consumer that stops reading overflows it.
      const server = yield* startTestServer({ config: { subscriberBufferSize: 8 } })
      const scope = freshScope()
      const slow = yield* makeChatClient({ url: server.wsUrl, dedupe: false })
      const sender = yield* makeChatClient({ url: server.wsUrl })

      const { received, reconnectReasons, sent } = yield* floodHeldSubscriber(server.wsUrl, slow, sender, scope, N)

      expect(reconnectReasons.map((reason) => reason._tag)).toContain("SubscriptionLagged")
      expect(received.length).toBe(N)
      expectStrictlyIncreasing(offsets(received))
      expect(ids(received)).toEqual(ids(byOffset(sent)))
    }).pipe(quiet))

  it.scopedLive("no Ack per chunk: a consumer that falls behind its own buffer lets go and resumes from the history, no loss, no duplicate", () =>
    Effect.gen(function*() {
      const N = 2_000
      const BUFFER = 200
      const server = yield* startTestServer()
      const scope = freshScope()
      // every frame the slow client writes, to see that it never acknowledges a chunk
      const written: Array<string> = []
      const recordingConnector = Layer.succeed(Core.WebSocketConnector, {
        upgradeHeaders: true,
        open: (url, headers) => {
          const ws = new NodeWebSocket(url, { headers })
          const send = ws.send.bind(ws)
          ws.send = ((data: string, callback?: (error?: Error) => void) => {
            written.push(data)
            send(data, callback)
          }) as typeof ws.send
          return ws as unknown as globalThis.WebSocket
        }
      })
      const slow = yield* Core.makeChatClient({ url: server.wsUrl, dedupe: false, subscriptionBuffer: BUFFER }).pipe(
        Effect.provide(recordingConnector)
      )
      const sender = yield* makeChatClient({ url: server.wsUrl })

      const { received, reconnectReasons, sent } = yield* floodHeldSubscriber(server.wsUrl, slow, sender, scope, N)

      // the client's own bound let go, not the server's
      expect(reconnectReasons).toContainEqual(
        new SubscriptionLagged({ scopeId: scope.scopeId, bufferSize: BUFFER })
      )
      expect(received.length).toBe(N)
      expectStrictlyIncreasing(offsets(received))
      expect(ids(received)).toEqual(ids(byOffset(sent)))
      expect(written.some((frame) => frame.includes("\"Request\""))).toBe(true)
      expect(written.filter((frame) => frame.includes("\"Ack\""))).toEqual([])
    }).pipe(quiet))

  it.scopedLive("a live subscription survives a server restart and resumes after its last position", () =>
    Effect.gen(function*() {
      const dataDirectory = yield* makeTempDirectory()
      const scope = freshScope()

      const firstRun = yield* Scope.make()
      const firstServer = yield* startTestServer({ dataDirectory }).pipe(Scope.extend(firstRun))
      // The proxy gives the subscriber one address across both servers.
      const proxy = yield* startTcpProxy(firstServer.port)
      const subscriber = yield* makeChatClient({ url: `ws://127.0.0.1:${proxy.port}/rpc`, dedupe: false })

      const live = yield* Deferred.make<void>()
      const received: Array<EnrichedChatEvent> = []
      const reconnectReasons: Array<string> = []
      let lives = 0
      const firstHalf = yield* Deferred.make<void>()
      const consuming = yield* subscriber.subscribeWithStatus(scope).pipe(
        Stream.tap((update): Effect.Effect<unknown> => {
          switch (update._tag) {
            case "Live":
              lives++
              return Deferred.succeed(live, undefined)
            case "Reconnecting":
              return Effect.sync(() => reconnectReasons.push(update.reason._tag))
            case "PositionLost":
              return Effect.dieMessage("no position was lost here")
            case "Event":
              received.push(update.event)
              return received.length === 20 ? Deferred.succeed(firstHalf, undefined) : Effect.void
          }
        }),
        Stream.takeUntil(() => received.length >= 40),
        Stream.runDrain,
        Effect.forkScoped
      )
      yield* Deferred.await(live).pipe(within("5 seconds", "the subscription to be live"))

      const before = yield* Effect.gen(function*() {
        const sender = yield* makeChatClient({ url: firstServer.wsUrl })
        return yield* sendMany(sender, scope, 20, 1, "before")
      }).pipe(Scope.extend(firstRun))
      yield* Deferred.await(firstHalf).pipe(within("10 seconds", "the first 20 events"))
      yield* Scope.close(firstRun, Exit.void)

      const secondServer = yield* startTestServer({ dataDirectory })
      yield* proxy.retarget(secondServer.port)
      const sender = yield* makeChatClient({ url: secondServer.wsUrl })
      const after = yield* sendMany(sender, scope, 20, 1, "after")
      yield* Fiber.join(consuming).pipe(within("20 seconds", "the events sent after the restart"))

      expect(lives).toBe(2)
      expect(reconnectReasons.length).toBeGreaterThanOrEqual(1)
      expect(ids(received)).toEqual([...ids(before), ...ids(after)])
      expectStrictlyIncreasing(offsets(received))
    }).pipe(quiet))

  it.scopedLive("history returns every message after a restart on the same data directory", () =>
    Effect.gen(function*() {
      const dataDirectory = yield* makeTempDirectory()
      const scope = freshScope()

      const firstRun = yield* Scope.make()
      const sent = yield* Effect.gen(function*() {
        const server = yield* startTestServer({ dataDirectory })
        const client = yield* makeChatClient({ url: server.wsUrl })
        return yield* sendMany(client, scope, 120, 8)
      }).pipe(Scope.extend(firstRun))
      yield* Scope.close(firstRun, Exit.void)

      const server = yield* startTestServer({ dataDirectory })
      const client = yield* makeChatClient({ url: server.wsUrl })
      const firstPage = yield* client.history({ ...scope, limit: 50 })
      expect(firstPage.items.length).toBe(50)
      expect(firstPage.nextCursor).toBeDefined()
      const second = yield* client.history({
        ...scope,
        limit: 50,
        ...(firstPage.nextCursor === undefined ? {} : { before: firstPage.nextCursor })
      })
      expect(second.items.length).toBe(50)

      const all = Chunk.toReadonlyArray(yield* client.historyAll(scope, { pageSize: 50 }).pipe(Stream.runCollect))
      expect(all.length).toBe(120)
      expect(new Set(ids(all))).toEqual(new Set(ids(sent)))
      expect(ids(all.slice(0, 50))).toEqual(ids(firstPage.items))
      expect(ids(all.slice(50, 100))).toEqual(ids(second.items))
      // Newest first: by creation time, then by message id (UUIDv7) within a millisecond.
      const key = (e: EnrichedChatEvent) => [e.chatEvent.createdAtUtc.getTime(), e.chatEvent.messageId] as const
      const outOfOrder = all.filter((e, i) => {
        if (i === 0) return false
        const [t, id] = key(e)
        const [pt, pid] = key(all[i - 1]!)
        return t > pt || (t === pt && id > pid)
      })
      expect(outOfOrder).toEqual([])
    }).pipe(quiet))

  it.scopedLive("typed errors: invalid input fails as a typed ValidationError and the connection keeps working", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const scope = freshScope()
      const client = yield* makeChatClient({ url: server.wsUrl })

      const exit = yield* client.send({ scopeType: 0, scopeId: "   ", text: "hello" }).pipe(Effect.exit)
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        const failure = Cause.failureOption(exit.cause)
        expect(Option.map(failure, (e) => e._tag)).toEqual(Option.some("ValidationError"))
        if (Option.isSome(failure) && failure.value._tag === "ValidationError") {
          expect(failure.value.errors.map((e) => e.field)).toEqual(["scopeId"])
        }
      }

      const ok = yield* client.send({ ...scope, text: "still connected" })
      expect(ok.chatEvent.text).toBe("still connected")
      const presence = yield* client.presence(scope)
      expect(presence.scopeId).toBe(scope.scopeId)
    }).pipe(quiet))

  it.scopedLive("a subscription fails for good on non-retryable errors; a position the server refuses is reported and dropped", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const scope = freshScope()
      const client = yield* makeChatClient({ url: server.wsUrl })

      const invalid = yield* client.subscribe({ scopeType: 0, scopeId: " " }).pipe(
        Stream.runDrain,
        Effect.flip,
        within("5 seconds", "the invalid subscription to fail")
      )
      expect(invalid._tag).toBe("ValidationError")

      // A resume position on another partition than the scope's (the partition count changed) is a
      // Conflict over the position, not the subscription: reported, then live from now.
      const elsewhere = (partitionForScope(scope, 3) + 1) % 3
      const updates = yield* client.subscribeWithStatus(scope, { after: { partition: elsewhere, offset: 0 } }).pipe(
        Stream.take(2),
        Stream.runCollect,
        within("5 seconds", "the position to be reported lost and the subscription live")
      )
      expect(Array.from(updates).map((update) => update._tag)).toEqual(["PositionLost", "Live"])
    }).pipe(quiet))

  it.scopedLive("with authentication on, sends and subscribes as the token's subject", () =>
    Effect.gen(function*() {
      const secret = "a-development-secret-of-32-bytes!"
      const server = yield* startTestServer({
        config: {
          auth: Option.some(hs256TestAuth(secret))
        }
      })
      let minted = 0
      const accessToken = Effect.promise(() => {
        minted++
        return new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("alice")
          .setExpirationTime("10m").sign(new TextEncoder().encode(secret))
      })
      const scope = freshScope()
      const alice = yield* makeChatClient({ url: server.wsUrl, accessToken })
      const live = yield* Deferred.make<void>()
      const first = yield* alice.subscribe(scope, { onLive: live }).pipe(Stream.take(1), Stream.runHead, Effect.fork)
      yield* Deferred.await(live).pipe(within("5 seconds", "the subscription to be live"))
      const sent = yield* alice.send({ ...scope, text: "signed" })
      expect(sent.chatEvent.senderId).toBe("alice")
      const received = yield* Fiber.join(first).pipe(within("5 seconds", "the message"))
      expect(Option.map(received, (e) => e.chatEvent.messageId)).toEqual(Option.some(sent.chatEvent.messageId))
      expect(minted).toBeGreaterThanOrEqual(1)

      // a call whose own token the server refuses fails with a typed Unauthenticated, and writes nothing
      const forged = yield* makeChatClient({
        url: server.wsUrl,
        accessToken,
        headers: { authorization: "Bearer not-a-jwt" }
      })
      const refused = yield* Effect.flip(forged.send({ ...scope, text: "who am I" })).pipe(
        within("5 seconds", "the refusal")
      )
      expect(refused._tag).toBe("Unauthenticated")
      const history = yield* alice.history({ ...scope })
      expect(history.items.map((e) => e.chatEvent.text)).toEqual(["signed"])

      // a client whose connection token the server refuses: its calls fail with Unauthenticated, they
      // do not wait for ever on a socket that cannot open
      const refusedClient = yield* makeChatClient({ url: server.wsUrl, accessToken: "not-a-jwt" })
      const [refusedSend, refusedRead, refusedSubscription] = yield* Effect.all([
        Effect.flip(refusedClient.send({ ...scope, text: "never sent" })),
        Effect.flip(refusedClient.history({ ...scope })),
        Effect.flip(Stream.runDrain(refusedClient.subscribe(scope)))
      ], { concurrency: "unbounded" }).pipe(within("10 seconds", "the refused connection's calls to fail"))
      expect([refusedSend._tag, refusedRead._tag, refusedSubscription._tag]).toEqual([
        "Unauthenticated",
        "Unauthenticated",
        "Unauthenticated"
      ])

      // without a token the upgrade itself is refused, with a 401 Unauthenticated ProblemDetails
      const upgrade = yield* Effect.async<{ readonly status: number | undefined; readonly body: string }>((resume) => {
        const ws = new NodeWebSocket(server.wsUrl)
        ws.on("unexpected-response", (_, response) => {
          let body = ""
          response.on("data", (chunk: Buffer) => (body += chunk.toString()))
          response.on("end", () => resume(Effect.succeed({ status: response.statusCode, body })))
        })
        ws.on("open", () => {
          ws.close()
          resume(Effect.succeed({ status: 101, body: "" }))
        })
        ws.on("error", () => {})
      }).pipe(within("5 seconds", "the anonymous upgrade"))
      expect(upgrade.status).toBe(401)
      expect(Schema.decodeUnknownSync(Schema.parseJson(ProblemDetails))(upgrade.body)).toMatchObject({
        status: 401,
        title: "Unauthenticated"
      })
    }).pipe(quiet))

  it.scopedLive("a subscription outlives its short-lived tokens: fresh ones from the provider, no gap, no duplicate", () =>
    Effect.gen(function*() {
      const secret = "a-development-secret-of-32-bytes!"
      const server = yield* startTestServer({ config: { auth: Option.some(hs256TestAuth(secret)) } })
      const sign = (sub: string, ttlSeconds: number) =>
        new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub)
          .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds).sign(new TextEncoder().encode(secret))
      // each token expires within 2 s of being minted: the test outlives several
      let minted = 0
      const shortLived = Effect.promise(() => {
        minted++
        return sign("alice", 2)
      })
      const scope = freshScope()
      const subscriber = yield* makeChatClient({ url: server.wsUrl, accessToken: shortLived, dedupe: false })
      const sender = yield* makeChatClient({
        url: server.wsUrl,
        accessToken: yield* Effect.promise(() => sign("bob", 600))
      })

      const live = yield* Deferred.make<void>()
      const received: Array<EnrichedChatEvent> = []
      const reasons: Array<string> = []
      const consuming = yield* subscriber.subscribeWithStatus(scope).pipe(
        Stream.tap((update): Effect.Effect<void> => {
          switch (update._tag) {
            case "Live":
              return Deferred.succeed(live, undefined)
            case "Reconnecting":
              return Effect.sync(() => void reasons.push(update.reason._tag))
            case "PositionLost":
              return Effect.dieMessage("no position was lost here")
            case "Event":
              return Effect.sync(() => void received.push(update.event))
          }
        }),
        Stream.takeUntil(() => received.at(-1)?.chatEvent.text === END),
        Stream.runDrain,
        Effect.forkScoped
      )
      yield* Deferred.await(live).pipe(within("5 seconds", "the subscription to be live"))
      const started = Date.now()
      // a message every 200 ms for 5.5 s: some arrive while a token expires and the socket is replaced
      const sent = yield* Effect.forEach(
        Array.from({ length: 28 }, (_, i) => i),
        (i) => Effect.zipRight(Effect.sleep("200 millis"), sender.send({ ...scope, text: `t-${i}` }))
      )
      const end = yield* sender.send({ ...scope, text: END })
      yield* Fiber.join(consuming).pipe(within("15 seconds", "every message after the tokens expired"))

      expect(Date.now() - started).toBeGreaterThan(5_000)
      expect(ids(received)).toEqual([...ids(sent), end.chatEvent.messageId])
      // it did live through an expiry: refused, then resubscribed with a fresh token
      expect(reasons).toContain("Unauthenticated")
      expect(minted).toBeGreaterThanOrEqual(3)
    }).pipe(quiet))

  it.scopedLive("a token that cannot be refreshed ends the subscription with Unauthenticated, once", () =>
    Effect.gen(function*() {
      const secret = "a-development-secret-of-32-bytes!"
      const server = yield* startTestServer({ config: { auth: Option.some(hs256TestAuth(secret)) } })
      const shortLived = Effect.promise(() =>
        new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("alice")
          .setExpirationTime(Math.floor(Date.now() / 1000) + 2).sign(new TextEncoder().encode(secret))
      )
      // a constant token, and a provider that keeps handing out the same one
      for (const constant of [true, false]) {
        const token = yield* shortLived
        const client = yield* makeChatClient({
          url: server.wsUrl,
          accessToken: constant ? token : Effect.succeed(token)
        })
        const error = yield* client.subscribe(freshScope()).pipe(
          Stream.runDrain,
          Effect.flip,
          within("10 seconds", "the refusal")
        )
        expect(error._tag).toBe("Unauthenticated")
      }
    }).pipe(quiet))

  it.scopedLive("works as a service from ChatClient.layer", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const scope = freshScope()
      const sent = yield* Effect.gen(function*() {
        const chat = yield* ChatClient
        return yield* chat.send({ ...scope, text: "via the layer" })
      }).pipe(Effect.provide(ChatClient.layer({ url: server.wsUrl, headers: { "x-correlation-id": "sdk-test" } })))
      expect(sent.chatEvent.text).toBe("via the layer")
    }).pipe(quiet))
})

describe("HTTP problem details", () => {
  const decodeProblem = Schema.decodeUnknownSync(ProblemDetails)

  it.scopedLive("POST /api/chat/send with bad input answers 400 problem+json naming the field", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const post = (payload: unknown, headers: Record<string, string> = {}) =>
        Effect.promise(async () => {
          const response = await fetch(`${server.httpUrl}/api/chat/send`, {
            method: "POST",
            headers: { "content-type": "application/json", ...headers },
            body: JSON.stringify(payload)
          })
          const body: unknown = await response.json()
          return { response, body }
        })

      const invalid = yield* post({ scopeType: 0, scopeId: "   ", text: "hi" }, { "x-correlation-id": "corr-123" })
      expect(invalid.response.status).toBe(400)
      expect(invalid.response.headers.get("content-type")).toContain(PROBLEM_CONTENT_TYPE)
      expect(invalid.response.headers.get("x-correlation-id")).toBe("corr-123")
      const problem = decodeProblem(invalid.body)
      expect(problem.status).toBe(400)
      expect(problem.correlationId).toBe("corr-123")
      expect(problem.errors?.map((e) => e.field)).toEqual(["scopeId"])

      // A body that does not even match the schema is the same kind of 400.
      const malformed = yield* post({ scopeType: 0, scopeId: "room" })
      expect(malformed.response.status).toBe(400)
      expect(malformed.response.headers.get("content-type")).toContain(PROBLEM_CONTENT_TYPE)
      expect(malformed.response.headers.get("x-correlation-id")).toBeTruthy()
      expect(decodeProblem(malformed.body).errors?.map((e) => e.field)).toContain("text")
    }).pipe(quiet))

  it.scopedLive("an unknown route answers 404 problem+json", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const { body, response } = yield* Effect.promise(async () => {
        const response = await fetch(`${server.httpUrl}/no/such/route`, { headers: { "x-correlation-id": "corr-404" } })
        const body: unknown = await response.json()
        return { response, body }
      })
      expect(response.status).toBe(404)
      expect(response.headers.get("content-type")).toContain(PROBLEM_CONTENT_TYPE)
      expect(response.headers.get("x-correlation-id")).toBe("corr-404")
      const problem = decodeProblem(body)
      expect(problem.status).toBe(404)
      expect(problem.instance).toBe("/no/such/route")
    }).pipe(quiet))
})

describe("the access token on the WebSocket upgrade", () => {
  /** A WebSocket server that records each upgrade request and closes the socket at once. */
  const recordingServer = Effect.gen(function*() {
    const upgrades: Array<{ readonly url: string; readonly authorization: string | undefined }> = []
    const wss = yield* Effect.acquireRelease(
      Effect.async<WebSocketServer>((resume) => {
        const server: WebSocketServer = new WebSocketServer(
          { host: "127.0.0.1", port: 0 },
          () => resume(Effect.succeed(server))
        )
      }),
      (server) => Effect.async<void>((resume) => server.close(() => resume(Effect.void)))
    )
    wss.on("connection", (socket, request: IncomingMessage) => {
      upgrades.push({ url: request.url ?? "", authorization: request.headers.authorization })
      socket.close(1001)
    })
    const address = wss.address()
    const port = address !== null && typeof address === "object" ? address.port : 0
    return { url: `ws://127.0.0.1:${port}/rpc`, upgrades }
  })

  const untilUpgrades = (upgrades: ReadonlyArray<unknown>, count: number) =>
    Effect.sleep("10 millis").pipe(
      Effect.repeat({ until: () => upgrades.length >= count }),
      within("5 seconds", `${count} upgrades`)
    )

  it.scopedLive("in Node it is the Authorization header, never the URL, and the provider runs again on every reconnect", () =>
    Effect.gen(function*() {
      const server = yield* recordingServer
      let minted = 0
      const accessToken = Effect.sync(() => `token-${++minted}`)
      yield* makeChatClient({ url: server.url, accessToken, reconnect: Schedule.spaced("20 millis") })
      yield* untilUpgrades(server.upgrades, 3)
      const [first, second, third] = server.upgrades
      expect(first).toEqual({ url: "/rpc?acks=none", authorization: "Bearer token-1" })
      expect(second).toEqual({ url: "/rpc?acks=none", authorization: "Bearer token-2" })
      expect(third?.authorization).toBe("Bearer token-3")
      expect(server.upgrades.every((upgrade) => !upgrade.url.includes("access_token"))).toBe(true)
    }).pipe(quiet))

  it.scopedLive("with the query transport (browsers' default) it is access_token in the URL, without a header", () =>
    Effect.gen(function*() {
      const server = yield* recordingServer
      yield* makeChatClient({ url: server.url, accessToken: "a b+c", accessTokenTransport: "query" })
      yield* untilUpgrades(server.upgrades, 1)
      const [first] = server.upgrades
      expect(first?.authorization).toBeUndefined()
      expect(new URLSearchParams(first?.url.split("?")[1]).get("access_token")).toBe("a b+c")
    }).pipe(quiet))

  it.scopedLive("over a standard WebSocket constructor (the browser's), which sends no headers, it is the URL by default", () =>
    Effect.gen(function*() {
      const server = yield* recordingServer
      // what @chatify/sdk/browser provides, with `ws` standing in for the browser's global WebSocket
      const standardConstructor = Layer.succeed(
        Socket.WebSocketConstructor,
        (url: string) => new NodeWebSocket(url) as unknown as globalThis.WebSocket
      )
      yield* Core.makeChatClient({ url: server.url, accessToken: "t-1" }).pipe(
        Effect.provide(Core.WebSocketConnector.fromConstructor.pipe(Layer.provide(standardConstructor)))
      )
      yield* untilUpgrades(server.upgrades, 1)
      const [first] = server.upgrades
      expect(first?.authorization).toBeUndefined()
      expect(new URLSearchParams(first?.url.split("?")[1]).get("access_token")).toBe("t-1")
    }).pipe(quiet))
})
