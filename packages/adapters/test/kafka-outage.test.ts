import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, HashMap, Layer, Logger, Option, Schedule, Stream } from "effect"
import {
  broadcastConsumer,
  ChatEventProducer,
  ChatHistory,
  ChatPolicy,
  ConsumerHealth,
  type ConsumerState,
  CoreSettings,
  CurrentUser,
  DefaultScopePolicy,
  historyWriter,
  PodIdentity,
  PresenceHeartbeat,
  subscribeStream,
  supervise
} from "@chatify/core"
import {
  ChatEvent,
  defaultPolicyLimits,
  EnrichedChatEvent,
  type ScopeRef,
  type SubscriptionItem
} from "@chatify/domain"
import { KafkaClientLayer, KafkaLogLayer, type KafkaOptions, KafkaProducerLayer } from "../src/kafka/index.js"
import { MemoryFanout, MemoryPresence, MemoryReadRateLimiter } from "../src/memory/index.js"
import { brokerProxy, throughProxy } from "./support/brokerProxy.js"
import { withAdmin } from "./support/kafkaAdmin.js"
import { endpoints, ensureService } from "./support/services.js"

// Consumers that lose the broker until kafkajs gives up (CRASH), while another pod keeps producing:
// nothing produced meanwhile may be missing from the history or from this pod's live subscribers.
const TOPIC = `chatify-outage-${randomUUID().slice(0, 8)}`
const DLQ = `${TOPIC}-dlq`
const BROKER = endpoints.kafka

const options = (overrides: Partial<KafkaOptions> = {}): KafkaOptions => ({
  brokers: [BROKER],
  clientId: "chatify-outage-test",
  topic: TOPIC,
  partitions: 3,
  deadLetterTopic: DLQ,
  sessionTimeout: "6 seconds",
  heartbeatInterval: "500 millis",
  rebalanceTimeout: "10 seconds",
  fetchMaxWait: "250 millis",
  startupTimeout: "20 seconds",
  ...overrides
})

beforeAll(async () => {
  await ensureService("kafka")
  await Effect.runPromise(withAdmin((admin) =>
    admin.createTopics({
      topics: [{ topic: TOPIC, numPartitions: 3 }, { topic: DLQ, numPartitions: 1 }],
      waitForLeaders: true
    })
  ))
}, 180_000)

afterAll(async () => {
  await Effect.runPromise(withAdmin((admin) => admin.deleteTopics({ topics: [TOPIC, DLQ] })).pipe(Effect.ignore))
}, 60_000)

const eventIn = (scope: ScopeRef, text: string) =>
  new ChatEvent({
    messageId: randomUUID(),
    scopeType: scope.scopeType,
    scopeId: scope.scopeId,
    senderId: "outage-test",
    text,
    createdAtUtc: new Date(),
    originPodId: "pod-elsewhere"
  })

/** Polls `condition` every 20 ms until it holds, failing the test after `within`. */
const waitUntil = (what: string, condition: () => boolean, within: Duration.DurationInput = "30 seconds") =>
  Effect.sync(condition).pipe(
    Effect.repeat({ until: (holds) => holds, schedule: Schedule.spaced("20 millis") }),
    Effect.timeoutFail({ duration: within, onTimeout: () => new Error(`timed out waiting until ${what}`) }),
    Effect.orDie
  )

/**
 * A history store that keeps events by messageId (appends are idempotent, as in every adapter),
 * records every append, and can hold appends back until it is released.
 */
const makeHistory = () => {
  const stored = new Map<string, EnrichedChatEvent>()
  const appended: Array<string> = []
  let held: { readonly reached: Deferred.Deferred<void>; readonly release: Deferred.Deferred<void> } | undefined
  const service = ChatHistory.of({
    append: (events) =>
      Effect.gen(function*() {
        for (const event of events) appended.push(event.chatEvent.messageId)
        if (held !== undefined) {
          yield* Deferred.succeed(held.reached, undefined)
          yield* Deferred.await(held.release)
        }
        for (const event of events) stored.set(event.chatEvent.messageId, event)
      }),
    page: () => Effect.succeed({ items: [], next: undefined }),
    after: () => Effect.succeed([]),
    ping: Effect.void
  })
  return {
    service,
    stored,
    appendsOf: (messageId: string) => appended.filter((id) => id === messageId).length,
    /** From now on, appends wait until `release`. */
    hold: Effect.gen(function*() {
      const gate = { reached: yield* Deferred.make<void>(), release: yield* Deferred.make<void>() }
      held = gate
      return {
        reached: Deferred.await(gate.reached),
        release: Effect.zipRight(Effect.sync(() => (held = undefined)), Deferred.succeed(gate.release, undefined))
      }
    })
  }
}

describe("consumers through a broker outage", () => {
  it.scopedLive(
    "kafkajs crashes both consumers: the history writer gives up its commit retries and restarts from its commits, the broadcast resumes where it stopped; nothing produced meanwhile is missing",
    () =>
      Effect.gen(function*() {
        const proxy = yield* brokerProxy(BROKER)
        const history = makeHistory()
        const run = randomUUID().slice(0, 8)
        const settings = {
          broadcastGroupPrefix: `outage-broadcast-${run}`,
          historyWriterGroup: `outage-history-${run}`,
          consumerRetryBudget: Duration.seconds(2)
        }

        // kafkajs' "Crash" lines, by consumer group
        const crashed: Array<string> = []
        const crashes = Logger.make(({ annotations, message }) => {
          const text = Array.isArray(message) ? message.join(" ") : String(message)
          const group = HashMap.get(annotations, "groupId")
          if (text.startsWith("Crash:") && Option.isSome(group)) crashed.push(String(group.value))
        })

        // this pod: its consumers reach the broker only through the proxy
        const pod = yield* Layer.build(
          Layer.mergeAll(
            KafkaLogLayer(options({ socketFactory: throughProxy(proxy.port), retries: 1 })),
            MemoryFanout,
            ConsumerHealth.layer,
            CoreSettings.layer(settings),
            Layer.succeed(PodIdentity, { podId: "pod-a" }),
            Layer.succeed(ChatHistory, history.service),
            // what a subscription needs besides
            Layer.succeed(ChatPolicy, defaultPolicyLimits),
            DefaultScopePolicy,
            PresenceHeartbeat.layer.pipe(Layer.provide(MemoryPresence({ ttlMillis: 60_000 }))),
            MemoryReadRateLimiter({ limit: 1_000_000, windowSeconds: 60 })
          )
        ).pipe(Effect.provide(Logger.add(crashes)))
        const onPod = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, pod)
        // another pod, which keeps its connection to the broker
        const elsewhere = yield* Layer.build(KafkaProducerLayer.pipe(Layer.provide(KafkaClientLayer(options()))))

        const scope: ScopeRef = { scopeType: 0, scopeId: `outage-${run}` }
        const produce = (text: string) =>
          Effect.flatMap(ChatEventProducer, (producer) => producer.produce(eventIn(scope, text))).pipe(
            Effect.map((position) => ({ ...position, text })),
            Effect.provide(elsewhere)
          )
        // a live subscriber on this pod, acknowledged before anything is produced
        const items: Array<SubscriptionItem> = []
        const subscription = yield* subscribeStream(scope, undefined).pipe(
          Stream.runForEach((item) => Effect.sync(() => items.push(item))),
          Effect.provideService(CurrentUser, { userId: "reader", connectionId: "c-reader" }),
          onPod,
          Effect.forkScoped
        )
        const delivered = () => items.filter((item): item is EnrichedChatEvent => item instanceof EnrichedChatEvent)
        const storedText = (text: string) => Array.from(history.stored.values()).some((e) => e.chatEvent.text === text)

        // every state each consumer goes through, in order
        const transitions: Record<string, Array<ConsumerState>> = { broadcast: [], "history-writer": [] }
        yield* onPod(Effect.flatMap(ConsumerHealth, (health) =>
          health.changes.pipe(
            Stream.runForEach((states) =>
              Effect.sync(() => {
                for (const [name, seen] of Object.entries(transitions)) {
                  const state = states.get(name)
                  if (state !== undefined && seen.at(-1) !== state) seen.push(state)
                }
              })
            ),
            Effect.forkScoped
          )))
        const isNow = (name: string, state: ConsumerState) => () => transitions[name]?.at(-1) === state

        yield* Effect.forkScoped(onPod(supervise("broadcast", broadcastConsumer)))
        yield* Effect.forkScoped(onPod(supervise("history-writer", historyWriter)))
        yield* waitUntil("both consumers run", () =>
          isNow("broadcast", "running")() && isNow("history-writer", "running")())
        yield* waitUntil("the subscription is acknowledged", () =>
          items.length === 1)
        expect(items[0]).toMatchObject({ _tag: "Subscribed", scopeId: scope.scopeId })

        const before = yield* produce("before the outage")
        yield* waitUntil("the first event is delivered and stored", () =>
          delivered().length === 1 && storedText(before.text))

        // the history writer holds a batch when the broker goes away: it commits only after kafkajs crashed
        const held = yield* history.hold
        const stored = yield* produce("stored, not committed")
        yield* held.reached.pipe(Effect.timeout("20 seconds"))
        proxy.cut()
        yield* waitUntil("kafkajs crashed both consumers", () =>
          crashed.includes(settings.historyWriterGroup) && crashed.includes(`${settings.broadcastGroupPrefix}-pod-a`))
        const during = yield* Effect.forEach([1, 2, 3, 4, 5], (i) =>
          produce(`during the outage ${i}`))
        yield* held.release

        // the commit fails for good: retried within the budget, then the whole consumer is restarted
        yield* waitUntil("the history writer restarts", isNow("history-writer", "restarting"))
        yield* waitUntil("the broadcast consumer restarts", isNow("broadcast", "restarting"))
        proxy.restore()
        yield* waitUntil("both consumers run again", () =>
          isNow("broadcast", "running")() && isNow("history-writer", "running")(), "60 seconds")
        const after = yield* produce("after the outage")

        const all = [before, stored, ...during, after]
        yield* waitUntil("every event is stored", () =>
          all.every(({ text }) =>
            storedText(text)
          ))
        yield* waitUntil("every event is delivered", () =>
          delivered().length >= all.length)
        // to this pod's live subscriber: all of them, once each, in log order, and it is still live
        // (a SubscriptionLagged would have ended it)
        expect(
          delivered().map((e) =>
            e.offset
          )
        ).toEqual(all.map((p) =>
          p.offset
        ))
        expect(delivered().map((e) => e.chatEvent.text)).toEqual(all.map((p) => p.text))
        expect(Option.isNone(yield* Fiber.poll(subscription))).toBe(true)
        // the batch stored before the crash was not committed: the new consumer read it again
        const storedEvent = Array.from(history.stored.values()).find((e) => e.chatEvent.text === stored.text)
        expect(history.appendsOf(storedEvent!.chatEvent.messageId)).toBeGreaterThanOrEqual(2)
        expect(transitions["history-writer"]).toEqual(
          expect.arrayContaining(["running", "retrying", "restarting"])
        )
        const writer = transitions["history-writer"]!
        expect(writer.indexOf("retrying")).toBeGreaterThan(writer.indexOf("running"))
        expect(writer.indexOf("restarting")).toBeGreaterThan(writer.indexOf("retrying"))
        expect(writer.at(-1)).toBe("running")
        expect(transitions["broadcast"]!.slice(0, 3)).toEqual(["starting", "running", "restarting"])
        expect(transitions["broadcast"]!.at(-1)).toBe("running")
      }),
    { timeout: 150_000 }
  )
})
