import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Logger, LogLevel, Schedule } from "effect"
import {
  AnalyticsSettings,
  ConsumerHealth,
  CoreSettings,
  ScopeStatsStore,
  STATS_WRITER,
  statsWriter,
  supervise
} from "@chatify/core"
import { KafkaAnalyticsTopicsLayer, KafkaClientLayer } from "../src/kafka/index.js"
import { MemoryScopeStats } from "../src/memory/index.js"
import { brokerProxy, throughProxy } from "./support/brokerProxy.js"
import { withAdmin } from "./support/kafkaAdmin.js"
import { produceRecords } from "./support/kafkaProducer.js"
import { endpoints, ensureService } from "./support/services.js"

// The analytics stats writer through a broker outage (the proxy of kafka-outage.test.ts cuts every
// connection): the consumer fails, supervise restarts it with backoff, and once the broker is back
// it stores what the job wrote meanwhile. Topics and group are this file's own.
const RUN = randomUUID().slice(0, 8)
const TOPIC = `chatify-analytics-outage-${RUN}`
const STATS_TOPIC = `chatify-analytics-outage-stats-${RUN}`
const VIOLATIONS_TOPIC = `chatify-analytics-outage-violations-${RUN}`
const GROUP = `chatify-analytics-outage-${RUN}`
const SCOPE = { scopeType: 0 as const, scopeId: `outage-${RUN}` }
const MINUTE = 60_000
const BASE = Math.floor((Date.now() - 3 * 60 * MINUTE) / MINUTE) * MINUTE

beforeAll(async () => {
  await ensureService("kafka")
  await Effect.runPromise(withAdmin((admin) =>
    admin.createTopics({
      topics: [
        { topic: TOPIC, numPartitions: 1 },
        { topic: STATS_TOPIC, numPartitions: 1 },
        { topic: VIOLATIONS_TOPIC, numPartitions: 1 }
      ],
      waitForLeaders: true
    })
  ))
}, 300_000)

afterAll(async () => {
  await Effect.runPromise(
    withAdmin(async (admin) => {
      await admin.deleteTopics({ topics: [TOPIC, STATS_TOPIC, VIOLATIONS_TOPIC] }).catch(() => undefined)
      await admin.deleteGroups([GROUP]).catch(() => undefined)
    }).pipe(Effect.ignore)
  )
}, 60_000)

/** One window of the scope as the job writes it, `minute` minutes after BASE. */
const window = (minute: number, messageCount: number) => {
  const start = BASE + minute * MINUTE
  return {
    key: `0:${SCOPE.scopeId}`,
    value: JSON.stringify({
      ...SCOPE,
      windowStartUtc: new Date(start).toISOString(),
      windowEndUtc: new Date(start + MINUTE).toISOString(),
      messageCount,
      distinctSenders: 1,
      characterCount: messageCount,
      firstEventAtUtc: new Date(start).toISOString(),
      lastEventAtUtc: new Date(start + 1).toISOString()
    })
  }
}

describe("the analytics stats writer through a broker outage", () => {
  it.scopedLive(
    "the lost consumer restarts with backoff and stores what was written while the broker was away",
    () =>
      Effect.gen(function*() {
        const proxy = yield* brokerProxy(endpoints.kafka)
        // kafkajs reports the cut connections at ERROR: expected here
        const context = yield* Logger.withMinimumLogLevel(
          Layer.build(
            Layer.mergeAll(
              KafkaAnalyticsTopicsLayer({ windowStats: STATS_TOPIC, rateLimitEvents: VIOLATIONS_TOPIC }),
              MemoryScopeStats,
              ConsumerHealth.layer,
              AnalyticsSettings.layer({ statsWriterGroup: GROUP }),
              CoreSettings.layer({ consumerRetryBudget: Duration.seconds(2) })
            ).pipe(
              Layer.provide(KafkaClientLayer({
                brokers: [endpoints.kafka],
                clientId: "chatify-analytics-outage-test",
                topic: TOPIC,
                partitions: 1,
                sessionTimeout: "6 seconds",
                heartbeatInterval: "500 millis",
                fetchMaxWait: "250 millis",
                retries: 1,
                socketFactory: throughProxy(proxy.port)
              }))
            )
          ),
          LogLevel.None
        )
        const inContext = <A, E>(effect: Effect.Effect<A, E, ConsumerHealth | ScopeStatsStore>) =>
          Effect.provide(effect, context)
        const supervisor = yield* Effect.forkScoped(
          Effect.provide(supervise(STATS_WRITER, statsWriter), context).pipe(Logger.withMinimumLogLevel(LogLevel.None))
        )
        const stored = inContext(
          Effect.flatMap(ScopeStatsStore, (store) =>
            store.range(SCOPE, { from: new Date(BASE), to: new Date(BASE + 60 * MINUTE), limit: 100 }))
        )
        const awaitStored = (count: number) =>
          stored.pipe(
            Effect.filterOrFail((windows) =>
              windows.length === count, () => "not yet"),
            Effect.retry(Schedule.spaced("100 millis")),
            Effect.timeout("30 seconds")
          )
        const awaitState = (done: (state: string | undefined) => boolean) =>
          inContext(Effect.flatMap(ConsumerHealth, (health) => health.snapshot)).pipe(
            Effect.filterOrFail((states) => done(states.get(STATS_WRITER)), () => "not yet"),
            Effect.retry(Schedule.spaced("50 millis")),
            Effect.timeout("30 seconds")
          )

        yield* produceRecords(STATS_TOPIC, [window(0, 3)])
        yield* awaitStored(1)

        proxy.cut()
        yield* awaitState((state) => state === "restarting")
        // the job goes on writing while this consumer cannot reach the broker
        yield* produceRecords(STATS_TOPIC, [window(1, 5), window(2, 8)])

        proxy.restore()
        const windows = yield* awaitStored(3)
        expect(windows.map((w) => w.messageCount)).toEqual([3, 5, 8])
        yield* awaitState((state) => state === "running")
        expect(supervisor.unsafePoll()).toBeNull()
      }),
    { timeout: 60_000 }
  )
})
