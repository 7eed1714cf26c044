import { Duration, Effect, Layer, Schema, type Scope } from "effect"
import { type Kafka, Partitioners, type Producer } from "kafkajs"
import { ChatEventProducer } from "@chatify/core"
import { ChatEventJson, DependencyUnavailable, partitionForKey, scopeKey, Timeout } from "@chatify/domain"
import { awaitKafka, closeQuietly, KafkaClient, type KafkaSettings, kafkaCall } from "./KafkaClient.js"

/**
 * An idempotent producer (acks from every in-sync replica, one request in flight so retries keep
 * the order), connected with backoff at startup and disconnected when the scope closes. kafkajs
 * does not buffer or linger, so once in-flight sends resolved there is nothing left to flush.
 */
export const makeIdempotentProducer = (
  kafka: Kafka,
  settings: KafkaSettings,
  name: string
): Effect.Effect<Producer, DependencyUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
      retry: settings.retry
    })
    yield* Effect.addFinalizer(() => closeQuietly(name, () => producer.disconnect(), settings.requestTimeoutMs))
    yield* awaitKafka(settings, `connect the ${name}`, kafkaCall(`connect ${name}`, () => producer.connect()))
    return producer
  })

const encodeEvent = Schema.encode(ChatEventJson)

/**
 * ChatEventProducer on Kafka: key `{scopeType}:{scopeId}`, value the wire JSON, resolved with the
 * record's partition and offset once every in-sync replica has it.
 */
export const makeKafkaProducer = Effect.gen(function*() {
  const { kafka, settings } = yield* KafkaClient
  const producer = yield* makeIdempotentProducer(kafka, settings, "producer")
  const timeout = Duration.millis(settings.produceTimeoutMs)

  return ChatEventProducer.of({
    produce: (event) =>
      Effect.gen(function*() {
        const key = scopeKey(event)
        const value = yield* encodeEvent(event).pipe(
          Effect.mapError((error) => new DependencyUnavailable({ dependency: "kafka", message: error.message }))
        )
        // Explicit partition: Subscribe finds a scope's events with partitionForScope over the
        // configured count; it is Kafka's murmur2, so kcat and Java producers agree with it.
        const partition = partitionForKey(key, settings.partitions)
        const metadata = yield* kafkaCall("produce", () =>
          producer.send({
            topic: settings.topic,
            acks: -1,
            timeout: settings.produceTimeoutMs,
            messages: [{ key, value, partition }]
          })).pipe(Effect.timeoutFail({ duration: timeout, onTimeout: () => new Timeout({ operation: "produce" }) }))
        const written = metadata.find((m) => m.topicName === settings.topic && m.partition === partition)
        const offset = Number(written?.baseOffset ?? written?.offset ?? Number.NaN)
        if (written === undefined || !Number.isSafeInteger(offset) || offset < 0) {
          return yield* new DependencyUnavailable({
            dependency: "kafka",
            message: `produce: the broker acknowledged without an offset (${JSON.stringify(metadata)})`
          })
        }
        return { partition, offset }
      })
  })
})

export const KafkaProducerLayer: Layer.Layer<ChatEventProducer, DependencyUnavailable, KafkaClient> = Layer.scoped(
  ChatEventProducer,
  makeKafkaProducer
)
