import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { ChatScopeType, murmur2, partitionForKey, partitionForScope, scopeKey } from "../src/index.js"

/**
 * An independent port of Kafka's `Utils.murmur2(byte[])` (clients/src/main/java/org/apache/kafka/common/utils/Utils.java),
 * written with BigInt arithmetic modulo 2^32 rather than Math.imul, so it shares no code path with the implementation.
 */
const referenceMurmur2 = (key: string): number => {
  const data = Buffer.from(key, "utf8") // Kafka's StringSerializer encodes keys as UTF-8
  const mask = 0xffffffffn
  const mul = (a: bigint, b: bigint): bigint => (a * b) & mask
  const m = 0x5bd1e995n
  const length = data.length
  let h = (0x9747b28cn ^ BigInt(length)) & mask
  const length4 = Math.floor(length / 4)
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4
    let k = BigInt(data[i4]!) + (BigInt(data[i4 + 1]!) << 8n) + (BigInt(data[i4 + 2]!) << 16n) +
      (BigInt(data[i4 + 3]!) << 24n)
    k = mul(k, m)
    k ^= k >> 24n
    k = mul(k, m)
    h = mul(h, m)
    h ^= k
  }
  const base = length - (length % 4)
  // Java's switch falls through: case 3 → case 2 → case 1.
  switch (length % 4) {
    case 3:
      h ^= BigInt(data[base + 2]!) << 16n
      h ^= BigInt(data[base + 1]!) << 8n
      h ^= BigInt(data[base]!)
      h = mul(h, m)
      break
    case 2:
      h ^= BigInt(data[base + 1]!) << 8n
      h ^= BigInt(data[base]!)
      h = mul(h, m)
      break
    case 1:
      h ^= BigInt(data[base]!)
      h = mul(h, m)
      break
  }
  h ^= h >> 13n
  h = mul(h, m)
  h ^= h >> 15n
  return Number(BigInt.asIntN(32, h))
}

/** Kafka's default partitioner: `Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions`. */
const referencePartition = (key: string, partitions: number): number =>
  Number(BigInt.asUintN(31, BigInt(referenceMurmur2(key)))) % partitions

const anyKey = FastCheck.oneof(
  FastCheck.string(),
  FastCheck.string({ unit: "grapheme" }),
  FastCheck.string({ unit: "binary" }),
  FastCheck.string({ maxLength: 64, unit: FastCheck.constantFrom("a", "é", "€", "😀", "0", ":") })
)

describe("murmur2", () => {
  // Kafka's UtilsTest.testMurmur2.
  const kafkaVectors: ReadonlyArray<readonly [string, number]> = [
    ["21", -973932308],
    ["foobar", -790332482],
    ["a-little-bit-long-string", -985981536],
    ["a-little-bit-longer-string", -1486304829],
    ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
    ["abc", 479470107]
  ]

  for (const [key, expected] of kafkaVectors) {
    it(`matches Kafka's test vector for ${JSON.stringify(key)}`, () => {
      expect(murmur2(key)).toBe(expected)
    })
  }

  it("the reference port matches Kafka's test vectors too", () => {
    for (const [key, expected] of kafkaVectors) expect(referenceMurmur2(key)).toBe(expected)
  })

  it("covers every tail length (0..3 trailing bytes) and the empty key", () => {
    for (const key of ["", "a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "é", "😀", "€€"]) {
      expect(murmur2(key)).toBe(referenceMurmur2(key))
    }
  })

  it.prop("equals an independent port of Kafka's murmur2 over UTF-8 bytes", { key: anyKey }, ({ key }) => {
    expect(murmur2(key)).toBe(referenceMurmur2(key))
  }, { fastCheck: { numRuns: 300 } })

  it.prop("is a signed 32-bit integer and deterministic", { key: anyKey }, ({ key }) => {
    const h = murmur2(key)
    expect(Number.isInteger(h)).toBe(true)
    expect(h).toBeGreaterThanOrEqual(-(2 ** 31))
    expect(h).toBeLessThan(2 ** 31)
    expect(murmur2(key)).toBe(h)
  }, { fastCheck: { numRuns: 200 } })
})

describe("partitionForKey", () => {
  it.prop(
    "is Kafka's default partitioner and always in [0, partitions)",
    { key: anyKey, partitions: FastCheck.integer({ min: 1, max: 10_000 }) },
    ({ key, partitions }) => {
      const p = partitionForKey(key, partitions)
      expect(Number.isInteger(p)).toBe(true)
      expect(p).toBeGreaterThanOrEqual(0)
      expect(p).toBeLessThan(partitions)
      expect(p).toBe(referencePartition(key, partitions))
      expect(partitionForKey(key, partitions)).toBe(p)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("uses the sign-masked hash (toPositive), not Math.abs", () => {
    // murmur2("foobar") is negative: Kafka masks the sign bit rather than negating.
    expect(partitionForKey("foobar", 1_000_000_007)).toBe((-790332482 & 0x7fffffff) % 1_000_000_007)
    expect(partitionForKey("21", 12)).toBe((-973932308 & 0x7fffffff) % 12)
  })

  it("one partition is always partition 0", () => {
    for (const key of ["", "a", "0:general", "1:dm-a-b"]) expect(partitionForKey(key, 1)).toBe(0)
  })
})

describe("partitionForScope", () => {
  it.prop(
    "a scope always maps to the same partition, in range, using the key {scopeType}:{scopeId}",
    {
      scopeType: ChatScopeType,
      scopeId: FastCheck.oneof(FastCheck.string(), FastCheck.string({ unit: "grapheme" })),
      partitions: FastCheck.integer({ min: 1, max: 1024 })
    },
    ({ partitions, scopeId, scopeType }) => {
      const first = partitionForScope({ scopeType, scopeId }, partitions)
      const second = partitionForScope({ scopeType, scopeId }, partitions)
      expect(second).toBe(first)
      expect(first).toBeGreaterThanOrEqual(0)
      expect(first).toBeLessThan(partitions)
      expect(first).toBe(partitionForKey(`${scopeType}:${scopeId}`, partitions))
      expect(first).toBe(referencePartition(`${scopeType}:${scopeId}`, partitions))
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("scopeKey is {scopeType}:{scopeId}", () => {
    expect(scopeKey({ scopeType: 0, scopeId: "general" })).toBe("0:general")
    expect(scopeKey({ scopeType: 1, scopeId: "alice:bob" })).toBe("1:alice:bob")
  })

  it("a channel and a direct message with the same id are different keys", () => {
    expect(murmur2(scopeKey({ scopeType: 0, scopeId: "general" }))).toBe(referenceMurmur2("0:general"))
    expect(murmur2(scopeKey({ scopeType: 1, scopeId: "general" }))).toBe(referenceMurmur2("1:general"))
    expect(murmur2("0:general")).not.toBe(murmur2("1:general"))
  })
})
