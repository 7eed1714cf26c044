import { Effect, Layer } from "effect"
import { IdGenerator } from "@chatify/core"

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"))
const TIMESTAMP_RANGE = 2 ** 48

/**
 * UUID v7 (RFC 9562): 48-bit Unix ms timestamp then random bits, so ids sort by creation time.
 * Takes the 10 random bytes at `at` of `random`.
 */
export const uuidV7 = (nowMs: number, random: Uint8Array, at = 0): string => {
  const timestamp = (Math.floor(nowMs) % TIMESTAMP_RANGE).toString(16).padStart(12, "0")
  const r = (i: number) => HEX[random[at + i]!]!
  const version = HEX[0x70 | (random[at]! & 0x0f)]!
  const variant = HEX[0x80 | (random[at + 2]! & 0x3f)]!
  return `${timestamp.slice(0, 8)}-${timestamp.slice(8)}-${version}${r(1)}-${variant}${r(3)}-${r(4)}${r(5)}${r(6)}${
    r(7)
  }${r(8)}${r(9)}`
}

const RANDOM_BYTES = 10
const POOLED_IDS = 512

export const UuidV7IdGenerator = Layer.sync(IdGenerator, () => {
  // Random bytes fetched for many ids at once: one getRandomValues call per id cost more than the id.
  const pool = new Uint8Array(RANDOM_BYTES * POOLED_IDS)
  let next = pool.length
  return {
    next: Effect.clockWith((clock) =>
      Effect.sync(() => {
        const now = clock.unsafeCurrentTimeMillis()
        if (next === pool.length) {
          crypto.getRandomValues(pool)
          next = 0
        }
        const id = uuidV7(now, pool, next)
        next += RANDOM_BYTES
        return id
      })
    )
  }
})
