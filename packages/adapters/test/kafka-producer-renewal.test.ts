import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, FastCheck as fc } from "effect"
import { Kafka, type Producer, type ProducerRecord, type RecordMetadata } from "kafkajs"
import { kafkaSettings } from "../src/kafka/KafkaClient.js"
import { isSequenceDesync, makeIdempotentProducer } from "../src/kafka/KafkaProducer.js"

// The producer's recovery from a sequence desync without a broker: fake kafkajs producers that
// record what happens to them; the first one answers every send with the desync kafkajs reports.
const desync = Object.assign(new Error("The broker received an out of order sequence number"), {
  name: "KafkaJSProtocolError",
  type: "OUT_OF_ORDER_SEQUENCE_NUMBER",
  code: 45,
  retriable: false
})

interface FakeProducer {
  readonly id: number
  readonly sends: Array<ProducerRecord>
  connected: boolean
  disconnected: boolean
}

const fakeProducers = (failing: (id: number) => Error | undefined) => {
  const made: Array<FakeProducer> = []
  const newProducer = (): Producer => {
    const fake: FakeProducer = { id: made.length, sends: [], connected: false, disconnected: false }
    made.push(fake)
    const producer = {
      connect: () => {
        fake.connected = true
        return Promise.resolve()
      },
      disconnect: () => {
        fake.disconnected = true
        return Promise.resolve()
      },
      send: (record: ProducerRecord): Promise<Array<RecordMetadata>> => {
        fake.sends.push(record)
        const error = failing(fake.id)
        return error === undefined
          ? Promise.resolve([{ topicName: record.topic, partition: 0, errorCode: 0, baseOffset: "0" }])
          : Promise.reject(error)
      }
    }
    return producer as unknown as Producer
  }
  return { made, newProducer }
}

const settings = kafkaSettings({ brokers: ["127.0.0.1:1"], topic: "chat", partitions: 1 })
const record = (value: string): ProducerRecord => ({ topic: "chat", messages: [{ value }] })
// never asked for a producer: the fakes stand in for its
const noKafka = new Kafka({ brokers: ["127.0.0.1:1"] })

describe("the idempotent producer after a sequence desync", () => {
  it.scoped("fails that send, replaces itself with a new producer (a new producer id), and sends the next ones on it", () =>
    Effect.gen(function*() {
      const fakes = fakeProducers((id) => (id === 0 ? desync : undefined))
      const producer = yield* makeIdempotentProducer(noKafka, settings, "producer", fakes.newProducer)
      const first = yield* Effect.exit(
        Effect.promise(() => producer.send(record("a")).then(() => "sent", () => "failed"))
      )
      expect(first).toEqual(Exit.succeed("failed"))
      // the next send waits for the replacement and goes out on the new producer
      yield* Effect.promise(() => producer.send(record("b")))
      yield* Effect.promise(() => producer.send(record("c")))
      expect(fakes.made.length).toBe(2)
      expect(fakes.made[0]!.disconnected).toBe(true)
      expect(fakes.made[1]!.connected).toBe(true)
      expect(fakes.made[0]!.sends.map((r) => r.messages[0]!.value)).toEqual(["a"])
      expect(fakes.made[1]!.sends.map((r) => r.messages[0]!.value)).toEqual(["b", "c"])
    }))

  it.scoped("keeps its producer through other failures, and disconnects it when the scope closes", () =>
    Effect.gen(function*() {
      const fakes = fakeProducers(() =>
        Object.assign(new Error("Connection error: read ECONNRESET"), { retriable: true })
      )
      yield* Effect.scoped(Effect.gen(function*() {
        const producer = yield* makeIdempotentProducer(noKafka, settings, "producer", fakes.newProducer)
        for (const value of ["a", "b", "c"]) {
          yield* Effect.promise(() => producer.send(record(value)).catch(() => undefined))
        }
      }))
      expect(fakes.made.length).toBe(1)
      expect(fakes.made[0]!.sends.length).toBe(3)
      expect(fakes.made[0]!.disconnected).toBe(true)
    }))

  it.prop(
    "recognises a desync however kafkajs wraps it, and nothing else",
    [
      fc.constantFrom(
        "OUT_OF_ORDER_SEQUENCE_NUMBER",
        "UNKNOWN_PRODUCER_ID",
        "INVALID_PRODUCER_EPOCH",
        "NOT_LEADER_FOR_PARTITION",
        "REQUEST_TIMED_OUT"
      ),
      fc.array(fc.constantFrom("cause", "originalError", "errors"), { maxLength: 4 })
    ],
    ([type, wrappers]) => {
      const wrapped = wrappers.reduce<unknown>(
        (
          inner,
          how
        ) => (how === "errors"
          ? { name: "KafkaJSAggregateError", errors: [new Error("other"), inner] }
          : { name: "KafkaJSNonRetriableError", [how]: inner }),
        { name: "KafkaJSProtocolError", type }
      )
      expect(isSequenceDesync(wrapped)).toBe(
        ["OUT_OF_ORDER_SEQUENCE_NUMBER", "UNKNOWN_PRODUCER_ID", "INVALID_PRODUCER_EPOCH"].includes(type)
      )
    }
  )
})
