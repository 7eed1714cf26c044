import { Clock, Context, Effect, Layer, Metric, Ref } from "effect"
import { RateLimiter, type RateLimitDecision, ReadRateLimiter, traced } from "@chatify/core"
import type { DependencyUnavailable } from "@chatify/domain"
import { RedisClient, redisUnavailable } from "./RedisClient.js"
import { RedisKeys } from "./RedisKeys.js"

export interface RedisRateLimiterOptions {
  readonly limit: number
  readonly windowSeconds: number
  /** When Redis cannot answer: true lets the send (or read) through (with a warning), false refuses it. */
  readonly failOpen: boolean
}

/**
 * Fixed window per user, as the original's INCR + EXPIRE, but in one script so the counter can never
 * be left without a TTL (a crash between INCR and EXPIRE would otherwise block a user forever).
 * Returns the count after this hit and the window's remaining time in ms.
 */
const CHECK_AND_INCREMENT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  -- a counter without TTL (written by something else): start its window now rather than never
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return { count, ttl }
`

/** Every send let through because Redis could not answer, in this process. */
export const rateLimiterFailOpenTotal = Metric.counter("chatify_rate_limiter_fail_open_total", {
  description: "Sends allowed without a rate limit check because Redis was unavailable",
  incremental: true
})

/** Every read (Subscribe, History, Presence) let through because Redis could not answer, in this process. */
export const readRateLimiterFailOpenTotal = Metric.counter("chatify_read_rate_limiter_fail_open_total", {
  description: "Reads allowed without a rate limit check because Redis was unavailable",
  incremental: true
})

/** What the Redis rate limiter observed, for health reporting and tests. */
export class RedisRateLimiterStats extends Context.Tag("chatify/redis/RedisRateLimiterStats")<RedisRateLimiterStats, {
  /** Sends let through unchecked by this limiter since it started. */
  readonly failOpenCount: Effect.Effect<number>
}>() {}

const FAIL_OPEN_WARNING_INTERVAL_MILLIS = 10_000

/** What tells a send limiter from a read limiter: its keys, its metric and the words of its warnings. */
interface CounterKind {
  readonly key: (userId: string, windowSeconds: number) => string
  readonly failOpenTotal: Metric.Metric.Counter<number>
  /** The limiter as its warnings name it, e.g. "Rate limiter". */
  readonly name: string
  /** "send" or "read", as in "3 send(s) allowed unchecked". */
  readonly noun: string
  /** The span of a check. */
  readonly spanName: string
}

/** A fixed-window limiter on Redis counting under `kind`'s keys, and how many checks it let through unchecked. */
const makeFixedWindow = (options: RedisRateLimiterOptions, kind: CounterKind) =>
  Effect.gen(function*() {
    const client = yield* RedisClient
    const run = client.script(CHECK_AND_INCREMENT)
    const windowMillis = options.windowSeconds * 1000
    const failOpenCount = yield* Ref.make(0)
    // one warning per 10 s of outage, each saying how many checks went unchecked: not one per check
    const lastWarning = yield* Ref.make({ atMillis: Number.NEGATIVE_INFINITY, count: 0 })

    const unexpected = redisUnavailable("unexpected rate limit script reply")
    // the reply is [count, ttl ms], both integers: checked by hand, this runs for every send and read
    const check = (userId: string): Effect.Effect<RateLimitDecision, DependencyUnavailable> =>
      Effect.flatMap(run([client.key(kind.key(userId, options.windowSeconds))], [windowMillis]), (reply) => {
        const fields: ReadonlyArray<unknown> = Array.isArray(reply) && reply.length === 2 ? reply : []
        const [count, ttlMillis] = fields
        if (!Number.isSafeInteger(count) || !Number.isSafeInteger(ttlMillis)) {
          return Effect.fail(unexpected(JSON.stringify(reply)))
        }
        const used = count as number
        const allowed = used <= options.limit
        return Effect.succeed({
          allowed,
          limit: options.limit,
          remaining: Math.max(0, options.limit - used),
          windowSeconds: options.windowSeconds,
          retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((ttlMillis as number) / 1000))
        })
      })

    const failOpen = (error: DependencyUnavailable) =>
      Effect.gen(function*() {
        const count = yield* Ref.updateAndGet(failOpenCount, (n) => n + 1)
        yield* Metric.increment(kind.failOpenTotal)
        const now = yield* Clock.currentTimeMillis
        const unwarned = yield* Ref.modify(lastWarning, (last) =>
          now - last.atMillis >= FAIL_OPEN_WARNING_INTERVAL_MILLIS
            ? [count - last.count, { atMillis: now, count }]
            : [0, last])
        if (unwarned > 0) {
          yield* Effect.logWarning(
            `${kind.name} fails open: ${error.message}; ${unwarned} ${kind.noun}(s) allowed unchecked since the last warning`
          )
        }
        const decision: RateLimitDecision = {
          allowed: true,
          limit: options.limit,
          remaining: Math.max(0, options.limit - 1),
          windowSeconds: options.windowSeconds,
          retryAfterSeconds: 0
        }
        return decision
      })

    const limiter: RateLimiter["Type"] = {
      checkAndIncrement: traced(kind.spanName)((userId: string) =>
        options.failOpen ? Effect.catchAll(check(userId), failOpen) : check(userId)
      )
    }
    return { limiter, failOpenCount: Ref.get(failOpenCount) }
  })

/** Sends per user in a fixed window shared by every pod. */
export const RedisRateLimiter = (
  options: RedisRateLimiterOptions
): Layer.Layer<RateLimiter | RedisRateLimiterStats, never, RedisClient> =>
  Layer.effectContext(
    Effect.map(
      makeFixedWindow(options, {
        key: RedisKeys.rateLimit,
        failOpenTotal: rateLimiterFailOpenTotal,
        name: "Rate limiter",
        noun: "send",
        spanName: "RedisRateLimiter.checkAndIncrement"
      }),
      ({ failOpenCount, limiter }) =>
        Context.make(RateLimiter, limiter).pipe(Context.add(RedisRateLimiterStats, { failOpenCount }))
    )
  )

/**
 * Reads (Subscribe, History, Presence) per user in a fixed window shared by every pod, under keys
 * of their own (see RedisKeys.readRateLimit): never the send limiter's counters. Fails open or
 * closed as the send limiter does.
 */
export const RedisReadRateLimiter = (
  options: RedisRateLimiterOptions
): Layer.Layer<ReadRateLimiter, never, RedisClient> =>
  Layer.effect(
    ReadRateLimiter,
    Effect.map(
      makeFixedWindow(options, {
        key: RedisKeys.readRateLimit,
        failOpenTotal: readRateLimiterFailOpenTotal,
        name: "Read rate limiter",
        noun: "read",
        spanName: "RedisReadRateLimiter.checkAndIncrement"
      }),
      ({ limiter }) => limiter
    )
  )
