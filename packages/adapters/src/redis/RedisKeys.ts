/**
 * Key names, without the client's prefix, in the original design's shapes. Ids go in verbatim: each
 * kind of key has its own fixed head and tail, so two different ids (colons or not) never share a key.
 */
export const RedisKeys = {
  /** INCR counter of a user's sends in the current window (original: `user:{userId}:ratelimit:60s`). */
  rateLimit: (userId: string, windowSeconds: number): string => `user:${userId}:ratelimit:${windowSeconds}s`,
  /**
   * INCR counter of a user's reads (Subscribe, History, Presence) in the current window: the send
   * counter's shape with a tail of its own, so reads and sends never count in one key.
   */
  readRateLimit: (userId: string, windowSeconds: number): string => `user:${userId}:readlimit:${windowSeconds}s`,
  /** The original's per-user presence marker: `{podId}:{connectionId}`. */
  userPresence: (userId: string): string => `user:${userId}:presence`,
  /** Sorted set of a scope's connection ids, scored by expiry (epoch ms, Redis server time). */
  scopeConnections: (scopeKey: string): string => `presence:${scopeKey}:connections`,
  /** Hash connection id → user id of a scope; always changed together with scopeConnections. */
  scopeUsers: (scopeKey: string): string => `presence:${scopeKey}:users`,
  /** The original's pod registration: `pod:{podName}:identity`, JSON metadata, with a TTL. */
  podIdentity: (podId: string): string => `pod:${podId}:identity`,
  /**
   * Hash of a send by clientMessageId (see RedisSendDeduplicator), for the idempotency window. Two
   * ids in one key: the sender's length goes first, so no two (sender, clientMessageId) share a key.
   */
  sentMessage: (senderId: string, clientMessageId: string): string =>
    `send:${senderId.length}:${senderId}:${clientMessageId}`
} as const

/** A SCAN MATCH pattern that matches `literal` only, whatever glob characters it holds. */
export const escapeGlob = (literal: string): string => literal.replace(/[*?[\]\\]/g, (c) => `\\${c}`)

/** The SCAN MATCH pattern of every pod registration under a prefix. */
export const podIdentityPattern = (keyPrefix: string): string => `${escapeGlob(keyPrefix)}pod:*:identity`
