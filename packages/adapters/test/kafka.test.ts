import { execFile } from "node:child_process"
import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Logger, Option, Schedule, Schema, Stream } from "effect"
import { Kafka, logLevel, Partitioners } from "kafkajs"
import {
  broadcastConsumer,
  ChatEventProducer,
  ChatEventSource,
  ConsumerHealth,
  CoreSettings,
  DeadLetters,
  decodeRecord,
  LocalFanout,
  type LogRecord,
  PodIdentity,
  supervise
} from "@chatify/core"
import {
  ChatEvent,
  ChatEventJson,
  type EnrichedChatEvent,
  partitionForKey,
  partitionForScope,
  type ScopeRef,
  scopeKey
} from "@chatify/domain"
import {
  DeadLetterHeaders,
  KafkaClientLayer,
  KafkaLogLayer,
  type KafkaOptions,
  KafkaProducerLayer,
  kafkaCall,
  makeKafkaSource
} from "../src/kafka/index.js"
import { MemoryFanout } from "../src/memory/index.js"
import { eventLogContract } from "./contracts/EventLogContract.js"
import { brokerProxy as makeBrokerProxy, throughProxy } from "./support/brokerProxy.js"
import { withAdmin } from "./support/kafkaAdmin.js"
import { endpoints, ensureService } from "./support/services.js"
import { freeLoopbackPort } from "./support/ports.js"

// A fresh topic per run of this file, so parallel files and earlier runs do not interfere.
const TOPIC = `chatify-test-${randomUUID().slice(0, 8)}`
const DLQ = `${TOPIC}-dlq`
const BROKER = endpoints.kafka
const extraTopics: Array<string> = []

const options = (overrides: Partial<KafkaOptions> = {}): KafkaOptions => ({
  brokers: [BROKER],
  clientId: "chatify-test",
  topic: TOPIC,
  partitions: 3,
  // the broker's minimum session; short heartbeats so rebalances are noticed quickly
  sessionTimeout: "6 seconds",
  heartbeatInterval: "500 millis",
  rebalanceTimeout: "10 seconds",
  fetchMaxWait: "250 millis",
  startupTimeout: "20 seconds",
  ...overrides
})

/** A bare kafkajs admin for test set-up, outside the code under test. */
const bareKafka = () => new Kafka({ brokers: [BROKER], clientId: "chatify-test-setup", logLevel: logLevel.NOTHING })

/** Produces raw bytes with a bare kafkajs producer (what a foreign or broken producer could write). */
const produceRaw = (key: string, value: Buffer) =>
  Effect.acquireUseRelease(
    Effect.sync(() => bareKafka().producer({ createPartitioner: Partitioners.DefaultPartitioner })),
    (producer) =>
      Effect.zipRight(
        kafkaCall("connect", () => producer.connect()),
        kafkaCall("send", () => producer.send({ topic: TOPIC, messages: [{ key, value }] }))
      ),
    (producer) => Effect.ignore(kafkaCall("disconnect", () => producer.disconnect()))
  )

const unhandled: Array<unknown> = []
const onUnhandled = (reason: unknown) => unhandled.push(reason)

beforeAll(async () => {
  process.on("unhandledRejection", onUnhandled)
  await ensureService("kafka")
  await Effect.runPromise(withAdmin((admin) =>
    admin.createTopics({
      topics: [{ topic: TOPIC, numPartitions: 3 }, { topic: DLQ, numPartitions: 1 }],
      waitForLeaders: true
    })
  ))
}, 180_000)

afterAll(async () => {
  process.off("unhandledRejection", onUnhandled)
  await Effect.runPromise(
    withAdmin((admin) => admin.deleteTopics({ topics: [TOPIC, DLQ, ...extraTopics] })).pipe(Effect.ignore)
  )
  expect(unhandled).toEqual([])
})

const kcat = (args: ReadonlyArray<string>, input?: string) =>
  Effect.async<Buffer, Error>((resume) => {
    const child = execFile(
      "kcat",
      ["-b", BROKER, ...args],
      { encoding: "buffer", timeout: 20_000 },
      (error, stdout, stderr) =>
        resume(
          error === null
            ? Effect.succeed(stdout)
            : Effect.fail(new Error(`kcat: ${error.message} ${stderr.toString()}`))
        )
    )
    if (input !== undefined) child.stdin?.end(input)
  })

const eventIn = (scope: ScopeRef, text: string) =>
  new ChatEvent({
    messageId: randomUUID(),
    scopeType: scope.scopeType,
    scopeId: scope.scopeId,
    senderId: "kafka-test",
    text,
    createdAtUtc: new Date(Date.UTC(2026, 0, 15, 10, 30)),
    originPodId: "kafka-test-pod"
  })
const channel = (): ScopeRef => ({ scopeType: 0, scopeId: `kafka-${randomUUID()}` })
const withKey = (records: Stream.Stream<LogRecord, unknown>, key: string) =>
  Stream.filter(records, (r) => r.key === key)
const firstOf = (records: Stream.Stream<LogRecord, unknown>) =>
  Effect.map(Stream.runCollect(Stream.take(records, 1)), Chunk.unsafeHead)
/** Produces `n` events into `scope`, texts `${prefix}0`…, one after the other; their positions. */
const produceMany = (scope: ScopeRef, n: number, prefix: string) =>
  Effect.flatMap(
    ChatEventProducer,
    (producer) =>
      Effect.forEach(Array.from({ length: n }, (_, i) => eventIn(scope, `${prefix}${i}`)), (e) => producer.produce(e))
  )

const brokerProxy = makeBrokerProxy(BROKER)

/** The producer and the adapter's own source (whose members tell how much they buffer) over a 5-record buffer. */
const withBufferOf5 = KafkaProducerLayer.pipe(Layer.provideMerge(KafkaClientLayer(options({ consumerBufferSize: 5 }))))

/** Waits (bounded) until a member's buffer holds what `until` asks for. */
const awaitBuffered = (
  consumer: { readonly buffered: Effect.Effect<number> },
  until: (buffered: number) => boolean,
  what: string
) =>
  consumer.buffered.pipe(
    Effect.repeat({ schedule: Schedule.spaced("20 millis"), until }),
    Effect.timeoutFail({ duration: "15 seconds", onTimeout: () => new Error(`the buffer never ${what}`) })
  )

eventLogContract("kafka", { makeLayer: () => KafkaLogLayer(options()) })

describe("Kafka adapter", () => {
  it.scopedLive("places a scope on Kafka's murmur2 partition: our producer, partitionForScope and kafkajs agree", () =>
    Effect.gen(function*() {
      const producer = yield* ChatEventProducer
      const scopes = Array.from({ length: 30 }, channel).concat([{ scopeType: 0, scopeId: "general" }])
      const positions = yield* Effect.forEach(scopes, (scope) => producer.produce(eventIn(scope, "x")))
      const partitioner = Partitioners.DefaultPartitioner()
      const partitionMetadata = [0, 1, 2].map((partitionId) => ({
        partitionId,
        leader: 1,
        partitionErrorCode: 0,
        replicas: [1],
        isr: [1]
      }))
      scopes.forEach((scope, i) => {
        expect(positions[i]!.partition).toBe(partitionForScope(scope, 3))
        expect(partitioner({ topic: TOPIC, partitionMetadata, message: { key: scopeKey(scope), value: null } }))
          .toBe(partitionForScope(scope, 3))
      })
      // every partition is used: the placement is not a constant
      expect(new Set(positions.map((p) => p.partition)).size).toBe(3)
    }).pipe(Effect.provide(KafkaLogLayer(options()))))

  it.scopedLive("kcat reads what we produced: key {scopeType}:{scopeId} and the original JSON", () =>
    Effect.gen(function*() {
      const producer = yield* ChatEventProducer
      const event = eventIn({ scopeType: 1, scopeId: "dm:alice:bob" }, "Hello, kcat")
      const { offset, partition } = yield* producer.produce(event)
      const out = yield* kcat(
        ["-C", "-t", TOPIC, "-p", String(partition), "-o", String(offset), "-c", "1", "-e", "-f", "%k\n%s"]
      )
      const [key, value] = out.toString("utf8").split("\n")
      expect(key).toBe("1:dm:alice:bob")
      expect(value).toBe(Schema.encodeSync(ChatEventJson)(event))
      expect(JSON.parse(value!)).toEqual({
        messageId: event.messageId,
        scopeType: 1,
        scopeId: "dm:alice:bob",
        senderId: "kafka-test",
        text: "Hello, kcat",
        createdAtUtc: "2026-01-15T10:30:00.000Z",
        originPodId: "kafka-test-pod"
      })
    }).pipe(Effect.provide(KafkaLogLayer(options()))))

  it.scopedLive("consumes the original design's kcat example (key 0:general, murmur2) as a ChatEvent", () =>
    Effect.gen(function*() {
      const source = yield* ChatEventSource
      // verbatim from the original design's "Kafka Topic Testing with kcat", keyed by scope
      const json = `{"messageId":"123e4567-e89b-12d3-a456-426614174000","scopeType":0,"scopeId":"general",` +
        `"senderId":"test-user","text":"Hello from kcat","createdAtUtc":"2026-01-15T10:30:00Z","originPodId":"test-pod"}`
      yield* kcat(["-P", "-t", TOPIC, "-k", "0:general", "-X", "partitioner=murmur2_random"], `${json}\n`)
      const consumer = yield* source.consume({ groupId: `kcat-${randomUUID()}`, startFrom: "committed-or-earliest" })
      const record = yield* firstOf(
        Stream.filter(withKey(consumer.records, "0:general"), (r) => r.value.includes("Hello from kcat"))
      ).pipe(Effect.timeout("20 seconds"))
      expect(record.partition).toBe(partitionForKey("0:general", 3))
      const decoded = decodeRecord(record)
      expect(decoded._tag).toBe("Event")
      const event = decoded._tag === "Event" ? decoded.event : undefined
      expect(event?.chatEvent).toEqual(
        new ChatEvent({
          messageId: "123e4567-e89b-12d3-a456-426614174000",
          scopeType: 0,
          scopeId: "general",
          senderId: "test-user",
          text: "Hello from kcat",
          createdAtUtc: new Date("2026-01-15T10:30:00Z"),
          originPodId: "test-pod"
        })
      )
      expect(event?.offset).toBe(record.offset)
    }).pipe(Effect.provide(KafkaLogLayer(options()))))

  it.scopedLive("dead-letters a malformed record with its original bytes and where it came from", () =>
    Effect.gen(function*() {
      const source = yield* ChatEventSource
      const deadLetters = yield* DeadLetters
      const key = `0:poison-${randomUUID()}`
      // not JSON, and not even UTF-8
      const poison = Buffer.concat([Buffer.from(`{"text":"`), Buffer.from([0xff, 0xfe, 0x00, 0xc3]), Buffer.from(`"`)])
      yield* produceRaw(key, poison)
      const consumer = yield* source.consume({ groupId: `poison-${randomUUID()}`, startFrom: "committed-or-earliest" })
      const record = yield* firstOf(withKey(consumer.records, key)).pipe(Effect.timeout("20 seconds"))
      const decoded = decodeRecord(record)
      expect(decoded._tag).toBe("Malformed")
      yield* deadLetters.publish(record, decoded._tag === "Malformed" ? decoded.reason : "")

      const value = yield* kcat(["-C", "-t", DLQ, "-o", "beginning", "-c", "1", "-e", "-f", "%s"])
      expect(value.equals(poison)).toBe(true)
      const meta = yield* kcat(["-C", "-t", DLQ, "-o", "beginning", "-c", "1", "-e", "-f", "%k\n%h"])
      const [dlqKey, headers] = meta.toString("utf8").split("\n")
      expect(dlqKey).toBe(key)
      expect(headers).toContain(`${DeadLetterHeaders.topic}=${TOPIC}`)
      expect(headers).toContain(`${DeadLetterHeaders.partition}=${record.partition}`)
      expect(headers).toContain(`${DeadLetterHeaders.offset}=${record.offset}`)
      expect(headers).toContain(`${DeadLetterHeaders.reason}=`)
    }).pipe(Effect.provide(KafkaLogLayer(options()))))

  it.scopedLive("\"latest\" ignores what the same group committed in an earlier run", () =>
    Effect.gen(function*() {
      const producer = yield* ChatEventProducer
      const source = yield* ChatEventSource
      const scope = channel()
      const key = scopeKey(scope)
      const groupId = `broadcast-${randomUUID()}`
      yield* producer.produce(eventIn(scope, "first"))
      // an earlier run of the pod: read and committed "first", then stopped
      yield* Effect.scoped(Effect.gen(function*() {
        const earlier = yield* source.consume({ groupId, startFrom: "committed-or-earliest" })
        const first = yield* firstOf(withKey(earlier.records, key)).pipe(Effect.timeout("20 seconds"))
        yield* earlier.commit([{ partition: first.partition, offset: first.offset }])
      }))
      const old = yield* producer.produce(eventIn(scope, "while stopped"))
      expect((yield* source.committedOffsets(groupId)).get(old.partition)).toBe(old.offset)

      const consumer = yield* source.consume({ groupId, startFrom: "latest" })
      // the member may need a moment to get its partitions: keep producing until it reads
      const keepProducing = Effect.forever(
        Effect.zipRight(producer.produce(eventIn(scope, "new")), Effect.sleep("200 millis"))
      )
      const record = yield* firstOf(withKey(consumer.records, key)).pipe(
        Effect.raceFirst(keepProducing),
        Effect.timeout("20 seconds")
      )
      expect(Schema.decodeSync(ChatEventJson)(record.value).text).toBe("new")
      expect(record.offset).toBeGreaterThan(old.offset)
    }).pipe(Effect.provide(KafkaLogLayer(options()))))

  it.scopedLive(
    "a slow reader: the full buffer holds kafkajs back, the member heartbeats and closes promptly",
    () =>
      Effect.gen(function*() {
        // the adapter itself, not the port: its members tell how many records they hold
        const source = yield* makeKafkaSource
        const scope = channel()
        const key = scopeKey(scope)
        const positions = yield* produceMany(scope, 40, "m")
        const closedAt = yield* Effect.scoped(Effect.gen(function*() {
          const groupId = `slow-${randomUUID()}`
          const consumer = yield* source.consume({ groupId, startFrom: "committed-or-earliest" })
          // kafkajs fills the 5-record buffer and waits in eachBatch, longer than the 6 s session
          yield* Effect.sleep("7 seconds")
          // still a member: the waiting eachBatch heartbeats
          const { groups } = yield* withAdmin((admin) => admin.describeGroups([groupId]))
          expect(groups.map((g) => [g.state, g.members.length])).toEqual([["Stable", 1]])
          const records = yield* Stream.runCollect(Stream.take(withKey(consumer.records, key), 40))
          // an evicted member would have rejoined and read the partition again from the start
          const read = Chunk.toReadonlyArray(records).map((r) => ({ partition: r.partition, offset: r.offset }))
          expect(read).toEqual(positions)
          // fill the buffer again: once it holds 5 records, 15 or more of these 20 acknowledged ones are
          // still to be handed over, so eachBatch is waiting when the scope closes
          yield* produceMany(scope, 20, "more")
          yield* awaitBuffered(consumer, (buffered) => buffered === 5, "filled")
          return Date.now()
        }))
        // the finalizer closes the buffer first, so the waiting eachBatch returns and the member leaves
        expect(Date.now() - closedAt).toBeLessThan(3_000)
      }).pipe(Effect.provide(withBufferOf5)),
    { timeout: 30_000 }
  )

  it.scopedLive(
    "a consumer behind the log gets chunks as large as its maxBatchRecords, beyond the configured buffer",
    () =>
      Effect.gen(function*() {
        const source = yield* makeKafkaSource
        const scope = channel()
        yield* produceMany(scope, 40, "backlog ")
        const consumer = yield* source.consume({
          groupId: `batches-${randomUUID()}`,
          startFrom: "committed-or-earliest",
          maxBatchRecords: 30
        })
        // the history writer reads a chunk shorter than its batch as "caught up" and waits a window:
        // a buffer smaller than the batch would hand it short chunks while it is behind
        yield* awaitBuffered(consumer, (buffered) => buffered >= 30, "held 30")
        const first = yield* Stream.runHead(Stream.chunks(consumer.records))
        expect(Option.map(first, Chunk.size)).toEqual(Option.some(30))
      }).pipe(Effect.provide(withBufferOf5)),
    { timeout: 30_000 }
  )

  it.scopedLive("startup stops clearly on a missing topic or other partition count; creates topics when allowed", () =>
    Effect.gen(function*() {
      const missing = `chatify-missing-${randomUUID().slice(0, 8)}`
      const absent = yield* Effect.flip(Layer.build(KafkaClientLayer(options({ topic: missing }))))
      expect(absent._tag).toBe("KafkaTopicError")
      expect(absent.message).toContain(`"${missing}" does not exist`)

      const mismatch = yield* Effect.flip(Layer.build(KafkaClientLayer(options({ partitions: 4 }))))
      expect(mismatch._tag).toBe("KafkaTopicError")
      expect(mismatch.message).toContain("has 3 partitions, but 4 are configured")

      extraTopics.push(missing, `${missing}-dlq`)
      yield* Effect.scoped(Layer.build(KafkaLogLayer(options({ topic: missing, createTopics: true }))))
      const metadata = yield* withAdmin((admin) => admin.fetchTopicMetadata({ topics: [missing, `${missing}-dlq`] }))
      expect(metadata.topics.map((t) => [t.name, t.partitions.length]).sort()).toEqual([
        [missing, 3],
        [`${missing}-dlq`, 1]
      ])
    }))

  it.scopedLive("an unreachable broker (closed port): startup says what it waits for, fails typed in time", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const capture = Logger.make(({ message }) => {
        logs.push(Array.isArray(message) ? message.join(" ") : String(message))
      })
      const port = yield* Effect.promise(freeLoopbackPort)
      const started = Date.now()
      const unreachable = options({ brokers: [`127.0.0.1:${port}`], startupTimeout: "2 seconds", retries: 1 })
      const layer = KafkaProducerLayer.pipe(Layer.provide(KafkaClientLayer(unreachable)))
      const error = yield* Effect.flip(Effect.scoped(Layer.build(layer))).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, capture))
      )
      expect(error._tag).toBe("DependencyUnavailable")
      expect(error.message).toContain(`kafka (127.0.0.1:${port}) did not answer within 2000 ms`)
      expect(Date.now() - started).toBeLessThan(5_000)
      expect(logs).toContain(
        `Waiting for kafka (127.0.0.1:${port}) to connect and find topic ${TOPIC}; retrying with backoff`
      )
    }))

  it.scopedLive("a produce the broker never acknowledges fails with Timeout(produce) within produceTimeout", () =>
    Effect.gen(function*() {
      const proxy = yield* brokerProxy
      const proxied = options({ socketFactory: throughProxy(proxy.port), produceTimeout: "1500 millis" })
      const context = yield* Layer.build(KafkaLogLayer(proxied))
      const producer = Effect.provide(ChatEventProducer, context)
      const scope = channel()
      yield* Effect.flatMap(producer, (p) => p.produce(eventIn(scope, "acknowledged")))
      proxy.stall()
      const started = Date.now()
      const error = yield* Effect.flip(Effect.flatMap(producer, (p) => p.produce(eventIn(scope, "lost"))))
      expect(error).toMatchObject({ _tag: "Timeout", operation: "produce" })
      expect(Date.now() - started).toBeLessThan(3_000)
      proxy.cut()
    }))

  it.scopedLive(
    "broker loss fails the records Stream typed; supervise restarts the consumer once it is back",
    () =>
      Effect.gen(function*() {
        const proxy = yield* brokerProxy
        const proxied = options({ socketFactory: throughProxy(proxy.port), retries: 1, produceTimeout: "3 seconds" })
        const scope = channel()
        const delivered: Array<EnrichedChatEvent> = []
        const services = Layer.mergeAll(
          KafkaLogLayer(proxied),
          MemoryFanout,
          ConsumerHealth.layer,
          CoreSettings.layer({ broadcastGroupPrefix: `chatify-broadcast-${randomUUID()}` }),
          Layer.succeed(PodIdentity, { podId: "pod-a" })
        )
        const context = yield* Layer.build(services)
        const run = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, context)

        yield* run(Effect.flatMap(LocalFanout, (fanout) =>
          fanout.register(scopeKey(scope), {
            deliver: (event) => delivered.push(event) > 0
          })))
        // the bare port first: a lost broker ends the records Stream with the typed error
        const direct = yield* run(Effect.flatMap(ChatEventSource, (source) =>
          source.consume({ groupId: `loss-${randomUUID()}`, startFrom: "latest" })))
        const failed = yield* Effect.fork(Stream.runDrain(direct.records))

        const supervisor = yield* Effect.forkScoped(run(supervise("broadcast", broadcastConsumer)))
        const waitFor = (state: string) =>
          run(Effect.flatMap(ConsumerHealth, (health) =>
            health.snapshot)).pipe(
              Effect.repeat({
                until: (states) => states.get("broadcast") === state,
                schedule: Schedule.spaced("50 millis")
              }),
              Effect.timeout("20 seconds")
            )
        const sendUntilDelivered = (text: string) =>
          run(Effect.flatMap(ChatEventProducer, (producer) => producer.produce(eventIn(scope, text)))).pipe(
            Effect.zipRight(Effect.sleep("200 millis")),
            Effect.repeat({
              until: () => delivered.some((e) => e.chatEvent.text === text)
            }),
            Effect.timeout("25 seconds")
          )
        yield* waitFor("running")
        yield* sendUntilDelivered("before the outage")

        proxy.cut()
        const lost = yield* Fiber.join(failed).pipe(Effect.flip, Effect.timeout("20 seconds"))
        expect(lost._tag).toBe("DependencyUnavailable")
        yield* waitFor("restarting")

        proxy.restore()
        yield* sendUntilDelivered("after the outage")
        expect(supervisor.unsafePoll()).toBeNull()
      }),
    { timeout: 60_000 }
  )
})
