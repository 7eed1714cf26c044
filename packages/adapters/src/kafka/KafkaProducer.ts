import { Effect, Either, Layer, Runtime, type Scope } from "effect"
import type { Kafka, Producer, RecordMetadata } from "kafkajs"
import { ChatEventProducer, recordContext, traced } from "@chatify/core"
import {
  type ChatEvent,
  DependencyUnavailable,
  encodeChatEventJson,
  partitionForKey,
  scopeKey,
  type StreamPosition,
  Timeout
} from "@chatify/domain"
import { awaitKafka, closeQuietly, KafkaClient, type KafkaSettings, kafkaCall, unavailable } from "./KafkaClient.js"
import { type RecordHeaders, recordHeaders } from "./KafkaRecords.js"

const producerConfig = (settings: KafkaSettings) =>
  // kafkajs is loaded by now (the client was made with it): the import only looks it up
  Effect.map(Effect.promise(() => import("kafkajs")), ({ Partitioners }) => ({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: settings.retry
  }))

/**
 * Kafka's answers that mean the broker and this producer no longer agree on the idempotent
 * sequence: kafkajs keeps failing every later send with them until the producer is replaced (its
 * issue 598; seen here after the broker's network was cut for 20 s with a request in flight).
 */
const SEQUENCE_DESYNC = new Set(["OUT_OF_ORDER_SEQUENCE_NUMBER", "UNKNOWN_PRODUCER_ID", "INVALID_PRODUCER_EPOCH"])

/** Whether `error`, or an error it wraps (kafkajs nests them in cause, originalError and errors), is a sequence desync. */
export const isSequenceDesync = (error: unknown, depth = 0): boolean => {
  if (typeof error !== "object" || error === null || depth > 5) return false
  const { cause, errors, originalError, type } = error as {
    readonly type?: unknown
    readonly cause?: unknown
    readonly originalError?: unknown
    readonly errors?: unknown
  }
  return (typeof type === "string" && SEQUENCE_DESYNC.has(type)) ||
    isSequenceDesync(cause, depth + 1) ||
    isSequenceDesync(originalError, depth + 1) ||
    (Array.isArray(errors) && errors.some((inner) => isSequenceDesync(inner, depth + 1)))
}

/** The `send` of an idempotent producer that replaces itself (see makeIdempotentProducer). */
export type RenewingProducer = Pick<Producer, "send">

/**
 * An idempotent producer (acks from every in-sync replica, one request in flight so retries keep
 * the order), connected with backoff at startup and disconnected when the scope closes. kafkajs
 * does not buffer or linger, so once in-flight sends resolved there is nothing left to flush.
 * When a send fails with a sequence desync, that send fails as any other (its caller may retry,
 * the send deduplicator keeps the retry from doubling it) and the producer is replaced by a new
 * one, with a new producer id; later sends wait for the replacement.
 */
export const makeIdempotentProducer = (
  kafka: Kafka,
  settings: KafkaSettings,
  name: string,
  makeProducer?: () => Producer
): Effect.Effect<RenewingProducer, DependencyUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const newProducer = makeProducer ??
      (yield* Effect.map(producerConfig(settings), (config) => () => kafka.producer(config)))
    let current = newProducer()
    let renewing: Promise<void> | undefined
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => renewing ?? Promise.resolve()).pipe(
        Effect.zipRight(closeQuietly(name, () => current.disconnect(), settings.requestTimeoutMs))
      )
    )
    yield* awaitKafka(settings, `connect the ${name}`, kafkaCall(`connect ${name}`, () => current.connect()))
    const runtime = yield* Effect.runtime<never>()
    const log = (message: string) =>
      Runtime.runFork(runtime)(Effect.logWarning(message).pipe(Effect.annotateLogs({ producer: name })))

    const renew = (): Promise<void> => {
      renewing ??= (async () => {
        const stale = current
        const next = newProducer()
        await next.connect()
        current = next
        log(`Kafka ${name} replaced after a sequence desync (a new producer id)`)
        await stale.disconnect().catch(() => undefined)
      })().catch((error: unknown) => {
        // the broker is away again: the next desync tries anew
        log(`Kafka ${name} could not be replaced yet: ${String(error)}`)
      }).finally(() => {
        renewing = undefined
      })
      return renewing
    }

    return {
      send: async (record) => {
        if (renewing !== undefined) await renewing
        try {
          return await current.send(record)
        } catch (error) {
          if (isSequenceDesync(error)) void renew()
          throw error
        }
      }
    }
  })

/** One send waiting for its batch: where it goes, and how its caller is resumed (once). */
interface Waiting {
  readonly key: string
  readonly value: string
  readonly partition: number
  readonly headers: RecordHeaders | undefined
  readonly deadline: number
  resume: ((result: Effect.Effect<StreamPosition, DependencyUnavailable | Timeout>) => void) | undefined
}

/** Records per produce request at most; more wait for the next one. */
const MAX_BATCH_RECORDS = 1_000
/** How often sends past their deadline are failed with Timeout. */
const SWEEP_INTERVAL_MS = 100

const resumeOnce = (waiting: Waiting, result: Effect.Effect<StreamPosition, DependencyUnavailable | Timeout>) => {
  const resume = waiting.resume
  waiting.resume = undefined
  resume?.(result)
}

/**
 * Gathers concurrent sends into produce requests. A send joins the queue; at the end of the
 * current event-loop turn (setImmediate) the queue goes out as one `producer.send` with records
 * for any number of partitions, while the next sends queue up behind it: one request is in flight
 * at a time (the idempotent producer allows no more per broker anyway), and a request starts no
 * sooner than `produceLingerMs` after the previous one started. So at low load a send waits for
 * nothing but its own turn, and under load a batch is whatever arrived in the last linger or
 * round trip, whichever is longer: with a loopback broker a round trip is ~1 ms, and without the
 * linger most requests carried one record (W3, 2026-12-01: ~300 produce requests/s per pod at
 * ~500 sends/s), each costing the pod a request's encoding and a socket write and the broker a
 * request's handling. Each caller is resumed with its own record's offset: the base
 * offset of its partition in the response plus its place among that partition's records, which
 * kafkajs keeps in the order they were given. A send not acknowledged within `produceTimeoutMs`
 * fails with Timeout(produce) (one sweeping timer while sends are pending, no timer or fiber per
 * send); as with any timeout, its record may still be written.
 */
export const makeProduceBatcher = (
  producer: Pick<Producer, "send">,
  settings: Pick<KafkaSettings, "topic" | "produceTimeoutMs" | "produceLingerMs">,
  maxBatchRecords: number = MAX_BATCH_RECORDS
) => {
  const queue: Array<Waiting> = []
  let inFlight: ReadonlyArray<Waiting> = []
  let sending = false
  let scheduled = false
  let lastRequestAt = Number.NEGATIVE_INFINITY
  let sweeper: ReturnType<typeof setInterval> | undefined
  const timedOut = Effect.fail(new Timeout({ operation: "produce" }))

  const sweep = () => {
    const now = Date.now()
    for (const waiting of inFlight) if (waiting.deadline <= now) resumeOnce(waiting, timedOut)
    let expired = 0
    while (expired < queue.length && queue[expired]!.deadline <= now) resumeOnce(queue[expired++]!, timedOut)
    // queued sends nobody waits for any more are not produced
    if (expired > 0) queue.splice(0, expired)
    if (!sending && queue.length === 0 && sweeper !== undefined) {
      clearInterval(sweeper)
      sweeper = undefined
    }
  }

  const settle = (batch: ReadonlyArray<Waiting>, metadata: ReadonlyArray<RecordMetadata>) => {
    const next = new Map<number, number>()
    for (const written of metadata) {
      if (written.topicName !== settings.topic) continue
      const base = Number(written.baseOffset ?? written.offset ?? Number.NaN)
      if (Number.isSafeInteger(base) && base >= 0) next.set(written.partition, base)
    }
    for (const waiting of batch) {
      const offset = next.get(waiting.partition)
      if (offset === undefined) {
        resumeOnce(
          waiting,
          Effect.fail(
            new DependencyUnavailable({
              dependency: "kafka",
              message: `produce: the broker acknowledged without an offset (${JSON.stringify(metadata)})`
            })
          )
        )
      } else {
        next.set(waiting.partition, offset + 1)
        resumeOnce(waiting, Effect.succeed({ partition: waiting.partition, offset }))
      }
    }
  }

  const flush = (): void => {
    scheduled = false
    if (sending || queue.length === 0) return
    sending = true
    const batch = queue.splice(0, maxBatchRecords)
    inFlight = batch
    const messages = batch.map(({ headers, key, partition, value }) =>
      headers === undefined ? { key, value, partition } : { key, value, partition, headers }
    )
    lastRequestAt = performance.now()
    producer.send({ topic: settings.topic, acks: -1, timeout: settings.produceTimeoutMs, messages }).then(
      (metadata) => settle(batch, metadata),
      (error: unknown) => {
        const failure = Effect.fail(unavailable("produce")(error))
        for (const waiting of batch) resumeOnce(waiting, failure)
      }
    ).finally(() => {
      sending = false
      inFlight = []
      schedule()
    })
  }

  // The request goes at the end of this turn once the linger since the previous one is over. Node's
  // timers count from the event loop's clock as of the start of its turn, so one armed late in a
  // busy turn fires that much early: the linger is checked again when it fires.
  const flushAfterLinger = (): void => {
    const left = settings.produceLingerMs - (performance.now() - lastRequestAt)
    if (left > 0) setTimeout(flushAfterLinger, Math.ceil(left))
    else setImmediate(flush)
  }

  const schedule = () => {
    if (scheduled || sending || queue.length === 0) return
    scheduled = true
    flushAfterLinger()
  }

  return {
    produce: (
      key: string,
      value: string,
      partition: number,
      headers?: RecordHeaders
    ): Effect.Effect<StreamPosition, DependencyUnavailable | Timeout> =>
      Effect.async<StreamPosition, DependencyUnavailable | Timeout>((resume) => {
        const waiting: Waiting = {
          key,
          value,
          partition,
          headers,
          deadline: Date.now() + settings.produceTimeoutMs,
          resume
        }
        queue.push(waiting)
        if (sweeper === undefined) {
          sweeper = setInterval(sweep, Math.min(SWEEP_INTERVAL_MS, settings.produceTimeoutMs))
          sweeper.unref()
        }
        schedule()
        // an interrupted caller is not resumed; its record goes out all the same if already queued
        return Effect.sync(() => {
          waiting.resume = undefined
        })
      }),
    /** Sends queued or in flight, for tests and shutdown. */
    pending: () => queue.length + inFlight.length
  }
}

/**
 * ChatEventProducer on Kafka: key `{scopeType}:{scopeId}`, value the wire JSON, resolved with the
 * record's partition and offset once every in-sync replica has it. Concurrent sends share produce
 * requests (makeProduceBatcher).
 */
export const makeKafkaProducer = Effect.gen(function*() {
  const { kafka, settings } = yield* KafkaClient
  const producer = yield* makeIdempotentProducer(kafka, settings, "producer")
  const batcher = makeProduceBatcher(producer, settings)

  return ChatEventProducer.of({
    produce: traced("KafkaProducer.produce", { kind: "producer" })((event: ChatEvent) =>
      Effect.flatMap(recordContext, (context) => {
        const key = scopeKey(event)
        const value = encodeChatEventJson(event)
        if (Either.isLeft(value)) {
          return Effect.fail(new DependencyUnavailable({ dependency: "kafka", message: value.left.message }))
        }
        // Explicit partition: Subscribe finds a scope's events with partitionForScope over the
        // configured count; it is Kafka's murmur2, so kcat and Java producers agree with it.
        return batcher.produce(key, value.right, partitionForKey(key, settings.partitions), recordHeaders(context))
      })
    )
  })
})

export const KafkaProducerLayer: Layer.Layer<ChatEventProducer, DependencyUnavailable, KafkaClient> = Layer.scoped(
  ChatEventProducer,
  makeKafkaProducer
)
