import { Effect } from "effect"
import { Kafka, logLevel } from "kafkajs"
import { endpoints } from "./services.js"

/**
 * Produces records to a topic of the Kafka from scripts/services/kafka.sh as another service would
 * (key and JSON text, acknowledged by every in-sync replica), with a producer of its own.
 */
export const produceRecords = (
  topic: string,
  messages: ReadonlyArray<{ readonly key: string; readonly value: string }>
) =>
  Effect.acquireUseRelease(
    Effect.promise(async () => {
      const producer = new Kafka({
        brokers: [endpoints.kafka],
        clientId: "chatify-test-producer",
        logLevel: logLevel.NOTHING
      })
        .producer()
      await producer.connect()
      return producer
    }),
    (producer) => Effect.promise(() => producer.send({ topic, acks: -1, messages: [...messages] })),
    (producer) => Effect.promise(() => producer.disconnect())
  )
