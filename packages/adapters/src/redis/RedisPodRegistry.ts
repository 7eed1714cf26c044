import { hostname } from "node:os"
import { Context, Duration, Effect, Layer, Option, Schedule, Schema } from "effect"
import { PodIdentity } from "@chatify/core"
import type { DependencyUnavailable } from "@chatify/domain"
import { RedisClient } from "./RedisClient.js"
import { podIdentityPattern, RedisKeys } from "./RedisKeys.js"

/** What a pod says about itself under `pod:{podName}:identity`. */
export const PodRecord = Schema.Struct({
  podId: Schema.String,
  startedAt: Schema.String,
  host: Schema.String
})
export type PodRecord = typeof PodRecord.Type

const PodRecordJson = Schema.parseJson(PodRecord)

export interface RedisPodRegistryOptions {
  /** Lifetime of the registration without a refresh; defaults to 3600 s, as in the original. */
  readonly ttlSeconds?: number | undefined
  /** Defaults to the OS host name. */
  readonly host?: string | undefined
}

/** This pod's registration in Redis and the pods registered there. */
export class PodRegistry extends Context.Tag("chatify/redis/PodRegistry")<PodRegistry, {
  readonly self: PodRecord
  /** Writes (or rewrites) this pod's registration with a fresh TTL. */
  readonly register: Effect.Effect<void, DependencyUnavailable>
  /** Every pod registered under this prefix right now, by podId. */
  readonly livePods: Effect.Effect<ReadonlyArray<PodRecord>, DependencyUnavailable>
}>() {}

const DEFAULT_TTL_SECONDS = 3_600

/** Deletes the key only while it still holds our record: a successor of the same name keeps its own. */
const DELETE_IF_OURS = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`

/**
 * Registers the pod at start, refreshes it every ttl/3 and deletes it when the scope closes.
 * Registration never blocks startup: while Redis is away the refresh keeps trying, with a warning.
 */
export const RedisPodRegistry = (
  options: RedisPodRegistryOptions = {}
): Layer.Layer<PodRegistry, never, RedisClient | PodIdentity> =>
  Layer.scoped(
    PodRegistry,
    Effect.gen(function*() {
      const client = yield* RedisClient
      const { podId } = yield* PodIdentity
      const ttlSeconds = Math.max(1, Math.ceil(options.ttlSeconds ?? DEFAULT_TTL_SECONDS))
      const self: PodRecord = { podId, startedAt: new Date().toISOString(), host: options.host ?? hostname() }
      const key = client.key(RedisKeys.podIdentity(podId))
      const value = JSON.stringify(self)
      const deleteIfOurs = client.script(DELETE_IF_OURS)

      const register = Effect.asVoid(
        client.use(`registering pod ${podId}`, (redis) => redis.set(key, value, "EX", ttlSeconds))
      )

      const scanKeys = Effect.gen(function*() {
        const keys = new Set<string>()
        let cursor = "0"
        do {
          const [next, batch] = yield* client.use(
            "listing pods",
            (redis) => redis.scan(cursor, "MATCH", podIdentityPattern(client.keyPrefix), "COUNT", 200)
          )
          for (const k of batch) keys.add(k) // SCAN may return a key twice
          cursor = next
        } while (cursor !== "0")
        return Array.from(keys)
      })

      const livePods = Effect.gen(function*() {
        const keys = yield* scanKeys
        if (keys.length === 0) return []
        const values = yield* client.use("reading pods", (redis) => redis.mget(...keys))
        // a key may expire between SCAN and MGET, and foreign values are skipped rather than fatal
        return values
          .flatMap((raw) => raw === null ? [] : Option.toArray(Schema.decodeUnknownOption(PodRecordJson)(raw)))
          .sort((a, b) => (a.podId < b.podId ? -1 : a.podId > b.podId ? 1 : 0))
      })

      const warn = (error: DependencyUnavailable) => Effect.logWarning(`Pod registration: ${error.message}`)

      yield* Effect.acquireRelease(
        Effect.catchAll(register, warn),
        () =>
          deleteIfOurs([key], [value]).pipe(
            Effect.catchAll((error) => Effect.logWarning(`Pod deregistration: ${error.message}; it expires by TTL`))
          )
      )
      // a third of the TTL: two refreshes may fail before the registration lapses
      const every = Duration.millis(Math.max(1_000, Math.floor((ttlSeconds * 1000) / 3)))
      // Effect.schedule waits before each run: the first refresh comes one interval after registering
      yield* Effect.catchAll(register, warn).pipe(Effect.schedule(Schedule.spaced(every)), Effect.forkScoped)

      return { self, register, livePods }
    })
  )
