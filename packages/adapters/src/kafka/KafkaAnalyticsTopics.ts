import { Effect, Layer } from "effect"
import { AnalyticsTopics, type RecordSource } from "@chatify/core"
import { DependencyUnavailable } from "@chatify/domain"
import { ensureTopic, KafkaClient, kafkaCall } from "./KafkaClient.js"
import { makeKafkaSource } from "./KafkaSource.js"

/**
 * Another topic of the same Kafka, read like the chat topic (the same consumer, mailbox and
 * commits). The topic is looked for on each `consume`, not at startup: the analytics job may create
 * it later, and until then the consumer fails with DependencyUnavailable and its supervisor retries.
 */
export const makeKafkaTopicSource = (topic: string): Effect.Effect<RecordSource, never, KafkaClient> =>
  Effect.gen(function*() {
    const client = yield* KafkaClient
    const settings = { ...client.settings, topic }
    const sourceOfTopic = Effect.gen(function*() {
      yield* ensureTopic(client.admin, settings, topic, undefined).pipe(
        Effect.catchTag(
          "KafkaTopicError",
          (error) => Effect.fail(new DependencyUnavailable({ dependency: "kafka", message: error.message }))
        )
      )
      const metadata = yield* kafkaCall(
        `describe topic ${topic}`,
        () => client.admin.fetchTopicMetadata({ topics: [topic] })
      )
      const partitions = metadata.topics.find((t) => t.name === topic)?.partitions.length ?? 0
      return yield* Effect.provideService(makeKafkaSource, KafkaClient, {
        ...client,
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
  Layer.effect(
    AnalyticsTopics,
    Effect.all({
      windowStats: makeKafkaTopicSource(topics.windowStats),
      rateLimitEvents: makeKafkaTopicSource(topics.rateLimitEvents)
    })
  )
