import { Effect, Layer, type Scope } from "effect"
import { AnalyticsTopics, type RecordSource } from "@chatify/core"
import { DependencyUnavailable } from "@chatify/domain"
import { closeQuietly, ensureTopic, KafkaClient, kafkaCall } from "./KafkaClient.js"
import { makeKafkaSource } from "./KafkaSource.js"

/**
 * Another topic of the same Kafka, read like the chat topic (the same consumer, mailbox and
 * commits). The topic is looked for on each `consume`, not at startup: the analytics job may create
 * it later, and until then the consumer fails with DependencyUnavailable and its supervisor retries.
 * It has an admin client of its own: kafkajs' admin keeps one set of target topics, and looking
 * for a missing topic on the shared admin made a concurrent end-offset fetch of the chat topic fail.
 */
export const makeKafkaTopicSource = (topic: string): Effect.Effect<RecordSource, never, KafkaClient | Scope.Scope> =>
  Effect.gen(function*() {
    const client = yield* KafkaClient
    const settings = { ...client.settings, topic }
    const admin = client.kafka.admin()
    yield* Effect.addFinalizer(() => closeQuietly(`admin of ${topic}`, () => admin.disconnect(), 5_000))
    const sourceOfTopic = Effect.gen(function*() {
      // connected on first use (and again after a failure); a no-op once connected
      yield* kafkaCall(`connect admin of ${topic}`, () => admin.connect())
      yield* ensureTopic(admin, settings, topic, undefined).pipe(
        Effect.catchTag(
          "KafkaTopicError",
          (error) => Effect.fail(new DependencyUnavailable({ dependency: "kafka", message: error.message }))
        )
      )
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
