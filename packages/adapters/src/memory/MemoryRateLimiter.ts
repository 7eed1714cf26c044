import { Effect, Layer } from "effect"
import { RateLimiter, ReadRateLimiter, traced } from "@chatify/core"

export interface RateLimitSettings {
  readonly limit: number
  readonly windowSeconds: number
}

/** Fixed-window counter per user, as the original's INCR + EXPIRE; windows are aligned to the epoch. */
const makeFixedWindow = (settings: RateLimitSettings, spanName: string): RateLimiter["Type"] => {
  const windowMs = settings.windowSeconds * 1000
  const counters = new Map<string, { window: number; count: number }>()
  let lastSweep = 0
  return {
    // the clock read and the count in one step: a send passes here every time
    checkAndIncrement: traced(spanName)((userId: string) =>
      Effect.clockWith((clock) =>
        Effect.sync(() => {
          const now = clock.unsafeCurrentTimeMillis()
          const window = Math.floor(now / windowMs)
          if (window !== lastSweep) {
            // forget users of past windows, so memory follows the active users only
            for (const [user, counter] of counters) if (counter.window < window) counters.delete(user)
            lastSweep = window
          }
          const counter = counters.get(userId)
          const count = counter !== undefined && counter.window === window ? counter.count + 1 : 1
          const allowed = count <= settings.limit
          if (allowed) counters.set(userId, { window, count })
          const retryAfterMs = (window + 1) * windowMs - now
          return {
            allowed,
            limit: settings.limit,
            remaining: Math.max(0, settings.limit - Math.min(count, settings.limit)),
            windowSeconds: settings.windowSeconds,
            retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil(retryAfterMs / 1000))
          }
        })
      )
    )
  }
}

/** Sends per user in a fixed window, in this process. */
export const MemoryRateLimiter = (settings: RateLimitSettings) =>
  Layer.sync(RateLimiter, () => makeFixedWindow(settings, "MemoryRateLimiter.checkAndIncrement"))

/** Reads (Subscribe, History, Presence) per user in a fixed window, in this process: counters of their own. */
export const MemoryReadRateLimiter = (settings: RateLimitSettings) =>
  Layer.sync(ReadRateLimiter, () => makeFixedWindow(settings, "MemoryReadRateLimiter.checkAndIncrement"))
