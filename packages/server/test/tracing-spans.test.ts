/**
 * The spans of presence, send de-duplication, rate limiting, Subscribe, the hub's methods and the
 * /rpc fast path, recorded by Effect's own tracer on the in-memory adapters: their names and who
 * is whose parent. (tracing-jaeger.test.ts follows a send through the real exporter and Jaeger.)
 */
import type { RequestEncoded } from "@effect/rpc/RpcMessage"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Ref, Scope, TestClock, Tracer } from "effect"
import {
  callerServices,
  ChatHistory,
  ChatPolicy,
  CoreSettings,
  CurrentUser,
  DefaultScopePolicy,
  PodIdentity,
  PresenceHeartbeat,
  readPresence,
  readStats,
  sendMessage,
  subscribeInto,
  type SubscriptionSink,
  traced
} from "@chatify/core"
import {
  MemoryFanout,
  MemoryLogLayer,
  MemoryPresence,
  MemoryRateLimiter,
  MemoryReadRateLimiter,
  MemoryScopeStats,
  MemorySendDeduplicator,
  UuidV7IdGenerator
} from "@chatify/adapters/memory"
import {
  defaultPolicyLimits,
  DependencyUnavailable,
  ScopeTypes,
  Subscribed,
  type SubscriptionItem
} from "@chatify/domain"
import type { Principal } from "../src/Auth.js"
import { asRpcServerCall } from "../src/realtime/RpcSocketProtocol.js"
import { Flusher } from "../src/realtime/Outbox.js"
import { ShutdownGate } from "../src/Runtime.js"
import { recordingTracer } from "../../core/test/support/recordingTracer.js"
import { makeChatHub, makeReceiveMessageEncoder } from "../src/signalr/ChatHub.js"
import { discardingHubClient } from "./support/hubClient.js"

const PRESENCE_TTL_MILLIS = 30_000

/** No test here resumes a subscription, the only caller of the history on these paths. */
const unusedHistory = Layer.succeed(ChatHistory, {
  append: () => Effect.fail(new DependencyUnavailable({ dependency: "history", message: "not in this test" })),
  page: () => Effect.fail(new DependencyUnavailable({ dependency: "history", message: "not in this test" })),
  after: () => Effect.fail(new DependencyUnavailable({ dependency: "history", message: "not in this test" })),
  ping: Effect.void
})

const services = Layer.mergeAll(
  MemoryLogLayer({ partitions: 4 }),
  MemoryFanout,
  PresenceHeartbeat.layer,
  MemoryRateLimiter({ limit: 100, windowSeconds: 60 }),
  MemoryReadRateLimiter({ limit: 100, windowSeconds: 60 }),
  MemorySendDeduplicator({ windowSeconds: 60 }),
  MemoryScopeStats,
  CoreSettings.layer(),
  Layer.succeed(ChatPolicy, defaultPolicyLimits),
  UuidV7IdGenerator,
  Layer.succeed(PodIdentity, { podId: "pod-a" }),
  DefaultScopePolicy,
  unusedHistory,
  ShutdownGate.layer,
  Flusher.layer
).pipe(Layer.provideMerge(MemoryPresence({ ttlMillis: PRESENCE_TTL_MILLIS })))

const alice: Principal = { userId: "alice", connectionId: "conn-1", expiresAtMs: undefined }
const general = { scopeType: ScopeTypes.Channel, scopeId: "general" }

/** Effect's own tracer, recording every span it makes; on for `effect`. */
const withRecordedSpans = <A, E, R>(
  effect: (spans: Effect.Effect<ReadonlyArray<Tracer.Span>>) => Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    const spans = yield* Ref.make<ReadonlyArray<Tracer.Span>>([])
    const recording = yield* recordingTracer(spans)
    // the services are built under the recording tracer too: their background fibers (the
    // presence heartbeat) record what they make
    return yield* effect(Ref.get(spans)).pipe(
      Effect.provide(services),
      Effect.withTracer(recording),
      Effect.withTracerEnabled(true)
    )
  })

/** Each span as `name < parent name` (or just its name for a root), in the order they started. */
const tree = (spans: ReadonlyArray<Tracer.Span>) => {
  const byId = new Map(spans.map((span) => [span.spanId, span.name]))
  return spans.map((span) =>
    Option.match(span.parent, {
      onNone: () => span.name,
      onSome: (parent) => `${span.name} < ${byId.get(parent.spanId) ?? `external ${parent.spanId}`}`
    })
  )
}

/** The span tree (see `tree`) of one call of a use case by alice. */
const spanTreeOf = <A, E>(useCase: Effect.Effect<A, E, Layer.Layer.Success<typeof services> | CurrentUser>) =>
  withRecordedSpans((spans) =>
    Effect.gen(function*() {
      yield* useCase.pipe(Effect.provideService(CurrentUser, alice))
      return tree(yield* spans)
    })
  )

const collectingSink = (items: Array<SubscriptionItem>): SubscriptionSink => ({
  push: (item) => {
    items.push(item)
    return true
  },
  pushReplay: (events) => Effect.sync(() => (items.push(...events), true)),
  fail: () => undefined
})

describe("spans of the use cases and their adapters", () => {
  it.effect("a de-duplicated send: the limiter and every de-duplicator call are children of Chat.send", () =>
    Effect.gen(function*() {
      expect(yield* spanTreeOf(sendMessage({ ...general, text: "hi", clientMessageId: "m-1" }))).toEqual([
        "Chat.send",
        "Chat.validate < Chat.send",
        "MemoryRateLimiter.checkAndIncrement < Chat.send",
        "MemorySendDeduplicator.claim < Chat.send",
        "MemoryLog.produce < Chat.send",
        "MemorySendDeduplicator.complete < Chat.send"
      ])
    }))

  it.effect("a presence read: the read limiter and the presence lookup are children of Chat.readPresence", () =>
    Effect.gen(function*() {
      expect(yield* spanTreeOf(readPresence(general))).toEqual([
        "Chat.readPresence",
        "MemoryReadRateLimiter.checkAndIncrement < Chat.readPresence",
        "MemoryPresence.online < Chat.readPresence"
      ])
    }))

  it.effect("a stats read: the read limiter and the store's range are children of Chat.readStats", () =>
    Effect.gen(function*() {
      expect(yield* spanTreeOf(readStats(general))).toEqual([
        "Chat.readStats",
        "MemoryReadRateLimiter.checkAndIncrement < Chat.readStats",
        "MemoryScopeStats.range < Chat.readStats"
      ])
    }))

  it.effect(
    "a subscription: Chat.subscribe holds its read limit and presence track; the heartbeat's refreshes make no span",
    () =>
      withRecordedSpans((spans) =>
        Effect.gen(function*() {
          const items: Array<SubscriptionItem> = []
          const subscription = yield* Scope.make()
          yield* subscribeInto(general, undefined, collectingSink(items)).pipe(
            Effect.provideService(CurrentUser, alice),
            Scope.extend(subscription)
          )
          expect(items.map((item) => item instanceof Subscribed)).toEqual([true])
          expect(tree(yield* spans)).toEqual([
            "Chat.subscribe",
            "MemoryReadRateLimiter.checkAndIncrement < Chat.subscribe",
            "MemoryPresence.track < Chat.subscribe"
          ])
          // the heartbeat's rounds re-track the connection, outside any request: no trace of their own
          yield* TestClock.adjust(PRESENCE_TTL_MILLIS)
          const online = yield* readPresence(general).pipe(Effect.provideService(CurrentUser, alice))
          expect(online.users).toEqual([{ userId: "alice", connections: 1 }])
          expect((yield* spans).filter((span) => span.name === "MemoryPresence.track")).toHaveLength(1)
          yield* Scope.close(subscription, Exit.void)
          expect((yield* spans).map((span) => span.name)).toContain("MemoryPresence.untrack")
        })
      )
  )

  it.effect("a hub method runs in a server span ChatHub.{method}, the parent of its use case's", () =>
    withRecordedSpans((spans) =>
      Effect.gen(function*() {
        const client = discardingHubClient(alice.connectionId, yield* Flusher)
        const hub = makeChatHub({
          encodeReceiveMessage: makeReceiveMessageEncoder(),
          gate: yield* ShutdownGate,
          services: yield* callerServices,
          maxMemberships: 10
        })(alice, client)
        const invoke = (target: string, args: ReadonlyArray<unknown>) => {
          const context = { connectionId: alice.connectionId, target, invocationId: "1", headers: {} }
          const method = hub.methods.get(target)
          if (method === undefined) return Effect.dieMessage(`no hub method ${target}`)
          return Effect.provide(method.invoke(args, context), hub.servicesFor(context))
        }
        yield* invoke("SendAsync", [{ ...general, text: "hello" }])
        yield* invoke("JoinScopeAsync", ["general"])
        yield* invoke("LeaveScopeAsync", ["general"])
        const recorded = yield* spans
        expect(tree(recorded)).toEqual([
          "ChatHub.SendAsync",
          "Chat.send < ChatHub.SendAsync",
          "Chat.validate < Chat.send",
          "MemoryRateLimiter.checkAndIncrement < Chat.send",
          "MemoryLog.produce < Chat.send",
          "ChatHub.JoinScopeAsync",
          "Chat.subscribe < ChatHub.JoinScopeAsync",
          "MemoryReadRateLimiter.checkAndIncrement < Chat.subscribe",
          "MemoryPresence.track < Chat.subscribe",
          "ChatHub.LeaveScopeAsync",
          // the untrack joins the trace of the subscribe that tracked (PresenceHeartbeat keeps its span)
          "MemoryPresence.untrack < Chat.subscribe"
        ])
        expect(recorded.filter((span) => span.name.startsWith("ChatHub.")).map((span) => span.kind)).toEqual([
          "server",
          "server",
          "server"
        ])
      }).pipe(Effect.scoped)
    ))
})

describe("the /rpc fast path's span, as RpcServer names it", () => {
  const request = (ids: Partial<Pick<RequestEncoded, "traceId" | "spanId" | "sampled">>): RequestEncoded => ({
    _tag: "Request",
    id: "7",
    tag: "Send",
    payload: {},
    headers: [],
    ...ids
  })
  const step = traced("Test.step")(() => Effect.void)
  const clientSpan = { traceId: "a".repeat(32), spanId: "b".repeat(16) }

  it.effect("RpcServer.{tag} with the request id; the child of the client's span when it names one", () =>
    withRecordedSpans((spans) =>
      Effect.gen(function*() {
        yield* step().pipe(asRpcServerCall(request({}), "7"))
        yield* step().pipe(asRpcServerCall(request({ ...clientSpan, sampled: true }), "7"))
        const recorded = yield* spans
        expect(tree(recorded)).toEqual([
          "RpcServer.Send",
          "Test.step < RpcServer.Send",
          `RpcServer.Send < external ${clientSpan.spanId}`,
          "Test.step < RpcServer.Send"
        ])
        expect(recorded[2]?.traceId).toBe(clientSpan.traceId)
        expect(recorded[0]?.attributes.get("requestId")).toBe("7")
      })
    ))

  it.effect("under an unsampled client span: no span, and none below it", () =>
    withRecordedSpans((spans) =>
      Effect.gen(function*() {
        yield* step().pipe(asRpcServerCall(request({ ...clientSpan, sampled: false }), "7"))
        expect(yield* spans).toEqual([])
      })
    ))

  it.effect("with the tracer off: no span", () =>
    withRecordedSpans((spans) =>
      Effect.gen(function*() {
        yield* step().pipe(asRpcServerCall(request({}), "7"), Effect.withTracerEnabled(false))
        expect(yield* spans).toEqual([])
      })
    ))
})
