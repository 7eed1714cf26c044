import { Duration, Effect, Layer } from "effect"
import { DeadLetters, type LogRecord, traced } from "@chatify/core"
import { DependencyUnavailable } from "@chatify/domain"
import { awaitKafka, ensureTopic, KafkaClient, kafkaCall, type KafkaTopicError } from "./KafkaClient.js"
import { makeIdempotentProducer } from "./KafkaProducer.js"
import { rawValueOf } from "./KafkaRecords.js"

/** Headers that say where a dead-lettered record came from and why it was set aside. */
export const DeadLetterHeaders = {
  topic: "chatify-original-topic",
  partition: "chatify-original-partition",
  offset: "chatify-original-offset",
  timestamp: "chatify-original-timestamp",
  reason: "chatify-dead-letter-reason"
} as const

const MAX_REASON_LENGTH = 1_000

/**
 * DeadLetters on Kafka: the record's original key and value bytes go to the dead-letter topic,
 * with its origin and the reason in headers, acknowledged by every in-sync replica.
 */
export const makeKafkaDeadLetters = Effect.gen(function*() {
  const { admin, kafka, settings } = yield* KafkaClient
  const topic = settings.deadLetterTopic
  yield* awaitKafka(settings, `find dead-letter topic ${topic}`, ensureTopic(admin, settings, topic, undefined))
  const producer = yield* makeIdempotentProducer(kafka, settings, "dead-letter producer")

  return DeadLetters.of({
    publish: traced("KafkaDeadLetters.publish")((record: LogRecord, reason: string) =>
      kafkaCall("publish to the dead-letter topic", () =>
        producer.send({
          topic,
          acks: -1,
          timeout: settings.produceTimeoutMs,
          messages: [{
            key: record.key,
            value: rawValueOf(record),
            headers: {
              [DeadLetterHeaders.topic]: settings.topic,
              [DeadLetterHeaders.partition]: String(record.partition),
              [DeadLetterHeaders.offset]: String(record.offset),
              [DeadLetterHeaders.timestamp]: String(record.timestampMs),
              [DeadLetterHeaders.reason]: reason.slice(0, MAX_REASON_LENGTH)
            }
          }]
        })).pipe(
          Effect.timeoutFail({
            duration: Duration.millis(settings.produceTimeoutMs),
            onTimeout: () =>
              new DependencyUnavailable({
                dependency: "kafka",
                message: `publish to the dead-letter topic: no acknowledgement within ${settings.produceTimeoutMs} ms`
              })
          }),
          Effect.zipRight(
            Effect.logWarning("Dead-lettered a chat event record").pipe(
              Effect.annotateLogs({
                partition: record.partition,
                offset: record.offset,
                reason,
                deadLetterTopic: topic
              })
            )
          )
        )
    )
  })
})

export const KafkaDeadLettersLayer: Layer.Layer<DeadLetters, DependencyUnavailable | KafkaTopicError, KafkaClient> =
  Layer.scoped(DeadLetters, makeKafkaDeadLetters)
