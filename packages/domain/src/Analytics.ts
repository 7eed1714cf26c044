import { Either, Schema } from "effect"
import { ChatScopeType } from "./ChatEvent.js"

/**
 * The analytics job's output and what the API serves of it. The Flink job (packages/analytics)
 * writes these as JSON to `chat-analytics` and `chat-rate-limit-events`; the API reads them back
 * with these schemas, so the two agree only through this wire contract.
 */

/** How long a stats query may span: a day of one-minute windows is 1,440 of them. */
export const MAX_STATS_SPAN_MILLIS = 24 * 60 * 60 * 1000
/** The span of a stats query without `from`: the last hour. */
export const DEFAULT_STATS_SPAN_MILLIS = 60 * 60 * 1000

const ISO_8601_UTC_MESSAGE = "must be an ISO-8601 date-time with a time zone, e.g. 2026-11-30T10:00:00.000Z"

/**
 * An ISO-8601 date-time with an explicit zone (`Z` or `±hh:mm`), decoded to a Date; encoded as
 * `toISOString()`. Java's `Instant.toString()` (no or six/nine fraction digits) decodes too.
 */
export const UtcDateTime = Schema.compose(
  Schema.String.pipe(
    Schema.pattern(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/u, {
      message: () => ISO_8601_UTC_MESSAGE
    })
  ),
  Schema.Date
).annotations({
  identifier: "UtcDateTime",
  description: "ISO-8601 date-time with a time zone",
  message: () => ({ message: ISO_8601_UTC_MESSAGE, override: true })
})

const Count = Schema.NonNegativeInt

const scopeWindowFields = {
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  /** Inclusive. */
  windowStartUtc: UtcDateTime,
  /** Exclusive. */
  windowEndUtc: UtcDateTime,
  messageCount: Count,
  distinctSenders: Count,
  /** Sum of the texts' lengths in UTF-16 code units (JavaScript's `text.length`). */
  characterCount: Count,
  firstEventAtUtc: UtcDateTime,
  lastEventAtUtc: UtcDateTime
}

/**
 * One scope's statistics over one tumbling window, exactly as the job writes it to `chat-analytics`
 * (keyed `{scopeType}:{scopeId}`) and as the API serves it. A window is emitted only when it holds
 * messages; its events lie inside it.
 */
export class ScopeWindowStats extends Schema.Class<ScopeWindowStats>("ScopeWindowStats")(
  Schema.Struct(scopeWindowFields).pipe(
    Schema.filter((w) => {
      const start = w.windowStartUtc.getTime()
      const end = w.windowEndUtc.getTime()
      if (start >= end) return "windowEndUtc must be after windowStartUtc"
      if (w.messageCount < 1) return "messageCount must be at least 1"
      if (w.distinctSenders < 1 || w.distinctSenders > w.messageCount) {
        return "distinctSenders must be between 1 and messageCount"
      }
      const first = w.firstEventAtUtc.getTime()
      const last = w.lastEventAtUtc.getTime()
      if (first > last) return "firstEventAtUtc must not be after lastEventAtUtc"
      return first >= start && last < end ? undefined : "the events must lie inside the window"
    })
  )
) {}

/** The JSON text of a `chat-analytics` record. */
export const ScopeWindowStatsJson = Schema.parseJson(ScopeWindowStats)

/**
 * One burst of a sender above the job's threshold in one scope, as the job writes it to
 * `chat-rate-limit-events` (keyed by senderId): one event per burst, not per message.
 */
export class RateLimitViolation extends Schema.Class<RateLimitViolation>("RateLimitViolation")(
  Schema.Struct({
    senderId: Schema.String,
    scopeType: ChatScopeType,
    scopeId: Schema.String,
    messageCount: Count,
    threshold: Count,
    windowStartUtc: UtcDateTime,
    windowEndUtc: UtcDateTime,
    detectedAtUtc: UtcDateTime
  }).pipe(
    Schema.filter((v) =>
      v.windowStartUtc.getTime() < v.windowEndUtc.getTime()
        ? undefined
        : "windowEndUtc must be after windowStartUtc"
    )
  )
) {}

/** The JSON text of a `chat-rate-limit-events` record. */
export const RateLimitViolationJson = Schema.parseJson(RateLimitViolation)

/** What a stats query asks: the scope's windows that start in [from, to). */
export const StatsQuery = Schema.Struct({
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  from: Schema.optional(UtcDateTime),
  to: Schema.optional(UtcDateTime)
})
export type StatsQuery = typeof StatsQuery.Type

/** A scope's windows, oldest first, that start in [fromUtc, toUtc). */
export class ScopeStats extends Schema.Class<ScopeStats>("ScopeStats")({
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  fromUtc: UtcDateTime,
  toUtc: UtcDateTime,
  windows: Schema.Array(ScopeWindowStats)
}) {}

/** A query's range with its defaults applied (to: now; from: an hour before to), or what is wrong with it. */
export const statsRange = (
  query: { readonly from?: Date | undefined; readonly to?: Date | undefined },
  nowMillis: number
): Either.Either<{ readonly from: Date; readonly to: Date }, { readonly field: string; readonly message: string }> => {
  const to = query.to ?? new Date(nowMillis)
  const from = query.from ?? new Date(to.getTime() - DEFAULT_STATS_SPAN_MILLIS)
  if (from.getTime() >= to.getTime()) return Either.left({ field: "from", message: "must be before to" })
  if (to.getTime() - from.getTime() > MAX_STATS_SPAN_MILLIS) {
    return Either.left({ field: "to", message: "must be at most 24 hours after from" })
  }
  return Either.right({ from, to })
}
