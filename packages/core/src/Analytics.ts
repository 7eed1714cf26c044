import {
  Chunk,
  Clock,
  Context,
  Effect,
  Either,
  Layer,
  Metric,
  Option,
  PubSub,
  Schema,
  type Scope,
  Stream
} from "effect"
import {
  type DependencyUnavailable,
  Forbidden,
  type OperatorStreamError,
  type QueryError,
  type RateLimitViolation,
  RateLimitViolationJson,
  type ScopeRef,
  ScopeStats,
  scopeKey,
  type StatsQuery,
  statsRange,
  type ScopeWindowStats,
  ScopeWindowStatsJson,
  ValidationError
} from "@chatify/domain"
import { authorizeScope } from "./Access.js"
import { ConsumerHealth, lastPositions, payloadPreview, ResumePositions, retryBudget } from "./Consumers.js"
import {
  type ChatPolicy,
  type ConsumerOptions,
  type ConsumerRecords,
  CurrentUser,
  type LogRecord,
  PodIdentity,
  type ReadRateLimiter,
  type ScopeAuthorizer
} from "./Ports.js"
import { checkReadRate } from "./ReadLimit.js"
import { CoreSettings } from "./Settings.js"
import { traced } from "./Tracing.js"

export const STATS_WRITER_GROUP = "chatify-analytics-stats-writer"
export const STATS_WRITER = "analytics-stats-writer"
export const VIOLATION_RELAY = "rate-limit-violations"

/** At most this many windows answer one stats query (a day of one-minute windows), the oldest first. */
export const MAX_STATS_WINDOWS = 1_440

/** The analytics side of the API: who may watch violations, and the consumers' groups. */
export interface AnalyticsSettingsShape {
  /** User ids (JWT `sub`) allowed to call RateLimitViolations; nobody when empty. */
  readonly operators: ReadonlySet<string>
  /** The consumer group that stores `chat-analytics` windows, one for every pod of a deployment. */
  readonly statsWriterGroup: string
  /** Per pod, `{prefix}-{podId}` reads `chat-rate-limit-events` for the operators connected to it. */
  readonly violationsGroupPrefix: string
  /** Violations a pod keeps for an operator who starts watching (and reads back at its start). */
  readonly recentViolations: number
}

export class AnalyticsSettings extends Context.Tag("chatify/AnalyticsSettings")<
  AnalyticsSettings,
  AnalyticsSettingsShape
>() {
  static readonly defaults: AnalyticsSettingsShape = {
    operators: new Set(),
    statsWriterGroup: STATS_WRITER_GROUP,
    violationsGroupPrefix: "chatify-violations",
    recentViolations: 100
  }
  static readonly layer = (overrides: Partial<AnalyticsSettingsShape> = {}) =>
    Layer.succeed(AnalyticsSettings, { ...AnalyticsSettings.defaults, ...overrides })
}

/** A topic read as a consumer group member, like ChatEventSource but for any topic. */
export interface RecordSource {
  readonly consume: (options: ConsumerOptions) => Effect.Effect<ConsumerRecords, DependencyUnavailable, Scope.Scope>
  /** Per partition, the offset the next record will get. */
  readonly endOffsets: Effect.Effect<ReadonlyMap<number, number>, DependencyUnavailable>
}

/** The analytics job's output topics (`chat-analytics`, `chat-rate-limit-events`). */
export class AnalyticsTopics extends Context.Tag("chatify/AnalyticsTopics")<AnalyticsTopics, {
  readonly windowStats: RecordSource
  readonly rateLimitEvents: RecordSource
}>() {}

/**
 * Window statistics per scope. `upsert` is idempotent per (scope, windowStartUtc): a window written
 * again replaces the row, so a replayed record changes nothing and a later result of the same
 * window wins.
 */
export class ScopeStatsStore extends Context.Tag("chatify/ScopeStatsStore")<ScopeStatsStore, {
  readonly upsert: (windows: ReadonlyArray<ScopeWindowStats>) => Effect.Effect<void, DependencyUnavailable>
  /** Oldest first: the scope's windows with from <= windowStartUtc < to, at most `limit`. */
  readonly range: (
    scope: ScopeRef,
    range: { readonly from: Date; readonly to: Date; readonly limit: number }
  ) => Effect.Effect<ReadonlyArray<ScopeWindowStats>, DependencyUnavailable>
}>() {}

interface Sequenced {
  readonly seq: number
  readonly violation: RateLimitViolation
}

/** How far a watching operator may fall behind before the oldest violations it has not read are dropped. */
const WATCHER_BUFFER = 1_024

/**
 * This pod's rate-limit violations for watching operators: the most recent ones, then each new one.
 * Every violation carries a sequence number, so one published while a watcher starts reaches it once.
 */
export class RateLimitViolationFeed extends Context.Tag("chatify/RateLimitViolationFeed")<RateLimitViolationFeed, {
  readonly publish: (violations: ReadonlyArray<RateLimitViolation>) => Effect.Effect<void>
  /** The recent violations, then the live ones; never ends. */
  readonly watch: Stream.Stream<RateLimitViolation>
}>() {
  static readonly layer = Layer.scoped(
    RateLimitViolationFeed,
    Effect.gen(function*() {
      const { recentViolations } = yield* AnalyticsSettings
      const pubsub = yield* Effect.acquireRelease(PubSub.sliding<Sequenced>(WATCHER_BUFFER), PubSub.shutdown)
      const recent: Array<Sequenced> = []
      let seq = 0
      return {
        publish: (violations) =>
          Effect.suspend(() => {
            const items = violations.map((violation) => ({ seq: ++seq, violation }))
            recent.push(...items)
            if (recent.length > recentViolations) recent.splice(0, recent.length - recentViolations)
            return Effect.asVoid(PubSub.publishAll(pubsub, items))
          }),
        watch: Stream.unwrapScoped(
          Effect.map(PubSub.subscribe(pubsub), (live) => {
            const snapshot = recent.slice()
            const seen = snapshot.at(-1)?.seq ?? 0
            return Stream.concat(
              Stream.fromIterable(snapshot),
              Stream.fromQueue(live).pipe(Stream.filter((item) => item.seq > seen))
            ).pipe(Stream.map((item) => item.violation))
          })
        )
      }
    })
  )
}

/** Records of the analytics topics that did not decode: counted here, logged and skipped. */
export const analyticsMalformedRecordsTotal = Metric.counter("chatify_analytics_malformed_records_total", {
  description: "Records of chat-analytics / chat-rate-limit-events that did not decode and were skipped",
  incremental: true
})

/** The counter of one consumer's malformed records. */
export const malformedRecordsOf = (consumer: string) =>
  Metric.tagged(analyticsMalformedRecordsTotal, "consumer", consumer)

const decodeWindow = Schema.decodeEither(ScopeWindowStatsJson)
const decodeViolation = Schema.decodeEither(RateLimitViolationJson)

/** Decodes each record; what does not decode is logged with a preview, counted and left out. */
const decodeAll = <A>(
  consumer: string,
  records: ReadonlyArray<LogRecord>,
  decode: (text: string) => Either.Either<A, { readonly message: string }>
) =>
  Effect.gen(function*() {
    const decoded: Array<A> = []
    for (const record of records) {
      const result = decode(record.value)
      if (Either.isRight(result)) {
        decoded.push(result.right)
        continue
      }
      yield* Metric.increment(malformedRecordsOf(consumer))
      yield* Effect.logWarning("Skipping a malformed analytics record").pipe(
        Effect.annotateLogs({
          partition: record.partition,
          offset: record.offset,
          reason: result.left.message.slice(0, 500),
          payloadPreview: payloadPreview(record.value)
        })
      )
    }
    return decoded
  })

/** The last result of each (scope, window) of a batch: a store writing them concurrently needs one per key. */
const latestPerWindow = (windows: ReadonlyArray<ScopeWindowStats>): ReadonlyArray<ScopeWindowStats> => {
  const latest = new Map<string, ScopeWindowStats>()
  for (const window of windows) latest.set(`${scopeKey(window)}\n${window.windowStartUtc.getTime()}`, window)
  return Array.from(latest.values())
}

/** Fetches may wait this long to fill up: the job emits windows in bursts, once a window closes. */
const STATS_FETCH_DELAY_MILLIS = 500

/**
 * Stores `chat-analytics` in the ScopeStatsStore: each batch's windows upserted, offsets committed
 * only after the write succeeded (retried within `consumerRetryBudget`, then the consumer ends and
 * supervise starts it again from the committed offsets; the upsert makes the replay harmless).
 */
export const statsWriter = Effect.gen(function*() {
  const topics = yield* AnalyticsTopics
  const store = yield* ScopeStatsStore
  const settings = yield* AnalyticsSettings
  const health = yield* ConsumerHealth
  const budget = retryBudget((yield* CoreSettings).consumerRetryBudget)
  const retrying = <A, E>(operation: string, effect: Effect.Effect<A, E>) =>
    effect.pipe(
      Effect.tapError((error) =>
        Effect.zipRight(
          health.report(STATS_WRITER, "retrying"),
          Effect.logWarning(`${operation} failed; retrying with backoff`, error)
        )
      ),
      Effect.retry(budget)
    )
  yield* Effect.logInfo(`Analytics stats writer starting. ConsumerGroupId: ${settings.statsWriterGroup}`)
  yield* Effect.scoped(
    Effect.gen(function*() {
      const consumer = yield* topics.windowStats.consume({
        groupId: settings.statsWriterGroup,
        startFrom: "committed-or-earliest",
        maxBatchDelayMillis: STATS_FETCH_DELAY_MILLIS
      })
      yield* health.report(STATS_WRITER, "running")
      yield* consumer.records.pipe(
        Stream.mapChunksEffect((chunk) =>
          Effect.gen(function*() {
            const records = Chunk.toReadonlyArray(chunk)
            const windows = yield* decodeAll(STATS_WRITER, records, decodeWindow)
            if (windows.length > 0) yield* retrying("stats upsert", store.upsert(latestPerWindow(windows)))
            yield* retrying("offset commit", consumer.commit(lastPositions(records)))
            yield* health.report(STATS_WRITER, "running")
            return Chunk.empty<void>()
          })
        ),
        Stream.runDrain
      )
    })
  )
}).pipe(Effect.annotateLogs({ consumer: STATS_WRITER }))

/**
 * Hands `chat-rate-limit-events` to this pod's RateLimitViolationFeed, in a group of the pod's own
 * (every pod's operators see every violation). The first run starts `recentViolations` records
 * before the end of each partition, so an operator who starts watching sees the latest ones; a
 * restarted run goes on after the last record it handed over (supervise keeps ResumePositions).
 */
export const violationRelay = Effect.gen(function*() {
  const topics = yield* AnalyticsTopics
  const feed = yield* RateLimitViolationFeed
  const settings = yield* AnalyticsSettings
  const { podId } = yield* PodIdentity
  const health = yield* ConsumerHealth
  const next = Option.getOrElse(yield* Effect.serviceOption(ResumePositions), () => new Map<number, number>())
  const groupId = `${settings.violationsGroupPrefix}-${podId}`
  if (next.size === 0) {
    for (const [partition, end] of yield* topics.rateLimitEvents.endOffsets) {
      next.set(partition, Math.max(0, end - settings.recentViolations))
    }
  }
  yield* Effect.logInfo(`Rate-limit violation relay starting. ConsumerGroupId: ${groupId}`)
  yield* Effect.scoped(
    Effect.gen(function*() {
      const consumer = yield* topics.rateLimitEvents.consume({ groupId, startFrom: { offsets: new Map(next) } })
      yield* health.report(VIOLATION_RELAY, "running")
      yield* consumer.records.pipe(
        Stream.mapChunksEffect((chunk) =>
          Effect.gen(function*() {
            const records = Chunk.toReadonlyArray(chunk)
            yield* feed.publish(yield* decodeAll(VIOLATION_RELAY, records, decodeViolation))
            for (const { offset, partition } of lastPositions(records)) next.set(partition, offset + 1)
            // nothing resumes from the group's commit (see above): it only shows operators how far the pod read
            yield* Effect.ignore(consumer.commit(lastPositions(records)))
            return Chunk.empty<void>()
          })
        ),
        Stream.runDrain
      )
    })
  )
}).pipe(Effect.annotateLogs({ consumer: VIOLATION_RELAY }))

/**
 * A scope's window statistics in [from, to) (to: now, from: an hour before to; at most 24 hours),
 * oldest first. The same authorization as the history (`read` in the scope), counted in the caller's
 * read window.
 */
export const readStats: (
  query: StatsQuery
) => Effect.Effect<
  ScopeStats,
  QueryError,
  ChatPolicy | CurrentUser | ReadRateLimiter | ScopeAuthorizer | ScopeStatsStore
> = traced("Chat.readStats")(function*(query: StatsQuery) {
  const scope = { scopeType: query.scopeType, scopeId: query.scopeId }
  yield* checkReadRate(yield* authorizeScope(scope, "read"))
  const range = yield* Either.mapLeft(
    statsRange(query, yield* Clock.currentTimeMillis),
    (error) => new ValidationError({ errors: [error] })
  )
  const windows = yield* (yield* ScopeStatsStore).range(scope, { ...range, limit: MAX_STATS_WINDOWS })
  return new ScopeStats({ ...scope, fromUtc: range.from, toUtc: range.to, windows })
})

/**
 * The rate-limit violations for an operator (the recent ones this pod holds, then live ones): the
 * user ids of CHATIFY__ANALYTICS__OPERATORS, anyone else is Forbidden. Counted as one read.
 */
export const watchRateLimitViolations: Effect.Effect<
  Stream.Stream<RateLimitViolation>,
  OperatorStreamError,
  AnalyticsSettings | CurrentUser | RateLimitViolationFeed | ReadRateLimiter
> = Effect.gen(function*() {
  const identity = yield* CurrentUser
  const { operators } = yield* AnalyticsSettings
  if (!operators.has(identity.userId)) {
    return yield* new Forbidden({
      message: `${identity.userId} may not watch rate-limit violations (not in CHATIFY__ANALYTICS__OPERATORS)`
    })
  }
  yield* checkReadRate(identity)
  return (yield* RateLimitViolationFeed).watch
})
