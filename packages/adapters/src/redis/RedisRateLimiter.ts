import { Clock, Context, Effect, Layer, Metric, Ref } from "effect"
import { RateLimiter, type RateLimitDecision } from "@chatify/core"
import type { DependencyUnavailable } from "@chatify/domain"
import { RedisClient, redisUnavailable } from "./RedisClient.js"
import { RedisKeys } from "./RedisKeys.js"

export interface RedisRateLimiterOptions {
  readonly limit: number
  readonly windowSeconds: number
  /** When Redis cannot answer: true lets the send through (with a warning), false refuses it. */
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

/** What the Redis rate limiter observed, for health reporting and tests. */
export class RedisRateLimiterStats extends Context.Tag("chatify/redis/RedisRateLimiterStats")<RedisRateLimiterStats, {
  /** Sends let through unchecked by this limiter since it started. */
  readonly failOpenCount: Effect.Effect<number>
}>() {}

const FAIL_OPEN_WARNING_INTERVAL_MILLIS = 10_000

export const RedisRateLimiter = (
  options: RedisRateLimiterOptions
): Layer.Layer<RateLimiter | RedisRateLimiterStats, never, RedisClient> =>
  Layer.effectContext(Effect.gen(function*() {
    const client = yield* RedisClient
    const run = client.script(CHECK_AND_INCREMENT)
    const windowMillis = options.windowSeconds * 1000
    const failOpenCount = yield* Ref.make(0)
    // one warning per 10 s of outage, each saying how many sends went unchecked: not one per send
    const lastWarning = yield* Ref.make({ atMillis: Number.NEGATIVE_INFINITY, count: 0 })

    const unexpected = redisUnavailable("unexpected rate limit script reply")
    // the reply is [count, ttl ms], both integers: checked by hand, this runs for every send
    const check = (userId: string): Effect.Effect<RateLimitDecision, DependencyUnavailable> =>
      Effect.flatMap(run([client.key(RedisKeys.rateLimit(userId, options.windowSeconds))], [windowMillis]), (reply) => {
        const [count, ttlMillis] = Array.isArray(reply) && reply.length === 2 ? reply : []
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
        yield* Metric.increment(rateLimiterFailOpenTotal)
        const now = yield* Clock.currentTimeMillis
        const unwarned = yield* Ref.modify(lastWarning, (last) =>
          now - last.atMillis >= FAIL_OPEN_WARNING_INTERVAL_MILLIS
            ? [count - last.count, { atMillis: now, count }]
            : [0, last])
        if (unwarned > 0) {
          yield* Effect.logWarning(
            `Rate limiter fails open: ${error.message}; ${unwarned} send(s) allowed unchecked since the last warning`
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

    return Context.make(RateLimiter, {
      checkAndIncrement: (userId) =>
        options.failOpen ? Effect.catchAll(check(userId), failOpen) : check(userId)
    }).pipe(Context.add(RedisRateLimiterStats, { failOpenCount: Ref.get(failOpenCount) }))
  }))
