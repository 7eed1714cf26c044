import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, FiberId } from "effect"
import type { ProducerRecord, RecordMetadata } from "kafkajs"
import { makeProduceBatcher } from "../src/kafka/KafkaProducer.js"

// The producer side of the Kafka adapter without a broker: a fake `send` that records each request
// and answers when the test says so, with per-partition base offsets as Kafka does.
const fakeProducer = () => {
  const requests: Array<
    {
      readonly record: ProducerRecord
      readonly answer: Deferred.Deferred<Array<RecordMetadata>, Error>
      readonly at: number
    }
  > = []
  const next = new Map<number, number>()
  const arrived: Array<() => void> = []
  const producer = {
    send: (record: ProducerRecord) => {
      const answer = Deferred.unsafeMake<Array<RecordMetadata>, Error>(FiberId.none)
      requests.push({ record, answer, at: performance.now() })
      for (const wake of arrived.splice(0)) wake()
      return Effect.runPromise(Deferred.await(answer))
    }
  }
  /** Acknowledges a request as the broker would: each partition's records get consecutive offsets. */
  const acknowledge = (index: number) =>
    Effect.suspend(() => {
      const { answer, record } = requests[index]!
      const counts = new Map<number, number>()
      for (const message of record.messages) counts.set(message.partition!, (counts.get(message.partition!) ?? 0) + 1)
      const metadata: Array<RecordMetadata> = []
      for (const [partition, count] of counts) {
        const base = next.get(partition) ?? 0
        next.set(partition, base + count)
        metadata.push({ topicName: record.topic, partition, errorCode: 0, baseOffset: String(base) })
      }
      return Deferred.succeed(answer, metadata)
    })
  const awaitRequests = (count: number) =>
    Effect.async<void>((resume) => {
      const check = () => {
        if (requests.length >= count) resume(Effect.void)
        else arrived.push(check)
      }
      check()
    })
  return { producer, requests, acknowledge, awaitRequests }
}

const settings = { topic: "chat", produceTimeoutMs: 10_000, produceLingerMs: 0 }

describe("Kafka produce batching", () => {
  it.live("sends of one turn share one request; each caller gets its own record's offset, in order per partition", () =>
    Effect.gen(function*() {
      const fake = fakeProducer()
      const batcher = makeProduceBatcher(fake.producer, settings)
      const sends = Array.from({ length: 10 }, (_, i) => batcher.produce(`key-${i}`, `value-${i}`, i % 3))
      const fiber = yield* Effect.fork(Effect.all(sends, { concurrency: "unbounded" }))
      yield* fake.awaitRequests(1)
      expect(fake.requests.length).toBe(1)
      expect(fake.requests[0]!.record.messages.map((m) => m.value)).toEqual(sends.map((_, i) => `value-${i}`))
      expect(fake.requests[0]!.record.acks).toBe(-1)
      yield* fake.acknowledge(0)
      const positions = yield* Fiber.join(fiber)
      expect(positions).toEqual([
        { partition: 0, offset: 0 },
        { partition: 1, offset: 0 },
        { partition: 2, offset: 0 },
        { partition: 0, offset: 1 },
        { partition: 1, offset: 1 },
        { partition: 2, offset: 1 },
        { partition: 0, offset: 2 },
        { partition: 1, offset: 2 },
        { partition: 2, offset: 2 },
        { partition: 0, offset: 3 }
      ])
    }))

  it.live("one request in flight: what arrives meanwhile goes in the next one, in arrival order", () =>
    Effect.gen(function*() {
      const fake = fakeProducer()
      const batcher = makeProduceBatcher(fake.producer, settings)
      const first = yield* Effect.fork(batcher.produce("a", "1", 0))
      yield* fake.awaitRequests(1)
      const later = yield* Effect.fork(
        Effect.all([batcher.produce("a", "2", 0), batcher.produce("a", "3", 0)], { concurrency: "unbounded" })
      )
      // wait until both are queued behind the request in flight
      yield* Effect.yieldNow().pipe(Effect.repeat({ until: () => batcher.pending() === 3 }))
      expect(fake.requests.length).toBe(1)
      yield* fake.acknowledge(0)
      expect(yield* Fiber.join(first)).toEqual({ partition: 0, offset: 0 })
      yield* fake.awaitRequests(2)
      expect(fake.requests[1]!.record.messages.map((m) => m.value)).toEqual(["2", "3"])
      yield* fake.acknowledge(1)
      expect(yield* Fiber.join(later)).toEqual([{ partition: 0, offset: 1 }, { partition: 0, offset: 2 }])
      expect(batcher.pending()).toBe(0)
    }))

  it.live("a failed request fails each of its callers with DependencyUnavailable; the next request goes on", () =>
    Effect.gen(function*() {
      const fake = fakeProducer()
      const batcher = makeProduceBatcher(fake.producer, settings)
      const failing = yield* Effect.fork(
        Effect.all([batcher.produce("a", "1", 0), batcher.produce("b", "2", 1)], {
          mode: "either",
          concurrency: "unbounded"
        })
      )
      yield* fake.awaitRequests(1)
      yield* Deferred.fail(fake.requests[0]!.answer, new Error("NOT_LEADER_FOR_PARTITION"))
      const results = yield* Fiber.join(failing)
      for (const result of results) {
        expect(result).toMatchObject({ _tag: "Left", left: { _tag: "DependencyUnavailable", dependency: "kafka" } })
      }
      const after = yield* Effect.fork(batcher.produce("a", "3", 0))
      yield* fake.awaitRequests(2)
      yield* fake.acknowledge(1)
      expect(yield* Fiber.join(after)).toEqual({ partition: 0, offset: 0 })
    }))

  it.live("a send the broker never acknowledges fails with Timeout(produce), and so do those queued behind it", () =>
    Effect.gen(function*() {
      const fake = fakeProducer()
      const batcher = makeProduceBatcher(fake.producer, { topic: "chat", produceTimeoutMs: 300, produceLingerMs: 0 })
      const stuck = yield* Effect.fork(batcher.produce("a", "1", 0))
      yield* fake.awaitRequests(1)
      const queued = yield* Effect.fork(batcher.produce("a", "2", 0))
      const [a, b] = [yield* Fiber.await(stuck), yield* Fiber.await(queued)]
      for (const exit of [a, b]) {
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          expect(exit.cause).toMatchObject({ _tag: "Fail", error: { _tag: "Timeout", operation: "produce" } })
        }
      }
      // a late answer is ignored: nobody is resumed twice
      yield* fake.acknowledge(0)
    }))

  it.live("linger: under load a request starts no sooner than the linger after the previous one, with all that came meanwhile; after a quiet spell a send goes at once", () =>
    Effect.gen(function*() {
      const lingerMs = 300
      const fake = fakeProducer()
      const batcher = makeProduceBatcher(fake.producer, { ...settings, produceLingerMs: lingerMs })
      const first = yield* Effect.fork(batcher.produce("a", "1", 0))
      yield* fake.awaitRequests(1)
      yield* fake.acknowledge(0)
      yield* Fiber.join(first)
      // the broker answered at once: what comes now waits out the linger, together
      const burst = yield* Effect.fork(
        Effect.all([batcher.produce("a", "2", 0), batcher.produce("b", "3", 1), batcher.produce("a", "4", 0)], {
          concurrency: "unbounded"
        })
      )
      yield* fake.awaitRequests(2)
      // the fake reads the clock just after the batcher does, and a busy machine may preempt the
      // process in between: a few ms either way, where no linger would put the two requests ~0 apart
      expect(fake.requests[1]!.at - fake.requests[0]!.at).toBeGreaterThanOrEqual(lingerMs - 5)
      expect(fake.requests[1]!.record.messages.map((m) => m.value)).toEqual(["2", "3", "4"])
      yield* fake.acknowledge(1)
      expect(yield* Fiber.join(burst)).toEqual([
        { partition: 0, offset: 1 },
        { partition: 1, offset: 0 },
        { partition: 0, offset: 2 }
      ])
      // a quiet spell longer than the linger: the next send is not held back
      yield* Effect.sleep(lingerMs)
      const quietAt = performance.now()
      const quiet = yield* Effect.fork(batcher.produce("a", "5", 0))
      yield* fake.awaitRequests(3)
      expect(fake.requests[2]!.at - quietAt).toBeLessThan(lingerMs / 2)
      yield* fake.acknowledge(2)
      expect(yield* Fiber.join(quiet)).toEqual({ partition: 0, offset: 3 })
    }))
})
