import { Chunk, Clock, Context, Duration, Effect, Either, Layer, Ref, Schedule, Stream } from "effect"
import { type ChatEvent, decodeChatEventJson, EnrichedChatEvent, type StreamPosition } from "@chatify/domain"
import {
  ChatEventSource,
  ChatHistory,
  type ConsumerRecords,
  DeadLetters,
  LocalFanout,
  type LogRecord,
  PodIdentity
} from "./Ports.js"
import { CoreSettings } from "./Settings.js"

export type ConsumerState = "starting" | "running" | "retrying" | "stopped"

/** What each background consumer is doing, for /health/ready. */
export class ConsumerHealth extends Context.Tag("chatify/ConsumerHealth")<ConsumerHealth, {
  readonly report: (name: string, state: ConsumerState) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<ReadonlyMap<string, ConsumerState>>
}>() {
  static readonly layer = Layer.effect(
    ConsumerHealth,
    Effect.map(Ref.make<ReadonlyMap<string, ConsumerState>>(new Map()), (states) => ({
      report: (name, state) => Ref.update(states, (current) => new Map(current).set(name, state)),
      snapshot: Ref.get(states)
    }))
  )
}

const PREVIEW_LENGTH = 200
export const payloadPreview = (value: string): string =>
  value.length > PREVIEW_LENGTH ? `${value.slice(0, PREVIEW_LENGTH)}…` : value

export type Decoded =
  | { readonly _tag: "Event"; readonly event: EnrichedChatEvent }
  | { readonly _tag: "Malformed"; readonly record: LogRecord; readonly reason: string }

// The event is a ChatEvent already (validated when made or decoded) and a log's positions are
// non-negative integers, so the constructor need not check them again.
const atPosition = (chatEvent: ChatEvent, record: LogRecord): Decoded => ({
  _tag: "Event",
  event: new EnrichedChatEvent({ chatEvent, partition: record.partition, offset: record.offset }, true)
})

/**
 * Decodes a record's value as a ChatEvent and places it at the record's position. A log in this
 * process hands over the producer's event with its JSON, which then need not be decoded.
 */
export const decodeRecord = (record: LogRecord): Decoded =>
  record.event !== undefined
    ? atPosition(record.event, record)
    : Either.match(decodeChatEventJson(record.value), {
      onLeft: (error) => ({ _tag: "Malformed", record, reason: error.message.slice(0, 500) }),
      onRight: (chatEvent) => atPosition(chatEvent, record)
    })

/** The last position per partition of a batch: what a group commits after processing it. */
export const lastPositions = (records: Iterable<LogRecord>): ReadonlyArray<StreamPosition> => {
  const last = new Map<number, number>()
  for (const record of records) last.set(record.partition, Math.max(last.get(record.partition) ?? -1, record.offset))
  return Array.from(last, ([partition, offset]) => ({ partition, offset }))
}

const logMalformed = (record: LogRecord, reason: string) =>
  Effect.logWarning("Skipping malformed chat event").pipe(
    Effect.annotateLogs({
      partition: record.partition,
      offset: record.offset,
      reason,
      payloadPreview: payloadPreview(record.value)
    })
  )

/** Backoff for a consumer's transient failures: exponential from 100 ms, jittered, capped at 30 s. */
export const transientBackoff = Schedule.exponential("100 millis").pipe(
  Schedule.union(Schedule.spaced("30 seconds")),
  Schedule.jittered,
  Schedule.resetAfter("1 minute")
)

/**
 * Runs a consumer forever: every failure is logged and the consumer restarts with backoff, so a
 * broker or store outage never becomes a crash loop.
 */
export const supervise = <E, R>(name: string, program: Effect.Effect<void, E, R>) =>
  Effect.gen(function*() {
    const health = yield* ConsumerHealth
    yield* health.report(name, "starting")
    yield* program.pipe(
      Effect.tapErrorCause((cause) =>
        Effect.zipRight(
          health.report(name, "retrying"),
          Effect.logError(`${name} failed; restarting with backoff`, cause)
        )
      ),
      Effect.retry(transientBackoff),
      Effect.ensuring(health.report(name, "stopped")),
      Effect.annotateLogs({ consumer: name })
    )
  })

/**
 * A broadcast consumer's fetches may wait this long to fill up: a few ms of latency on a live
 * event against one fetch per event at moderate rates.
 */
const BROADCAST_BATCH_DELAY_MILLIS = 20
/**
 * How often the broadcast group commits. Nothing resumes from it (a pod always starts the broadcast
 * from the end of the log), so it only tells operators how far the pod has read.
 */
const BROADCAST_COMMIT_INTERVAL_MILLIS = 1_000
/**
 * The history writer's fetches may wait this long to fill up: it stores in windows anyway, and an
 * idle log then costs two fetches a second rather than one per few milliseconds.
 */
const HISTORY_FETCH_DELAY_MILLIS = 500

const consumeChunks = <E, R>(
  consumer: ConsumerRecords,
  handle: (records: Chunk.Chunk<LogRecord>) => Effect.Effect<void, E, R>,
  commitIntervalMillis: number
) =>
  Effect.suspend(() => {
    // the last handled position per partition, committed at most once per interval
    const handled = new Map<number, number>()
    let committedAt = 0
    return consumer.records.pipe(
      Stream.mapChunksEffect((records) =>
        Effect.as(
          Effect.zipRight(
            handle(records),
            Effect.suspend(() => {
              for (const { offset, partition } of lastPositions(records)) handled.set(partition, offset)
              const now = Date.now()
              if (now - committedAt < commitIntervalMillis) return Effect.void
              committedAt = now
              const positions = Array.from(handled, ([partition, offset]) => ({ partition, offset }))
              handled.clear()
              return consumer.commit(positions)
            })
          ),
          Chunk.empty<void>()
        )
      ),
      Stream.runDrain
    )
  })

/** This pod's broadcast consumer: every event to the local subscribers of its scope. */
export const broadcastConsumer = Effect.gen(function*() {
  const source = yield* ChatEventSource
  const fanout = yield* LocalFanout
  const { podId } = yield* PodIdentity
  const settings = yield* CoreSettings
  const health = yield* ConsumerHealth
  const groupId = `${settings.broadcastGroupPrefix}-${podId}`
  yield* Effect.logInfo(`ChatBroadcast starting. ConsumerGroupId: ${groupId}`)
  yield* Effect.scoped(
    Effect.gen(function*() {
      const consumer = yield* source.consume({ groupId, startFrom: "latest", maxBatchDelayMillis: BROADCAST_BATCH_DELAY_MILLIS })
      yield* health.report("broadcast", "running")
      // one pass over a batch: events to the fan-out in log order, malformed records logged
      yield* consumeChunks(consumer, (records) =>
        Effect.suspend(() => {
          const events: Array<EnrichedChatEvent> = []
          const malformed: Array<Effect.Effect<void>> = []
          for (const record of records) {
            const decoded = decodeRecord(record)
            if (decoded._tag === "Event") events.push(decoded.event)
            else malformed.push(logMalformed(record, decoded.reason))
          }
          const published = fanout.publishAll(events)
          return malformed.length === 0 ? published : Effect.zipRight(published, Effect.all(malformed, { discard: true }))
        }), BROADCAST_COMMIT_INTERVAL_MILLIS)
    })
  )
}).pipe(Effect.annotateLogs({ consumer: "broadcast" }))

/**
 * The history writer: batches of events appended idempotently, offsets committed only after the
 * write succeeded, transient store failures retried with backoff, poison records dead-lettered.
 */
export const historyWriter = Effect.gen(function*() {
  const source = yield* ChatEventSource
  const history = yield* ChatHistory
  const deadLetters = yield* DeadLetters
  const settings = yield* CoreSettings
  const health = yield* ConsumerHealth
  yield* Effect.logInfo(`ChatHistoryWriter starting. ConsumerGroupId: ${settings.historyWriterGroup}`)
  const retrying = <A, E>(operation: string, effect: Effect.Effect<A, E>) =>
    effect.pipe(
      Effect.tapError((error) => Effect.logWarning(`${operation} failed; retrying with backoff`, error)),
      Effect.retry(transientBackoff)
    )
  yield* Effect.scoped(
    Effect.gen(function*() {
      const consumer = yield* source.consume({
        groupId: settings.historyWriterGroup,
        startFrom: "committed-or-earliest",
        maxBatchDelayMillis: HISTORY_FETCH_DELAY_MILLIS
      })
      yield* health.report("history-writer", "running")
      const store = (records: ReadonlyArray<LogRecord>) =>
        Effect.gen(function*() {
          const events: Array<EnrichedChatEvent> = []
          for (const record of records) {
            const decoded = decodeRecord(record)
            if (decoded._tag === "Event") {
              events.push(decoded.event)
            } else {
              yield* logMalformed(record, decoded.reason)
              yield* retrying("dead-lettering", deadLetters.publish(record, decoded.reason))
            }
          }
          if (events.length > 0) yield* retrying("history append", history.append(events))
          yield* retrying("offset commit", consumer.commit(lastPositions(records)))
        })
      const batchSize = settings.historyBatchSize
      const windowMillis = Duration.toMillis(settings.historyBatchWindow)
      // A batch is what the log holds when the writer asks, at most historyBatchSize records. After
      // a smaller one the writer has caught up, so it lets the rest of historyBatchWindow pass before
      // asking again: steady traffic is stored in a few large transactions, a busy log in full ones
      // at once. (Stream.groupedWithin did this too, at a cost per batch above that of the insert.)
      yield* consumer.records.pipe(
        Stream.mapChunksEffect((chunk) =>
          Effect.gen(function*() {
            const startedAt = yield* Clock.currentTimeMillis
            const records = Chunk.toReadonlyArray(chunk)
            for (let from = 0; from < records.length; from += batchSize) {
              yield* store(records.slice(from, from + batchSize))
            }
            if (records.length < batchSize) {
              const rest = windowMillis - ((yield* Clock.currentTimeMillis) - startedAt)
              if (rest > 0) yield* Effect.sleep(rest)
            }
            return Chunk.empty<void>()
          })
        ),
        Stream.runDrain
      )
    })
  )
}).pipe(Effect.annotateLogs({ consumer: "history-writer" }))

/** Waits (bounded) until the history writer has stored everything the log holds: used on shutdown. */
export const awaitHistoryDrained = (within: Duration.DurationInput) =>
  Effect.gen(function*() {
    const source = yield* ChatEventSource
    const settings = yield* CoreSettings
    const drained = Effect.zipWith(
      source.endOffsets,
      source.committedOffsets(settings.historyWriterGroup),
      (ends, committed) => Array.from(ends).every(([partition, end]) => (committed.get(partition) ?? 0) >= end)
    )
    return yield* drained.pipe(
      Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (done) => done }),
      Effect.timeoutTo({ duration: Duration.decode(within), onTimeout: () => false, onSuccess: () => true })
    )
  })
