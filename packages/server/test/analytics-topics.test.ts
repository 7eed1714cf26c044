/**
 * The analytics job's output topics and the API's two consumers of them, on the real Kafka of
 * scripts/services: with topic creation on (CHATIFY__MESSAGEBROKER__CREATETOPICS) the API creates
 * both at startup, with the chat topic's partitions; with it off, the consumers wait for them
 * without an error (one warning each), and run once they appear. /health/startup and /health/ready
 * show both consumers like the broadcast consumer and the history writer; readiness is Degraded
 * (still 200) while they do not run, and startup never waits for them. Topics and groups are this
 * file's own, removed afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Logger, LogLevel, Option, Schedule } from "effect"
import { STATS_WRITER, VIOLATION_RELAY } from "@chatify/core"
import { withAdmin } from "../../adapters/test/support/kafkaAdmin.js"
import { endpoints, ensureService } from "../../adapters/test/support/services.js"
import { type ServerConfig } from "../src/Config.js"
import { startTestServer } from "../src/testing.js"

const run = crypto.randomUUID().replaceAll("-", "").slice(0, 10)
const topicsOf = (name: string) => ({
  chat: `chatify-topics-${name}-${run}`,
  stats: `chatify-topics-${name}-stats-${run}`,
  violations: `chatify-topics-${name}-violations-${run}`
})
const CREATED = topicsOf("created")
const AWAITED = topicsOf("awaited")
const groupsOf = (name: string) => [
  `chatify-topics-${name}-stats-${run}`,
  `chatify-topics-${name}-violations-${run}-pod-${name}`,
  `chatify-topics-${name}-broadcast-${run}-pod-${name}`,
  `chatify-topics-${name}-history-${run}`
]

beforeAll(() => ensureService("kafka"), 300_000)

afterAll(async () => {
  await Effect.runPromise(
    withAdmin(async (admin) => {
      const topics = [CREATED, AWAITED].flatMap((t) => [t.chat, `${t.chat}-dlq`, t.stats, t.violations])
      await admin.deleteTopics({ topics }).catch(() => undefined)
      await admin.deleteGroups([...groupsOf("created"), ...groupsOf("awaited")]).catch(() => undefined)
    }).pipe(Effect.ignore)
  )
}, 120_000)

const serverConfig = (
  name: string,
  topics: typeof CREATED,
  options: { readonly partitions: number; readonly createTopics: boolean }
): Partial<ServerConfig> => ({
  podId: `pod-${name}`,
  broker: {
    useInMemoryBroker: false,
    bootstrapServers: [endpoints.kafka],
    topicName: topics.chat,
    deadLetterTopicName: `${topics.chat}-dlq`,
    partitions: options.partitions,
    broadcastConsumerGroupPrefix: `chatify-topics-${name}-broadcast-${run}`,
    historyWriterConsumerGroup: `chatify-topics-${name}-history-${run}`,
    createTopics: options.createTopics,
    lingerMs: 5
  },
  analytics: {
    enabled: true,
    statsTopic: topics.stats,
    rateLimitEventsTopic: topics.violations,
    statsConsumerGroup: `chatify-topics-${name}-stats-${run}`,
    violationsConsumerGroupPrefix: `chatify-topics-${name}-violations-${run}`,
    recentViolations: 100,
    operators: []
  }
})

interface Health {
  readonly httpStatus: number
  readonly status: string
  readonly checks: Record<string, string>
  readonly degraded: Record<string, string>
}

const health = (httpUrl: string, probe: "ready" | "startup") =>
  Effect.promise(async (): Promise<Health> => {
    const response = await fetch(`${httpUrl}/health/${probe}`)
    const body = await response.json() as Partial<Health>
    return {
      httpStatus: response.status,
      status: body.status ?? "",
      checks: body.checks ?? {},
      degraded: body.degraded ?? {}
    }
  })

/** Polls /health/`probe` until `done` holds (bounded), and returns that answer. */
const awaitHealth = (httpUrl: string, probe: "ready" | "startup", done: (health: Health) => boolean) =>
  health(httpUrl, probe).pipe(
    Effect.filterOrFail(done, () => "not yet"),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error(`/health/${probe} never got there`) }),
    Effect.orDie
  )

const bothRunning = (h: Health) => h.checks[STATS_WRITER] === "running" && h.checks[VIOLATION_RELAY] === "running"

describe("the analytics topics and consumers of the API, Kafka mode", () => {
  it.scopedLive(
    "topic creation on: the API creates both topics with the chat topic's partitions; /health shows the consumers running",
    () =>
      Effect.gen(function*() {
        const server = yield* Logger.withMinimumLogLevel(
          startTestServer({ config: serverConfig("created", CREATED, { partitions: 2, createTopics: true }) }),
          LogLevel.Error
        )
        const ready = yield* awaitHealth(server.httpUrl, "ready", bothRunning)
        expect(ready).toMatchObject({ httpStatus: 200, status: "Healthy" })
        // listed with the pod's own consumers
        expect(Object.keys(ready.checks).slice(0, 4)).toEqual([
          "broadcast",
          "history-writer",
          STATS_WRITER,
          VIOLATION_RELAY
        ])
        const startup = yield* health(server.httpUrl, "startup")
        expect(startup.checks).toMatchObject({ [STATS_WRITER]: "running", [VIOLATION_RELAY]: "running" })

        const metadata = yield* withAdmin((admin) =>
          admin.fetchTopicMetadata({ topics: [CREATED.stats, CREATED.violations] })
        )
        expect(metadata.topics.map((t) => [t.name, t.partitions.length]).sort()).toEqual(
          [[CREATED.stats, 2], [CREATED.violations, 2]].sort()
        )
      }),
    { timeout: 60_000 }
  )

  it.scopedLive(
    "topic creation off: the consumers wait for the missing topics without an error, and run once they exist",
    () =>
      Effect.gen(function*() {
        // the chat topics exist (a server without topic creation refuses to start otherwise), the job's do not
        yield* withAdmin((admin) =>
          admin.createTopics({
            topics: [{ topic: AWAITED.chat, numPartitions: 1 }, { topic: `${AWAITED.chat}-dlq`, numPartitions: 1 }],
            waitForLeaders: true
          })
        )
        // each line with its level and the consumer it comes from (supervise annotates a consumer's lines)
        const lines: Array<{ readonly level: LogLevel.LogLevel; readonly text: string; readonly consumer: string }> = []
        const recorder = Logger.make(({ annotations, logLevel, message }) => {
          lines.push({
            level: logLevel,
            text: Array.isArray(message) ? message.join(" ") : String(message),
            consumer: String(Option.getOrElse(HashMap.get(annotations, "consumer"), () => ""))
          })
        })
        const server = yield* startTestServer({
          config: serverConfig("awaited", AWAITED, { partitions: 1, createTopics: false })
        }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, recorder)))
        const waitingFor = (topic: string) =>
          lines.some((line) =>
            line.level === LogLevel.Warning && line.text.includes(`Kafka topic ${topic} does not exist`)
          )

        // started and ready without them; Degraded, naming both, while they wait
        const waiting = yield* awaitHealth(
          server.httpUrl,
          "ready",
          (h) => Object.keys(h.degraded).length === 2 && waitingFor(AWAITED.stats) && waitingFor(AWAITED.violations)
        )
        expect(waiting).toMatchObject({ httpStatus: 200, status: "Degraded" })
        expect(Object.keys(waiting.degraded).sort()).toEqual([VIOLATION_RELAY, STATS_WRITER].sort())
        expect((yield* health(server.httpUrl, "startup")).httpStatus).toBe(200)

        yield* withAdmin((admin) =>
          admin.createTopics({
            topics: [{ topic: AWAITED.stats, numPartitions: 1 }, { topic: AWAITED.violations, numPartitions: 1 }],
            waitForLeaders: true
          })
        )
        const running = yield* awaitHealth(server.httpUrl, "ready", bothRunning)
        expect(running.degraded).toEqual({})
        // one warning per topic, nothing at ERROR
        expect(lines.filter((line) => line.text.includes("does not exist")).length).toBe(2)
        const analyticsErrors = lines.filter((line) =>
          LogLevel.greaterThanEqual(line.level, LogLevel.Error) &&
          (line.consumer === STATS_WRITER || line.consumer === VIOLATION_RELAY ||
            line.text.includes(AWAITED.stats) || line.text.includes(AWAITED.violations))
        )
        expect(analyticsErrors.map((line) => line.text)).toEqual([])
      }),
    { timeout: 60_000 }
  )
})
