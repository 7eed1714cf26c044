import {
  Chunk,
  Clock,
  Context,
  Duration,
  Effect,
  Either,
  FiberRef,
  Layer,
  LogLevel,
  Option,
  Schedule,
  Stream,
  SubscriptionRef
} from "effect"
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
import { recordFanout, recordHistoryBatch } from "./Metrics.js"
import { CoreSettings } from "./Settings.js"
import { withCorrelation, withRecordContext, withRecordSpans } from "./Tracing.js"

/**
 * What a background consumer is doing: "starting" (its first log consumer is being made),
 * "running", "retrying" (a step of the running consumer fails and is retried, within
 * `consumerRetryBudget`), "restarting" (the consumer failed, because the log was lost or a step ran
 * out of its budget, and a new one is being made with backoff), "stopped".
 */
export type ConsumerState = "starting" | "running" | "retrying" | "restarting" | "stopped"

/** What each background consumer is doing, for /health/ready. */
export class ConsumerHealth extends Context.Tag("chatify/ConsumerHealth")<ConsumerHealth, {
  readonly report: (name: string, state: ConsumerState) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<ReadonlyMap<string, ConsumerState>>
  /** The states now, then after every report. */
  readonly changes: Stream.Stream<ReadonlyMap<string, ConsumerState>>
}>() {
  static readonly layer = Layer.effect(
    ConsumerHealth,
    Effect.map(SubscriptionRef.make<ReadonlyMap<string, ConsumerState>>(new Map()), (states) => ({
      report: (name, state) => SubscriptionRef.update(states, (current) => new Map(current).set(name, state)),
      snapshot: SubscriptionRef.get(states),
      changes: states.changes
    }))
  )
}

/** Waits until the consumer `name` runs (at once when it does). */
export const awaitRunning = (name: string): Effect.Effect<void, never, ConsumerHealth> =>
  Effect.flatMap(ConsumerHealth, (health) =>
    health.changes.pipe(
      Stream.takeUntil((states) => states.get(name) === "running"),
      Stream.runDrain
    ))

/**
 * What a supervised consumer keeps across its restarts: `supervise` makes one per consumer and
 * hands the same one to every run. The broadcast consumer keeps here, per partition, the offset of
 * the next record it is to hand to this pod's fan-out.
 */
export class ResumePositions extends Context.Tag("chatify/ResumePositions")<ResumePositions, Map<number, number>>() {}

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
      payloadPreview: payloadPreview(record.value),
      ...(record.correlationId === undefined ? {} : { correlationId: record.correlationId })
    })
  )

/**
 * A consumer's line about a batch, made only where debug lines are written: at a few records a
 * batch, annotating a line that is then dropped cost more than the batch's fan-out.
 */
const logBatch = (line: () => Effect.Effect<void>): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) =>
    LogLevel.greaterThan(fiber.getFiberRef(FiberRef.currentMinimumLogLevel), LogLevel.Debug) ? Effect.void : line()
  )

/** Backoff for a consumer's transient failures: exponential from 100 ms, jittered, capped at 30 s. */
export const transientBackoff = Schedule.exponential("100 millis").pipe(
  Schedule.union(Schedule.spaced("30 seconds")),
  Schedule.jittered,
  Schedule.resetAfter("1 minute")
)

/**
 * Retries of one step of a running consumer: backoff from 100 ms, jittered, at most 2 s apart, for
 * `budget` in all. Then the step's error ends the consumer, and `supervise` makes a new one.
 */
export const retryBudget = (budget: Duration.DurationInput) =>
  Schedule.exponential("100 millis").pipe(
    Schedule.union(Schedule.spaced("2 seconds")),
    Schedule.jittered,
    Schedule.upTo(budget)
  )

/**
 * Runs a consumer forever: every failure is logged and the consumer restarts with backoff, so a
 * broker or store outage never becomes a crash loop. Every run gets the same ResumePositions.
 */
export const supervise = <E, R>(name: string, program: Effect.Effect<void, E, R>) =>
  Effect.gen(function*() {
    const health = yield* ConsumerHealth
    yield* health.report(name, "starting")
    yield* program.pipe(
      Effect.tapErrorCause((cause) =>
        Effect.zipRight(
          health.report(name, "restarting"),
          Effect.logError(`${name} failed; restarting with backoff`, cause)
        )
      ),
      Effect.retry(transientBackoff),
      Effect.provideService(ResumePositions, new Map<number, number>()),
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
 * How often the broadcast group commits. Nothing resumes from it (a pod starts the broadcast from
 * the end of the log, and a restarted broadcast consumer from the ResumePositions it kept), so it
 * only tells operators how far the pod has read.
 */
const BROADCAST_COMMIT_INTERVAL_MILLIS = 1_000
/**
 * The history writer's fetches may wait this long to fill up: it stores in windows anyway, and an
 * idle log then costs two fetches a second rather than one per few milliseconds.
 */
const HISTORY_FETCH_DELAY_MILLIS = 500
/**
 * See historyBatchMaxWindow: batches grow while more than 1000 / this (50) messages a second arrive.
 * A store's cost is per request (Cassandra: one unlogged batch per scope and bucket), so a window
 * holding one message per scope costs as much per message as no window at all: with 100 scopes,
 * windows of 100 ms only start to pay at thousands of messages a second.
 */
const HISTORY_WAIT_PER_RECORD_MILLIS = 20

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

/**
 * This pod's broadcast consumer: every event to the local subscribers of its scope.
 *
 * The first run starts at the end of the log as it is then. A subscription reads the end offsets
 * after it joined the fan-out (see subscribeInto), so whatever comes at or after them reaches it. A
 * restarted run (supervise keeps ResumePositions) starts after the last record the failed one handed
 * to the fan-out, partition by partition: what other pods produced meanwhile reaches the live
 * subscribers late, in order, and nothing is skipped.
 */
export const broadcastConsumer = Effect.gen(function*() {
  const source = yield* ChatEventSource
  const fanout = yield* LocalFanout
  const { podId } = yield* PodIdentity
  const settings = yield* CoreSettings
  const health = yield* ConsumerHealth
  const next = Option.getOrElse(yield* Effect.serviceOption(ResumePositions), () => new Map<number, number>())
  const groupId = `${settings.broadcastGroupPrefix}-${podId}`
  if (next.size === 0) {
    yield* Effect.logInfo(`ChatBroadcast starting. ConsumerGroupId: ${groupId}`)
    for (const [partition, offset] of yield* source.endOffsets) next.set(partition, offset)
  } else {
    yield* Effect.logInfo(`ChatBroadcast resuming where it stopped. ConsumerGroupId: ${groupId}`).pipe(
      Effect.annotateLogs({ resumeFrom: Object.fromEntries(next) })
    )
  }
  yield* Effect.scoped(
    Effect.gen(function*() {
      const consumer = yield* source.consume({
        groupId,
        startFrom: { offsets: new Map(next) },
        maxBatchDelayMillis: BROADCAST_BATCH_DELAY_MILLIS
      })
      yield* health.report("broadcast", "running")
      // one pass over a batch: events to the fan-out in log order, malformed records logged
      yield* consumeChunks(consumer, (records) =>
        Effect.suspend(() => {
          const events: Array<EnrichedChatEvent> = []
          const malformed: Array<Effect.Effect<void>> = []
          let oldestMillis = Number.POSITIVE_INFINITY
          for (const record of records) {
            const decoded = decodeRecord(record)
            if (decoded._tag === "Event") {
              events.push(decoded.event)
              oldestMillis = Math.min(oldestMillis, decoded.event.chatEvent.createdAtUtc.getTime())
            } else {
              malformed.push(logMalformed(record, decoded.reason))
            }
          }
          const published = Effect.flatMap(fanout.publishAll(events), (delivered) => {
            if (events.length > 0) recordFanout(delivered, Math.max(0, Date.now() - oldestMillis) / 1000)
            for (const { offset, partition } of lastPositions(records)) next.set(partition, offset + 1)
            return logBatch(() =>
              withCorrelation(
                records,
                Effect.logDebug("ChatBroadcast fanned out a batch").pipe(
                  Effect.annotateLogs({ events: events.length, deliveries: delivered })
                )
              )
            )
          })
          // one span per traced event (the child of its send); the lines name the senders' correlation ids
          return withRecordSpans(
            "ChatBroadcast.fanout",
            records,
            malformed.length === 0 ? published : Effect.zipRight(published, Effect.all(malformed, { discard: true }))
          )
        }), BROADCAST_COMMIT_INTERVAL_MILLIS)
    })
  )
}).pipe(Effect.annotateLogs({ consumer: "broadcast" }))

/**
 * The history writer: batches of events appended idempotently, offsets committed only after the
 * write succeeded, transient store failures retried with backoff, poison records dead-lettered.
 * A step that still fails after `consumerRetryBudget` ends the writer (a consumer whose log client
 * crashed can never commit again), and supervise starts a new one from the committed offsets:
 * what was stored but not committed is read and stored again, which the idempotent append absorbs.
 */
export const historyWriter = Effect.gen(function*() {
  const source = yield* ChatEventSource
  const history = yield* ChatHistory
  const deadLetters = yield* DeadLetters
  const settings = yield* CoreSettings
  const health = yield* ConsumerHealth
  yield* Effect.logInfo(`ChatHistoryWriter starting. ConsumerGroupId: ${settings.historyWriterGroup}`)
  const budget = retryBudget(settings.consumerRetryBudget)
  const retrying = <A, E>(operation: string, effect: Effect.Effect<A, E>) =>
    Effect.suspend(() => {
      let failed = false
      return effect.pipe(
        Effect.tapError((error) => {
          failed = true
          return Effect.zipRight(
            health.report("history-writer", "retrying"),
            Effect.logWarning(`${operation} failed; retrying with backoff`, error)
          )
        }),
        Effect.retry(budget),
        Effect.tapBoth({
          onFailure: (error) =>
            Effect.logError(
              `${operation} still failed after ${Duration.format(settings.consumerRetryBudget)}; ` +
                "restarting the history writer from its committed offsets",
              error
            ),
          onSuccess: () => (failed ? health.report("history-writer", "running") : Effect.void)
        })
      )
    })
  yield* Effect.scoped(
    Effect.gen(function*() {
      const consumer = yield* source.consume({
        groupId: settings.historyWriterGroup,
        startFrom: "committed-or-earliest",
        maxBatchDelayMillis: HISTORY_FETCH_DELAY_MILLIS,
        // a chunk smaller than a batch must mean "caught up" (the window below waits only then)
        maxBatchRecords: settings.historyBatchSize
      })
      yield* health.report("history-writer", "running")
      const store = (records: ReadonlyArray<LogRecord>) =>
        withRecordContext("ChatHistoryWriter.store", records, storeBatch(records))
      const storeBatch = (records: ReadonlyArray<LogRecord>) =>
        Effect.gen(function*() {
          const startedAt = performance.now()
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
          recordHistoryBatch(records.length, (performance.now() - startedAt) / 1000)
          yield* logBatch(() =>
            Effect.logDebug("ChatHistoryWriter stored a batch").pipe(
              Effect.annotateLogs({ records: records.length, events: events.length })
            )
          )
        })
      const batchSize = settings.historyBatchSize
      const minWindowMillis = Duration.toMillis(settings.historyBatchWindow)
      const maxWindowMillis = Math.max(minWindowMillis, Duration.toMillis(settings.historyBatchMaxWindow))
      // A batch is what the log holds when the writer asks, at most historyBatchSize records. After
      // a smaller one the writer has caught up, so it lets the rest of a window pass before asking
      // again: steady traffic is stored in a few large transactions, a busy log in full ones at once.
      // The window grows with the batch (HISTORY_WAIT_PER_RECORD_MILLIS a record, between the two
      // settings): light traffic is stored soon, heavy traffic in large batches, which is what makes
      // a store's cost per message fall. (Stream.groupedWithin did this too, at a cost per batch
      // above that of the insert.)
      yield* consumer.records.pipe(
        Stream.mapChunksEffect((chunk) =>
          Effect.gen(function*() {
            const startedAt = yield* Clock.currentTimeMillis
            const records = Chunk.toReadonlyArray(chunk)
            for (let from = 0; from < records.length; from += batchSize) {
              yield* store(records.slice(from, from + batchSize))
            }
            if (records.length < batchSize) {
              const windowMillis = Math.min(
                maxWindowMillis,
                Math.max(minWindowMillis, records.length * HISTORY_WAIT_PER_RECORD_MILLIS)
              )
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
