/**
 * Resume without gap and without duplicate in production mode, end to end: two server processes
 * (pods) on the real Kafka and Cassandra of scripts/services, a subscriber that saw part of a scope
 * on pod A resumes after its last position on pod B while messages keep coming, and every item the
 * server sends is counted raw (a bare RPC client: no SDK, so no dedupe by messageId hides a
 * redelivery). The gap is filled from Cassandra's copy keyed by broker offset once the shared
 * history writer has committed that far; what arrives live meanwhile is held back and released
 * after it. Topic, keyspace, broadcast groups and pod names are this run's own, removed afterwards.
 */
import { NodeSocket } from "@effect/platform-node"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Ref, Schedule, Schema, Stream } from "effect"
import { ChatRpcs, EnrichedChatEvent, type StreamPosition, Subscribed, type SubscriptionItem } from "@chatify/domain"
import { endpoints, ensureService } from "../../adapters/test/support/services.js"
import { awaitReady } from "../src/testing.js"
import { makePodFleet } from "./support/podFleet.js"
import type { ServerProcess } from "./support/serverProcess.js"

/** A pod from source on a loaded box: Kafka group joins and schema checks before it is ready. */
const POD_START = "90 seconds"
const run = crypto.randomUUID().replaceAll("-", "").slice(0, 10)
const TOPIC = `chatify-resume-${run}`
const KEYSPACE = `chatify_resume_${run}`
const GROUP_PREFIX = `chatify-resume-broadcast-${run}`
// the history writers' group of this run's pods only: no other file's pods join or rebalance it
const HISTORY_GROUP = `chatify-resume-history-${run}`
const PODS = [`resume-a-${run}`, `resume-b-${run}`] as const

const fleet = makePodFleet({
  topics: [TOPIC],
  groups: [...PODS.map((pod) => `${GROUP_PREFIX}-${pod}`), HISTORY_GROUP],
  keyspaces: [KEYSPACE]
})

beforeAll(() => Promise.all([ensureService("kafka"), ensureService("cassandra")]), 300_000)

afterAll(() => fleet.stop(), 120_000)

const startPod = (podName: string) =>
  fleet.start(podName, {
    CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: endpoints.kafka,
    CHATIFY__MESSAGEBROKER__TOPICNAME: TOPIC,
    CHATIFY__MESSAGEBROKER__CREATETOPICS: "true",
    CHATIFY__MESSAGEBROKER__BROADCASTCONSUMERGROUPPREFIX: GROUP_PREFIX,
    CHATIFY__MESSAGEBROKER__HISTORYWRITERCONSUMERGROUP: HISTORY_GROUP,
    CHATIFY__DATABASE__CONTACTPOINTS: endpoints.cassandra.host,
    CHATIFY__DATABASE__PORT: String(endpoints.cassandra.port),
    CHATIFY__DATABASE__KEYSPACE: KEYSPACE,
    CHATIFY__RATELIMIT__LIMIT: "100000",
    CHATIFY__RATELIMIT__READLIMIT: "100000",
    CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0"
  })

const decodeEvent = Schema.decodeUnknownSync(EnrichedChatEvent)

/** A REST send (anonymous: authentication is off here): the log's acknowledgement. */
const send = (base: string, scopeId: string, text: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${base}/api/chat/send`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ scopeType: 0, scopeId, text })
    })
    const body: unknown = await response.json()
    if (response.status !== 200) throw new Error(`send ${text}: ${response.status} ${JSON.stringify(body)}`)
    return decodeEvent(body)
  })

/** A bare RPC connection to a pod, open for the enclosing scope. */
const rpcClient = (base: string) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      RpcClient.layerProtocolSocket().pipe(
        Layer.provide(NodeSocket.layerWebSocket(`${base.replace(/^http/u, "ws")}/rpc`)),
        Layer.provide(RpcSerialization.layerNdjson)
      )
    )
    return yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))
  })

/** Subscribes (after `after`, if given), recording every raw item; `subscribed` completes with the first. */
const record = (base: string, scopeId: string, after: StreamPosition | undefined) =>
  Effect.gen(function*() {
    const client = yield* rpcClient(base)
    const items = yield* Ref.make<ReadonlyArray<SubscriptionItem>>([])
    const first = yield* Deferred.make<SubscriptionItem>()
    yield* client.Subscribe({ scopeType: 0, scopeId, ...(after === undefined ? {} : { after }) }).pipe(
      Stream.runForEach((item) =>
        Effect.zipRight(Ref.update(items, (all) => [...all, item]), Deferred.succeed(first, item))
      ),
      Effect.forkScoped
    )
    return { items, first: Deferred.await(first) }
  })

const eventsOf = (items: ReadonlyArray<SubscriptionItem>) =>
  items.filter((item): item is EnrichedChatEvent => item instanceof EnrichedChatEvent)

/** Waits until the recorded events hold the one with `messageId`; fails the test (not hangs) otherwise. */
const awaitEvent = (items: Ref.Ref<ReadonlyArray<SubscriptionItem>>, messageId: string, what: string) =>
  Ref.get(items).pipe(
    Effect.repeat({
      schedule: Schedule.spaced("20 millis"),
      until: (all) => eventsOf(all).some((e) => e.chatEvent.messageId === messageId)
    }),
    Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error(`${what} never arrived`) }),
    Effect.orDie
  )

describe("resume on Kafka and Cassandra, two pods", () => {
  it.scopedLive(
    "a subscriber that saw part of a scope on pod A resumes on pod B: every later event once, in log order, none twice",
    () =>
      Effect.gen(function*() {
        const [podA, podB] = PODS.map(startPod) as [ServerProcess, ServerProcess]
        const [a, b] = yield* Effect.all([Effect.promise(() => podA.listening), Effect.promise(() => podB.listening)], {
          concurrency: 2
        })
        yield* Effect.all([awaitReady(a, POD_START), awaitReady(b, POD_START)], { concurrency: 2 })
        const scopeId = `resume-${run}`
        const sent: Array<EnrichedChatEvent> = []
        const sendMany = (count: number, label: string) =>
          Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) =>
            Effect.map(send(i % 2 === 0 ? a : b, scopeId, `${label}-${i}`), (event) => {
              sent.push(event)
              return event
            }), { concurrency: 4 })

        // a live subscriber on pod B from the start: it tells when pod B's fan-out has seen an event
        const watcher = yield* record(b, scopeId, undefined)
        expect(yield* watcher.first).toBeInstanceOf(Subscribed)

        // 1. a subscriber on pod A sees the first 20, live; it keeps the position of the 10th it saw
        const seen = yield* Effect.scoped(Effect.gen(function*() {
          const first = yield* record(a, scopeId, undefined)
          expect(yield* first.first).toBeInstanceOf(Subscribed)
          const early = yield* sendMany(20, "early")
          const last = early.reduce((x, y) => (y.offset > x.offset ? y : x))
          yield* awaitEvent(first.items, last.chatEvent.messageId, "the 20th live event")
          const events = eventsOf(yield* Ref.get(first.items))
          expect(events.map((e) =>
            e.chatEvent.messageId
          )).toEqual(
            [...early].sort((x, y) =>
              x.offset - y.offset
            ).map((e) => e.chatEvent.messageId)
          )
          return events[9]!
        }))
        const after: StreamPosition = { partition: seen.partition, offset: seen.offset }

        // 2. while it is away, 30 more, all of them fanned out on pod B already: only the history can
        // give them to the resumed subscription (none is still on its way to pod B's fan-out)
        const away = yield* sendMany(30, "away")
        const lastAway = away.reduce((x, y) => (y.offset > x.offset ? y : x))
        yield* awaitEvent(watcher.items, lastAway.chatEvent.messageId, "the last event sent while away, on pod B")

        // 3. it resumes on pod B; once it is subscribed (the log's end read, the replay waiting for the
        // history writer), 30 more arrive live and wait behind the replay
        const resumed = yield* record(b, scopeId, after)
        expect(yield* resumed.first).toBeInstanceOf(Subscribed)
        yield* sendMany(30, "during")

        // 4. a last one: when it arrives, everything before it has (a duplicate would be before it too)
        const sentinel = yield* send(a, scopeId, "sentinel")
        yield* awaitEvent(resumed.items, sentinel.chatEvent.messageId, "the sentinel")

        const items = yield* Ref.get(resumed.items)
        expect(items.filter((item) => item instanceof Subscribed)).toHaveLength(1)
        expect(items[0]).toBeInstanceOf(Subscribed)
        expect(items.length).toBe(eventsOf(items).length + 1)
        const events = eventsOf(items)
        const expected = [...sent, sentinel]
          .filter((e) => e.partition === after.partition && e.offset > after.offset)
          .sort((x, y) => x.offset - y.offset)
        // 10 seen before the disconnect but after the position, 30 while away, 30 during, the sentinel
        expect(expected).toHaveLength(71)
        expect(new Set(sent.map((e) => e.partition))).toEqual(new Set([after.partition]))
        // every raw item once: as many as expected, no messageId twice, offsets strictly increasing
        expect(events.length).toBe(expected.length)
        expect(new Set(events.map((e) => e.chatEvent.messageId)).size).toBe(events.length)
        expect(events.map((e) => [e.partition, e.offset, e.chatEvent.messageId])).toEqual(
          expected.map((e) => [e.partition, e.offset, e.chatEvent.messageId])
        )
        expect(events.map((e) => e.chatEvent.text)).toEqual(expected.map((e) => e.chatEvent.text))
      }),
    { timeout: 240_000 }
  )
})
