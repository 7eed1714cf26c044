import { Effect, Layer, Schema } from "effect"
import { Presence, traced } from "@chatify/core"
import type { PresentUser } from "@chatify/domain"
import { RedisClient, redisUnavailable } from "./RedisClient.js"
import { RedisKeys } from "./RedisKeys.js"

export interface RedisPresenceOptions {
  readonly ttlMillis: number
  /**
   * When set, `track` also writes the original's `user:{userId}:presence` = `{podId}:{connectionId}`
   * with the same TTL (last connection wins; left to expire), for tools that read the old layout.
   */
  readonly podId?: string | undefined
}

/*
 * Every script reads the clock with redis.call('TIME'): expiries written by one pod and checked by
 * another compare on one clock, whatever the pods' clocks say. KEYS[1] is the scope's sorted set
 * (connection id scored by expiry, epoch ms), KEYS[2] its hash connection id → user id; the two are
 * only ever changed together, inside a script.
 */
const NOW = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
`

// Expired connections leave in chunks: unpack() of an unbounded list could overflow Lua's stack.
const PRUNE = `
local function prune(limit)
  while true do
    local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 500)
    if #expired == 0 then return end
    redis.call('ZREM', KEYS[1], unpack(expired))
    redis.call('HDEL', KEYS[2], unpack(expired))
    limit = limit - #expired
    if limit <= 0 then return end
  end
end
`

/**
 * ARGV: connection id, user id, ttl ms[, user key value]; KEYS[3]: the per-user key, when written.
 * Prunes a little on every call, so a busy scope nobody asks about does not grow without bound.
 */
const TRACK = `${NOW}${PRUNE}
prune(500)
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
-- the scope lives as long as its latest expiry, so an abandoned scope vanishes by itself
local latest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local keep = math.max(1, tonumber(latest[2]) - now)
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
if KEYS[3] then
  redis.call('SET', KEYS[3], ARGV[4], 'PX', ttl)
end
return 1
`

/** ARGV: connection id. */
const UNTRACK = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`

/** Drops what has expired, then returns the user id of every live connection (one per connection). */
const ONLINE = `${NOW}${PRUNE}
prune(math.huge)
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local users = {}
for i = 1, #live, 500 do
  local chunk = redis.call('HMGET', KEYS[2], unpack(live, i, math.min(i + 499, #live)))
  for _, user in ipairs(chunk) do
    if user then users[#users + 1] = user end
  end
end
return users
`

const OnlineReply = Schema.Array(Schema.String)

const byUserId = (a: PresentUser, b: PresentUser) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0)

/**
 * Presence across pods: a connection is present until `ttlMillis` after its last `track`
 * (PresenceHeartbeat re-tracks every ttl/3). An outage fails each call with DependencyUnavailable;
 * sends never call presence and the heartbeat ignores failures, so only presence reads degrade.
 */
export const RedisPresence = (options: RedisPresenceOptions): Layer.Layer<Presence, never, RedisClient> =>
  Layer.effect(
    Presence,
    Effect.gen(function*() {
      const client = yield* RedisClient
      const track = client.script(TRACK)
      const untrack = client.script(UNTRACK)
      const online = client.script(ONLINE)
      const scopeKeys = (scopeKey: string) => [
        client.key(RedisKeys.scopeConnections(scopeKey)),
        client.key(RedisKeys.scopeUsers(scopeKey))
      ]
      const podId = options.podId
      return {
        ttlMillis: options.ttlMillis,
        track: traced("RedisPresence.track")((scopeKey: string, userId: string, connectionId: string) =>
          Effect.asVoid(
            podId === undefined
              ? track(scopeKeys(scopeKey), [connectionId, userId, options.ttlMillis])
              : track(
                [...scopeKeys(scopeKey), client.key(RedisKeys.userPresence(userId))],
                [connectionId, userId, options.ttlMillis, `${podId}:${connectionId}`]
              )
          )
        ),
        untrack: traced("RedisPresence.untrack")((scopeKey: string, connectionId: string) =>
          Effect.asVoid(untrack(scopeKeys(scopeKey), [connectionId]))
        ),
        online: traced("RedisPresence.online")((scopeKey: string) =>
          online(scopeKeys(scopeKey), []).pipe(
            Effect.flatMap((reply) =>
              Schema.decodeUnknown(OnlineReply)(reply).pipe(
                Effect.mapError(redisUnavailable("unexpected presence script reply"))
              )
            ),
            Effect.map((userIds) => {
              const counts = new Map<string, number>()
              for (const userId of userIds) counts.set(userId, (counts.get(userId) ?? 0) + 1)
              return Array.from(counts, ([userId, connections]): PresentUser => ({ userId, connections })).sort(
                byUserId
              )
            })
          )
        )
      }
    })
  )
