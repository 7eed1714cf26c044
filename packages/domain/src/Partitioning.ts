import type { ScopeRef } from "./ChatEvent.js"
import { scopeKey } from "./ChatEvent.js"

const SEED = 0x9747b28c
const M = 0x5bd1e995
const encoder = new TextEncoder()

/**
 * Kafka's murmur2 (the Java client's and kafkajs's default partitioner), so the embedded log and a
 * real Kafka place a scope on the same partition.
 */
export const murmur2 = (key: string): number => {
  const data = encoder.encode(key)
  const length = data.length
  let h = SEED ^ length
  const whole = length & ~3
  for (let i = 0; i < whole; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)
    k = Math.imul(k, M)
    k ^= k >>> 24
    k = Math.imul(k, M)
    h = Math.imul(h, M)
    h ^= k
  }
  const tail = length & 3
  if (tail === 3) h ^= data[whole + 2]! << 16
  if (tail >= 2) h ^= data[whole + 1]! << 8
  if (tail >= 1) {
    h ^= data[whole]!
    h = Math.imul(h, M)
  }
  h ^= h >>> 13
  h = Math.imul(h, M)
  h ^= h >>> 15
  return h | 0
}

/** The partition of a broker key, as Kafka's default partitioner picks it. */
export const partitionForKey = (key: string, partitions: number): number => (murmur2(key) & 0x7fffffff) % partitions

export const partitionForScope = (scope: ScopeRef, partitions: number): number =>
  partitionForKey(scopeKey(scope), partitions)
