import { Effect } from "effect"
import { type DependencyUnavailable, RateLimited } from "@chatify/domain"
import { type Identity, ReadRateLimiter } from "./Ports.js"

/**
 * Counts one read (Subscribe, History, Presence) in the caller's read window, by its rate limit key
 * (an anonymous caller's client address) or else its user id, as sends are counted; a read past the
 * limit is refused with RateLimited (kind "read") before it does any work.
 */
export const checkReadRate = (
  identity: Identity
): Effect.Effect<void, RateLimited | DependencyUnavailable, ReadRateLimiter> =>
  Effect.flatMap(ReadRateLimiter, (limiter) => limiter.checkAndIncrement(identity.rateLimitKey ?? identity.userId))
    .pipe(
      Effect.flatMap((decision) =>
        decision.allowed
          ? Effect.void
          : Effect.fail(
            new RateLimited({
              limit: decision.limit,
              windowSeconds: decision.windowSeconds,
              retryAfterSeconds: decision.retryAfterSeconds,
              kind: "read"
            })
          )
      )
    )
