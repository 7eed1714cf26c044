import { Clock, Effect, Layer } from "effect"
import { IdGenerator } from "@chatify/core"

const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")

/** UUID v7 (RFC 9562): 48-bit Unix ms timestamp then random bits, so ids sort by creation time. */
export const uuidV7 = (nowMs: number, random: Uint8Array): string => {
  const bytes = new Uint8Array(16)
  bytes.set(random.subarray(0, 10), 6)
  let ms = nowMs
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256
    ms = Math.floor(ms / 256)
  }
  bytes[6] = 0x70 | (bytes[6]! & 0x0f)
  bytes[8] = 0x80 | (bytes[8]! & 0x3f)
  const h = hex(bytes)
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

export const UuidV7IdGenerator = Layer.succeed(IdGenerator, {
  next: Effect.map(Clock.currentTimeMillis, (now) => uuidV7(now, crypto.getRandomValues(new Uint8Array(10))))
})
