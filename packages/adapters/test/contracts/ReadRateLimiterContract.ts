import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { RateLimiter, ReadRateLimiter } from "@chatify/core"
import { COUNTING_WINDOW_SECONDS, rateLimiterContract, type RateLimiterContractOptions } from "./RateLimiterContract.js"

export interface ReadRateLimiterContractOptions extends Omit<RateLimiterContractOptions, "makeLayer"> {
  /**
   * The read limiter under test (`limit` reads per window of the given length) together with the
   * send limiter of the same technology (`limit` sends per window of that length), sharing whatever
   * they would share in a server (one Redis and key prefix).
   */
  readonly makeLayer: (windowSeconds: number) => Layer.Layer<ReadRateLimiter | RateLimiter, unknown>
}

/**
 * What every ReadRateLimiter must do: all a RateLimiter must, and never count in the send
 * limiter's windows (nor the send limiter in its own).
 */
export const readRateLimiterContract = (name: string, options: ReadRateLimiterContractOptions) => {
  rateLimiterContract(`${name} (reads)`, {
    ...options,
    // the read limiter under the RateLimiter tag, for the contract every limiter must meet
    makeLayer: (windowSeconds) =>
      Layer.effect(RateLimiter, ReadRateLimiter).pipe(Layer.provide(options.makeLayer(windowSeconds)))
  })

  describe(`ReadRateLimiter contract: ${name}`, () => {
    const test = options.live === true ? it.live : it.effect
    const user = () => `user-${randomUUID()}`

    test("reads and sends of one user count in separate windows", () =>
      Effect.gen(function*() {
        const reads = yield* ReadRateLimiter
        const sends = yield* RateLimiter
        const alice = user()
        // alice's reads used up: every one of her sends is still allowed, with the whole window left
        for (let i = 0; i < options.limit; i++) expect((yield* reads.checkAndIncrement(alice)).allowed).toBe(true)
        expect((yield* reads.checkAndIncrement(alice)).allowed).toBe(false)
        const sent = yield* Effect.forEach(Array.from({ length: options.limit }), () => sends.checkAndIncrement(alice))
        expect(sent.map((d) => d.remaining)).toEqual(
          Array.from({ length: options.limit }, (_, i) => options.limit - i - 1)
        )
        expect((yield* sends.checkAndIncrement(alice)).allowed).toBe(false)

        // bob's sends used up: his reads are all there
        const bob = user()
        for (let i = 0; i <= options.limit; i++) yield* sends.checkAndIncrement(bob)
        const read = yield* Effect.forEach(Array.from({ length: options.limit }), () => reads.checkAndIncrement(bob))
        expect(read.every((d) => d.allowed)).toBe(true)
        expect((yield* reads.checkAndIncrement(bob)).allowed).toBe(false)
      }).pipe(Effect.provide(options.makeLayer(COUNTING_WINDOW_SECONDS))))
  })
}
