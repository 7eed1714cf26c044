import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Duration, Layer } from "effect"
import { RateLimiter } from "@chatify/core"

export interface RateLimiterContractOptions {
  /** The limiter under test, configured with `limit` sends per window of the given length. */
  readonly makeLayer: (windowSeconds: number) => Layer.Layer<RateLimiter, unknown>
  readonly limit: number
  /**
   * The window of the test that waits for one to pass (short, where time is real). The tests that
   * count within one window use an hour instead: a short real window could roll over between their
   * checks on a loaded machine, and they would see a fresh count.
   */
  readonly windowSeconds: number
  /** Moves time past a window: TestClock for in-memory adapters, real time for a real server. */
  readonly advance: (duration: Duration.DurationInput) => Effect.Effect<void>
  /** it.effect (TestClock) for in-memory adapters, it.live for real servers. */
  readonly live?: boolean
}

/** The window of the tests that count within one: no run lasts long enough to see it roll over. */
export const COUNTING_WINDOW_SECONDS = 3_600

/** What every RateLimiter must do; run against each adapter. */
export const rateLimiterContract = (name: string, options: RateLimiterContractOptions) =>
  describe(`RateLimiter contract: ${name}`, () => {
    const test = options.live === true ? it.live : it.effect
    const user = () => `user-${randomUUID()}`

    test("allows exactly `limit` sends in a window, then refuses with a retry delay within the window", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter
        const alice = user()
        const decisions = yield* Effect.forEach(
          Array.from({ length: options.limit + 2 }),
          () => limiter.checkAndIncrement(alice)
        )
        expect(decisions.filter((d) => d.allowed).length).toBe(options.limit)
        expect(decisions.slice(0, options.limit).map((d) => d.remaining)).toEqual(
          Array.from({ length: options.limit }, (_, i) => options.limit - i - 1)
        )
        for (const refused of decisions.slice(options.limit)) {
          expect(refused.allowed).toBe(false)
          expect(refused.remaining).toBe(0)
          expect(refused.retryAfterSeconds).toBeGreaterThan(0)
          expect(refused.retryAfterSeconds).toBeLessThanOrEqual(COUNTING_WINDOW_SECONDS)
          expect(refused.limit).toBe(options.limit)
          expect(refused.windowSeconds).toBe(COUNTING_WINDOW_SECONDS)
        }
      }).pipe(Effect.provide(options.makeLayer(COUNTING_WINDOW_SECONDS))))

    test("counts each user on their own", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter
        const alice = user()
        const bob = user()
        for (let i = 0; i < options.limit; i++) yield* limiter.checkAndIncrement(alice)
        expect((yield* limiter.checkAndIncrement(alice)).allowed).toBe(false)
        expect((yield* limiter.checkAndIncrement(bob)).allowed).toBe(true)
      }).pipe(Effect.provide(options.makeLayer(COUNTING_WINDOW_SECONDS))))

    test("allows again once the window has passed", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter
        const alice = user()
        for (let i = 0; i < options.limit; i++) yield* limiter.checkAndIncrement(alice)
        const refused = yield* limiter.checkAndIncrement(alice)
        expect(refused.allowed).toBe(false)
        yield* options.advance(`${refused.retryAfterSeconds + 1} seconds`)
        expect((yield* limiter.checkAndIncrement(alice)).allowed).toBe(true)
      }).pipe(Effect.provide(options.makeLayer(options.windowSeconds))))

    test("never allows more than `limit` among concurrent checks", () =>
      Effect.gen(function*() {
        const limiter = yield* RateLimiter
        const alice = user()
        const decisions = yield* Effect.forEach(
          Array.from({ length: options.limit * 3 }),
          () => limiter.checkAndIncrement(alice),
          { concurrency: "unbounded" }
        )
        expect(decisions.filter((d) => d.allowed).length).toBe(options.limit)
      }).pipe(Effect.provide(options.makeLayer(COUNTING_WINDOW_SECONDS))))
  })
