import { Clock, Effect, Either, Layer, Metric, Ref } from "effect"
import { DEFAULT_SEND_CLAIM_LEASE_MILLIS, type SendClaim, SendDeduplicator, type SendKey, traced } from "@chatify/core"
import {
  type ChatEvent,
  decodeChatEventJson,
  type DependencyUnavailable,
  encodeChatEventJson,
  EnrichedChatEvent
} from "@chatify/domain"
import { RedisClient, redisUnavailable } from "./RedisClient.js"
import { RedisKeys } from "./RedisKeys.js"

export interface RedisSendDeduplicatorOptions {
  /** How long a send is remembered (from its first claim, and again from its completion). */
  readonly windowSeconds: number
  /** How long a claim holds (see DEFAULT_SEND_CLAIM_LEASE_MILLIS). */
  readonly leaseMillis?: number | undefined
  /**
   * When Redis cannot answer: true (the default) sends without de-duplication, with a warning at
   * most every 10 s, as the rate limiter fails open; false fails the send with DependencyUnavailable.
   */
  readonly failOpen?: boolean | undefined
}

/*
 * One hash per key (RedisKeys.sentMessage): `event`, the first attempt's ChatEvent JSON; `owner` and
 * `lease` (epoch ms, Redis server time), the claim; `partition` and `offset` once the send
 * completed: then `event` is the EnrichedChatEvent's event, and the hash is the send's result. The
 * key expires with the window (PEXPIRE, from the first claim, again from completion): the
 * `SET key value NX PX window` of a plain result, with room for the pending claim before it.
 */
const NOW = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
`

/**
 * ARGV: owner (the candidate's messageId), the candidate's JSON, lease ms, window ms. Replies
 * {'claimed'} (the candidate's now), {'claimed', event} (an earlier attempt's, taken over),
 * {'sent', event, partition, offset} or {'pending'}.
 */
const CLAIM = `${NOW}
local record = redis.call('HMGET', KEYS[1], 'event', 'lease', 'partition', 'offset')
if record[1] then
  if record[4] then return { 'sent', record[1], record[3], record[4] } end
  if tonumber(record[2]) > now then return { 'pending' } end
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'lease', now + tonumber(ARGV[3]))
  return { 'claimed', record[1] }
end
redis.call('HSET', KEYS[1], 'event', ARGV[2], 'owner', ARGV[1], 'lease', now + tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return { 'claimed' }
`

/** ARGV: the event's JSON, partition, offset, window ms. The first result stays. */
const COMPLETE = `
if redis.call('HEXISTS', KEYS[1], 'offset') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'event', ARGV[1], 'partition', ARGV[2], 'offset', ARGV[3])
redis.call('HDEL', KEYS[1], 'owner', 'lease')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`

/** ARGV: owner. Ends the lease (keeping the event) if this owner still holds an uncompleted claim. */
const RELEASE = `
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] and redis.call('HEXISTS', KEYS[1], 'offset') == 0 then
  redis.call('HSET', KEYS[1], 'lease', 0)
  return 1
end
return 0
`

/** Every send whose clientMessageId went unchecked because Redis was unavailable, in this process. */
export const sendDeduplicatorFailOpenTotal = Metric.counter("chatify_send_deduplicator_fail_open_total", {
  description: "Sends with a clientMessageId produced without de-duplication because Redis was unavailable",
  incremental: true
})

const FAIL_OPEN_WARNING_INTERVAL_MILLIS = 10_000

const isCount = (value: unknown): value is string | number =>
  (typeof value === "string" || typeof value === "number") && Number.isSafeInteger(Number(value)) && Number(value) >= 0

/**
 * SendDeduplicator shared by every pod through Redis: each operation is one script, so a claim is
 * atomic across pods. Redis down fails open by default (see `failOpen`): sends go on, repeats
 * during the outage are not recognized.
 */
export const RedisSendDeduplicator = (
  options: RedisSendDeduplicatorOptions
): Layer.Layer<SendDeduplicator, never, RedisClient> =>
  Layer.effect(
    SendDeduplicator,
    Effect.gen(function*() {
      const client = yield* RedisClient
      const claimScript = client.script(CLAIM)
      const completeScript = client.script(COMPLETE)
      const releaseScript = client.script(RELEASE)
      const windowMillis = options.windowSeconds * 1000
      const leaseMillis = options.leaseMillis ?? DEFAULT_SEND_CLAIM_LEASE_MILLIS
      const keyOf = (key: SendKey) => [client.key(RedisKeys.sentMessage(key.senderId, key.clientMessageId))]
      const unexpected = redisUnavailable("unexpected send de-duplication script reply")
      // one warning per 10 s of outage, saying how many operations went unchecked meanwhile
      const lastWarning = yield* Ref.make({ atMillis: Number.NEGATIVE_INFINITY, unwarned: 0 })

      const failingOpen = <A>(fallback: A) => (error: DependencyUnavailable) =>
        Effect.gen(function*() {
          yield* Metric.increment(sendDeduplicatorFailOpenTotal)
          const now = yield* Clock.currentTimeMillis
          const unwarned = yield* Ref.modify(lastWarning, (last) =>
            now - last.atMillis >= FAIL_OPEN_WARNING_INTERVAL_MILLIS
              ? [last.unwarned + 1, { atMillis: now, unwarned: 0 }]
              : [0, { ...last, unwarned: last.unwarned + 1 }])
          if (unwarned > 0) {
            yield* Effect.logWarning(
              `Send de-duplication fails open: ${error.message}; ${unwarned} operation(s) unchecked since the last warning`
            )
          }
          return fallback
        })
      const guarded = <A>(effect: Effect.Effect<A, DependencyUnavailable>, fallback: A) =>
        options.failOpen === false ? effect : Effect.catchAll(effect, failingOpen(fallback))

      const decodeEvent = (json: unknown): Either.Either<ChatEvent, DependencyUnavailable> =>
        typeof json === "string"
          ? Either.mapLeft(decodeChatEventJson(json), (error) => unexpected(error.message))
          : Either.left(unexpected(JSON.stringify(json)))

      const claimed = (candidate: ChatEvent) => (reply: unknown): Either.Either<SendClaim, DependencyUnavailable> => {
        if (!Array.isArray(reply)) return Either.left(unexpected(JSON.stringify(reply)))
        const [state, event, partition, offset] = reply as ReadonlyArray<unknown>
        switch (state) {
          case "pending":
            return Either.right({ _tag: "InProgress" })
          case "claimed":
            return event === undefined
              ? Either.right({ _tag: "Claimed", event: candidate })
              : Either.map(decodeEvent(event), (earlier) => ({ _tag: "Claimed", event: earlier }))
          case "sent":
            if (!isCount(partition) || !isCount(offset)) return Either.left(unexpected(JSON.stringify(reply)))
            return Either.map(decodeEvent(event), (chatEvent) => ({
              _tag: "Sent",
              sent: new EnrichedChatEvent({ chatEvent, partition: Number(partition), offset: Number(offset) }, true)
            }))
          default:
            return Either.left(unexpected(JSON.stringify(reply)))
        }
      }

      const encoded = (event: ChatEvent) =>
        Either.mapLeft(encodeChatEventJson(event), (error) => unexpected(error.message))

      return SendDeduplicator.of({
        claim: traced("RedisSendDeduplicator.claim")((key: SendKey, candidate: ChatEvent) =>
          guarded(
            Effect.flatMap(encoded(candidate), (json) =>
              Effect.flatMap(
                claimScript(keyOf(key), [candidate.messageId, json, leaseMillis, windowMillis]),
                claimed(candidate)
              )),
            { _tag: "Claimed", event: candidate }
          )
        ),
        complete: traced("RedisSendDeduplicator.complete")((key: SendKey, sent: EnrichedChatEvent) =>
          guarded(
            Effect.flatMap(
              encoded(sent.chatEvent),
              (json) => Effect.asVoid(completeScript(keyOf(key), [json, sent.partition, sent.offset, windowMillis]))
            ),
            undefined
          )
        ),
        release: traced("RedisSendDeduplicator.release")((key: SendKey, owner: string) =>
          guarded(Effect.asVoid(releaseScript(keyOf(key), [owner])), undefined)
        )
      })
    })
  )
