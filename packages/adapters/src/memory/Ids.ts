import { Effect, Layer } from "effect"
import { IdGenerator } from "@chatify/core"

const UUID_BYTES = 16
const UUID_LENGTH = 36
const HEX_DIGITS = Buffer.from("0123456789abcdef", "latin1")
const TIMESTAMP_RANGE = 2 ** 48

/**
 * The first 16 bytes of `scratch` as UUID text, one flat string (written into `scratch` after
 * them). Ids made by concatenation are trees of their pieces in V8 (~20 of them, ~600 bytes where
 * the flat string takes 56), and the log, the history writer and the records of every send keep
 * ids for seconds: text written into a buffer and read out once is flat.
 */
const uuidText = (scratch: Buffer): string => {
  let out = UUID_BYTES
  for (let i = 0; i < UUID_BYTES; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) scratch[out++] = 0x2d
    const byte = scratch[i]!
    scratch[out++] = HEX_DIGITS[byte >> 4]!
    scratch[out++] = HEX_DIGITS[byte & 0x0f]!
  }
  return scratch.toString("latin1", UUID_BYTES, UUID_BYTES + UUID_LENGTH)
}

/**
 * UUID v7 (RFC 9562): 48-bit Unix ms timestamp then random bits, so ids sort by creation time.
 * Takes the 10 random bytes at `at` of `random`; `scratch` is working space the caller may reuse.
 */
export const uuidV7 = (
  nowMs: number,
  random: Uint8Array,
  at = 0,
  scratch: Buffer = Buffer.allocUnsafe(UUID_BYTES + UUID_LENGTH)
): string => {
  const timestamp = Math.floor(nowMs) % TIMESTAMP_RANGE
  scratch.writeUIntBE(timestamp, 0, 6)
  scratch[6] = 0x70 | (random[at]! & 0x0f)
  scratch[7] = random[at + 1]!
  scratch[8] = 0x80 | (random[at + 2]! & 0x3f)
  for (let i = 3; i < 10; i++) scratch[6 + i] = random[at + i]!
  return uuidText(scratch)
}

/** UUID v4 (RFC 9562, random): the 16 bytes at `at` of `random`, with the version and variant set. */
export const uuidV4 = (
  random: Uint8Array,
  at = 0,
  scratch: Buffer = Buffer.allocUnsafe(UUID_BYTES + UUID_LENGTH)
): string => {
  for (let i = 0; i < UUID_BYTES; i++) scratch[i] = random[at + i]!
  scratch[6] = 0x40 | (scratch[6]! & 0x0f)
  scratch[8] = 0x80 | (scratch[8]! & 0x3f)
  return uuidText(scratch)
}

/** Random bytes fetched for many ids at once: one getRandomValues call per id cost more than the id. */
class RandomPool {
  readonly bytes: Uint8Array
  private next: number

  constructor(private readonly bytesPerId: number) {
    this.bytes = new Uint8Array(bytesPerId * 512)
    this.next = this.bytes.length
  }

  /** Where the next id's random bytes start in `bytes`. */
  take(): number {
    if (this.next === this.bytes.length) {
      crypto.getRandomValues(this.bytes)
      this.next = 0
    }
    const at = this.next
    this.next += this.bytesPerId
    return at
  }
}

/**
 * A source of random UUIDs (v4) as flat strings, from its own pool of random bytes: cheaper than
 * `crypto.randomUUID()` made flat (whose text is a tree of ~20 pieces and had to be copied).
 */
export const makeUuidV4Source = (): () => string => {
  const random = new RandomPool(UUID_BYTES)
  const scratch = Buffer.allocUnsafe(UUID_BYTES + UUID_LENGTH)
  return () => uuidV4(random.bytes, random.take(), scratch)
}

export const UuidV7IdGenerator = Layer.sync(IdGenerator, () => {
  const random = new RandomPool(10)
  const scratch = Buffer.allocUnsafe(UUID_BYTES + UUID_LENGTH)
  return {
    next: Effect.clockWith((clock) =>
      Effect.sync(() => uuidV7(clock.unsafeCurrentTimeMillis(), random.bytes, random.take(), scratch))
    )
  }
})
