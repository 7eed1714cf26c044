/** Remembers the most recently seen message ids, forgetting the least recently seen beyond its capacity. */
export interface MessageIdLru {
  /** True the first time an id is offered (while it is remembered), false for a repeat. */
  readonly firstSeen: (messageId: string) => boolean
  readonly size: () => number
}

export const DEFAULT_DEDUPE_CAPACITY = 10_000

/**
 * A Map keeps insertion order, so re-inserting on a hit makes its first key the least recently
 * seen: eviction is O(1) without a linked list.
 */
export const makeMessageIdLru = (capacity: number = DEFAULT_DEDUPE_CAPACITY): MessageIdLru => {
  // A capacity below one would remember nothing and let every repeat through.
  const bound = Math.max(1, Math.floor(Number.isFinite(capacity) ? capacity : DEFAULT_DEDUPE_CAPACITY))
  const ids = new Map<string, true>()
  return {
    firstSeen: (messageId) => {
      if (ids.has(messageId)) {
        ids.delete(messageId)
        ids.set(messageId, true)
        return false
      }
      ids.set(messageId, true)
      if (ids.size > bound) {
        const oldest = ids.keys().next()
        if (oldest.done !== true) ids.delete(oldest.value)
      }
      return true
    },
    size: () => ids.size
  }
}
