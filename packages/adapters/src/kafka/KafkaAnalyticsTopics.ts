import { Duration, Effect, Layer, Schedule, type Scope } from "effect"
import { AnalyticsTopics, type RecordSource } from "@chatify/core"
import { DependencyUnavailable } from "@chatify/domain"
import { closeQuietly, ensureTopic, KafkaClient, kafkaCall } from "./KafkaClient.js"
import { makeKafkaSource } from "./KafkaSource.js"

/** How often a consumer waiting for a missing topic looks for it again. */
const MISSING_TOPIC_POLL = Duration.seconds(2)

/**
 * Another topic of the same Kafka, read like the chat topic (the same consumer, mailbox and
 * commits). The topic is looked for on each `consume`, not at startup: the analytics job may create
 * it later. When the client may create topics (CHATIFY__MESSAGEBROKER__CREATETOPICS) a missing one
 * is created, with the chat topic's partitions as the job would; otherwise `consume` waits for it,
 * with one warning, so a pod started before the job neither fails nor logs errors meanwhile.
 * It has an admin client of its own: kafkajs' admin keeps one set of target topics, and looking
 * for a missing topic on the shared admin made a concurrent end-offset fetch of the chat topic fail.
 */
export const makeKafkaTopicSource = (topic: string): Effect.Effect<RecordSource, never, KafkaClient | Scope.Scope> =>
  Effect.gen(function*() {
    const client = yield* KafkaClient
    const settings = { ...client.settings, topic }
    const admin = client.kafka.admin()
    yield* Effect.addFinalizer(() => closeQuietly(`admin of ${topic}`, () => admin.disconnect(), 5_000))
    const createMissing = Effect.gen(function*() {
      const existing = yield* kafkaCall("list topics", () => admin.listTopics())
      if (existing.includes(topic)) return
      const replication = settings.replicationFactor === undefined
        ? {}
        : { replicationFactor: settings.replicationFactor }
      // false when another pod (or the job) created it meanwhile
      const created = yield* kafkaCall(`create topic ${topic}`, () =>
        admin.createTopics({
          topics: [{ topic, numPartitions: settings.partitions, ...replication }],
          waitForLeaders: true
        }))
      if (created) yield* Effect.logInfo(`Created Kafka topic ${topic} with ${settings.partitions} partitions`)
    })
    const awaitTopic = Effect.suspend(() => {
      let warned = false
      return ensureTopic(admin, settings, topic, undefined).pipe(
        Effect.tapError((error) =>
          error._tag === "KafkaTopicError" && !warned
            ? Effect.zipRight(
              Effect.sync(() => (warned = true)),
              Effect.logWarning(
                `Kafka topic ${topic} does not exist yet; waiting for it (the analytics job, or the topic ` +
                  "set-up, creates it; CHATIFY__MESSAGEBROKER__CREATETOPICS=true lets the API create it)"
              )
            )
            : Effect.void
        ),
        Effect.retry({
          schedule: Schedule.spaced(MISSING_TOPIC_POLL),
          while: (error) => error._tag === "KafkaTopicError"
        }),
        Effect.tap(() => (warned ? Effect.logInfo(`Kafka topic ${topic} exists now`) : Effect.void)),
        Effect.catchTag(
          "KafkaTopicError",
          (error) => Effect.fail(new DependencyUnavailable({ dependency: "kafka", message: error.message }))
        )
      )
    })
    const sourceOfTopic = Effect.gen(function*() {
      // connected on first use (and again after a failure); a no-op once connected
      yield* kafkaCall(`connect admin of ${topic}`, () => admin.connect())
      yield* settings.createTopics ? createMissing : awaitTopic
      const metadata = yield* kafkaCall(
        `describe topic ${topic}`,
        () => admin.fetchTopicMetadata({ topics: [topic] })
      )
      const partitions = metadata.topics.find((t) => t.name === topic)?.partitions.length ?? 0
      return yield* Effect.provideService(makeKafkaSource, KafkaClient, {
        ...client,
        admin,
        settings: { ...settings, partitions }
      })
    })
    return {
      consume: (options) => Effect.flatMap(sourceOfTopic, (source) => source.consume(options)),
      endOffsets: Effect.flatMap(sourceOfTopic, (source) => source.endOffsets)
    }
  })

/** The analytics job's output topics on the client's Kafka. */
export const KafkaAnalyticsTopicsLayer = (
  topics: { readonly windowStats: string; readonly rateLimitEvents: string }
): Layer.Layer<AnalyticsTopics, never, KafkaClient> =>
  Layer.scoped(
    AnalyticsTopics,
    Effect.all({
      windowStats: makeKafkaTopicSource(topics.windowStats),
      rateLimitEvents: makeKafkaTopicSource(topics.rateLimitEvents)
    })
  )
