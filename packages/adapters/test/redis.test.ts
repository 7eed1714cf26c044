import { type ChildProcess, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import type { Redis } from "ioredis"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, FastCheck, Layer, Logger, Metric, Schedule } from "effect"
import { PodIdentity, Presence, PresenceHeartbeat, RateLimiter, ReadRateLimiter, SendDeduplicator } from "@chatify/core"
import { DependencyUnavailable } from "@chatify/domain"
import {
  makeRedisClient,
  PodRegistry,
  RedisClient,
  type RedisClientOptions,
  RedisKeys,
  RedisPodRegistry,
  RedisPresence,
  RedisRateLimiter,
  rateLimiterFailOpenTotal,
  readRateLimiterFailOpenTotal,
  RedisRateLimiterStats,
  RedisReadRateLimiter,
  RedisSendDeduplicator
} from "../src/redis/index.js"
import { presenceContract } from "./contracts/PresenceContract.js"
import { rateLimiterContract } from "./contracts/RateLimiterContract.js"
import { readRateLimiterContract } from "./contracts/ReadRateLimiterContract.js"
import { candidateEvent, sendDeduplicatorContract } from "./contracts/SendDeduplicatorContract.js"
import { endpoints, ensureService } from "./support/services.js"
import { freeLoopbackPort } from "./support/ports.js"

beforeAll(() => ensureService("redis"))

const url = `redis://${endpoints.redis}`
/** Every test writes under its own prefix, so test files and runs never see each other's keys. */
const freshPrefix = () => `chatify-test:${randomUUID()}:`

const client = (options: Partial<RedisClientOptions> = {}) =>
  RedisClient.layer({ url, keyPrefix: freshPrefix(), connectTimeoutMillis: 500, ...options })

/**
 * A port nothing can listen on: a connection to port 0 is refused at once. (A free port grabbed and
 * released could be taken by anything running meanwhile, and the "unreachable" Redis would answer.)
 */
const unusedPort = Effect.succeed(0)

/** For a redis-server of a test's own that is stopped and started again on it (see freeLoopbackPort). */
const restartablePort: Effect.Effect<number> = Effect.promise(freeLoopbackPort)

const unreachable = (port: number) =>
  RedisClient.layer({
    host: "127.0.0.1",
    port,
    connectTimeoutMillis: 300,
    maxReconnectDelayMillis: 200
  })

/** Reads Redis behind the adapters' back. */
const inspect = <A>(read: (redis: Redis) => Promise<A>) =>
  Effect.scoped(Effect.flatMap(makeRedisClient({ url }), (raw) => raw.use("inspect", read)))

const expectRedisUnavailable = <A, E>(exit: Exit.Exit<A, E>) => {
  expect(Exit.isFailure(exit)).toBe(true)
  if (Exit.isFailure(exit)) {
    const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
    expect(error).toBeInstanceOf(DependencyUnavailable)
    if (error instanceof DependencyUnavailable) expect(error.dependency).toBe("redis")
  }
}

/** Log lines at warning level, captured instead of printed. */
const captureWarnings = () => {
  const lines: Array<string> = []
  const layer = Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning") lines.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
  )
  return { lines, layer }
}

// ---------------------------------------------------------------------------------------------------
// Port contracts against the real server (real time: a window of 1 s where one must pass, else an
// hour; presence TTL of 1.5 s)

rateLimiterContract("redis", {
  makeLayer: (windowSeconds) =>
    RedisRateLimiter({ limit: 5, windowSeconds, failOpen: false }).pipe(Layer.provide(client())),
  limit: 5,
  windowSeconds: 1,
  advance: (d) => Effect.sleep(d),
  live: true
})

// the read and the send limiter on one client and key prefix, as a server runs them
readRateLimiterContract("redis", {
  makeLayer: (windowSeconds) =>
    Layer.merge(
      RedisReadRateLimiter({ limit: 5, windowSeconds, failOpen: false }),
      RedisRateLimiter({ limit: 5, windowSeconds, failOpen: false })
    ).pipe(Layer.provide(client())),
  limit: 5,
  windowSeconds: 1,
  advance: (d) => Effect.sleep(d),
  live: true
})

presenceContract("redis", {
  makeLayer: () => RedisPresence({ ttlMillis: 1_500 }).pipe(Layer.provide(client())),
  advance: (d) => Effect.sleep(d),
  live: true
})

sendDeduplicatorContract("redis", {
  makeLayer: (settings) => RedisSendDeduplicator({ ...settings, failOpen: false }).pipe(Layer.provide(client())),
  advance: (d) => Effect.sleep(d),
  live: true
})

// ---------------------------------------------------------------------------------------------------

describe("RedisClient", () => {
  it.live("answers PING and quits its connection when the scope closes", () =>
    Effect.gen(function*() {
      const service = yield* Effect.scoped(
        Effect.gen(function*() {
          const service = yield* makeRedisClient({ url, keyPrefix: freshPrefix() })
          yield* service.ping
          expect(service.redis.status).toBe("ready")
          return service
        })
      )
      expect(service.redis.status).toBe("end")
    }))

  it.live("starts while Redis is unreachable and fails fast with DependencyUnavailable", () =>
    Effect.gen(function*() {
      const port = yield* unusedPort
      const started = Date.now()
      const exit = yield* Effect.exit(
        Effect.flatMap(RedisClient, (c) => c.ping).pipe(Effect.provide(unreachable(port)))
      )
      expectRedisUnavailable(exit)
      expect(Date.now() - started).toBeLessThan(2_000)
    }))
})

describe("RedisRateLimiter", () => {
  it.scopedLive("shares one limit between pods: sends spread over two connections are counted once", () =>
    Effect.gen(function*() {
      const keyPrefix = freshPrefix()
      const pod = () =>
        Layer.build(
          RedisRateLimiter({ limit: 5, windowSeconds: 60, failOpen: false }).pipe(
            Layer.provide(RedisClient.layer({ url, keyPrefix }))
          )
        )
      const podA = Context.get(yield* pod(), RateLimiter)
      const podB = Context.get(yield* pod(), RateLimiter)
      const alice = `alice-${randomUUID()}`
      const decisions = yield* Effect.forEach(
        Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? podA : podB)),
        (limiter) => limiter.checkAndIncrement(alice),
        { concurrency: "unbounded" }
      )
      expect(decisions.filter((d) => d.allowed)).toHaveLength(5)
      expect(decisions.filter((d) => !d.allowed).every((d) => d.retryAfterSeconds >= 1)).toBe(true)

      // the original's key shape, under the prefix, with the window as its TTL
      const key = `${keyPrefix}user:${alice}:ratelimit:60s`
      const [count, ttl] = yield* inspect((redis) => Promise.all([redis.get(key), redis.pttl(key)]))
      expect(count).toBe("10")
      expect(ttl).toBeGreaterThan(55_000)
      expect(ttl).toBeLessThanOrEqual(60_000)
    }))

  it.live("fails open when Redis is unreachable: allows, warns once, counts every unchecked send", () =>
    Effect.gen(function*() {
      const port = yield* unusedPort
      const warnings = captureWarnings()
      const before = (yield* Metric.value(rateLimiterFailOpenTotal)).count
      const decisions = yield* Effect.gen(function*() {
        const limiter = yield* RateLimiter
        const decisions = yield* Effect.forEach(Array.from({ length: 3 }), () => limiter.checkAndIncrement("alice"))
        expect(yield* (yield* RedisRateLimiterStats).failOpenCount).toBe(3)
        return decisions
      }).pipe(
        Effect.provide(
          RedisRateLimiter({ limit: 1, windowSeconds: 60, failOpen: true }).pipe(
            Layer.provide(unreachable(port))
          )
        ),
        Effect.provide(warnings.layer)
      )
      expect(decisions.every((d) => d.allowed)).toBe(true)
      expect(decisions[0]).toEqual({ allowed: true, limit: 1, remaining: 0, windowSeconds: 60, retryAfterSeconds: 0 })
      expect((yield* Metric.value(rateLimiterFailOpenTotal)).count - before).toBe(3)
      // one warning per outage interval, not one per send
      expect(warnings.lines.filter((line) => line.includes("fails open"))).toHaveLength(1)
    }))

  it.live("fails closed when configured to: DependencyUnavailable", () =>
    Effect.gen(function*() {
      const port = yield* unusedPort
      const exit = yield* Effect.exit(
        Effect.flatMap(RateLimiter, (limiter) => limiter.checkAndIncrement("alice")).pipe(
          Effect.provide(
            RedisRateLimiter({ limit: 1, windowSeconds: 60, failOpen: false }).pipe(
              Layer.provide(unreachable(port))
            )
          )
        )
      )
      expectRedisUnavailable(exit)
    }))

  it.scopedLive("limits again once Redis comes back after an outage (ioredis reconnects)", () =>
    Effect.gen(function*() {
      const port = yield* restartablePort
      const start = Effect.acquireRelease(
        Effect.sync(() =>
          spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
            stdio: "ignore"
          })
        ),
        (server: ChildProcess) => Effect.sync(() => server.kill("SIGKILL"))
      )
      const stop = (server: ChildProcess) =>
        Effect.async<void>((resume) => {
          server.once("exit", () => resume(Effect.void))
          server.kill("SIGKILL")
        })
      const first = yield* start
      const context = yield* Layer.build(
        RedisRateLimiter({ limit: 1, windowSeconds: 60, failOpen: true }).pipe(
          Layer.provideMerge(RedisClient.layer({ host: "127.0.0.1", port, maxReconnectDelayMillis: 100 }))
        )
      )
      const limiter = Context.get(context, RateLimiter)
      const stats = Context.get(context, RedisRateLimiterStats)
      const ready = Context.get(context, RedisClient).ping.pipe(
        Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 50 })
      )
      yield* ready
      expect((yield* limiter.checkAndIncrement("alice")).allowed).toBe(true)
      expect((yield* limiter.checkAndIncrement("alice")).allowed).toBe(false)

      yield* stop(first)
      expect((yield* limiter.checkAndIncrement("alice")).allowed).toBe(true)
      expect(yield* stats.failOpenCount).toBe(1)

      yield* start
      yield* ready
      // the new server has no data: a fresh window, limited again
      expect((yield* limiter.checkAndIncrement("alice")).allowed).toBe(true)
      expect((yield* limiter.checkAndIncrement("alice")).allowed).toBe(false)
      expect(yield* stats.failOpenCount).toBe(1)
    }))
})

describe("RedisReadRateLimiter", () => {
  it.scopedLive("shares one read limit between pods, in a key of its own beside the send counter", () =>
    Effect.gen(function*() {
      const keyPrefix = freshPrefix()
      const pod = () =>
        Layer.build(
          Layer.merge(
            RedisReadRateLimiter({ limit: 5, windowSeconds: 60, failOpen: false }),
            RedisRateLimiter({ limit: 5, windowSeconds: 60, failOpen: false })
          ).pipe(Layer.provide(RedisClient.layer({ url, keyPrefix })))
        )
      const podA = yield* pod()
      const podB = yield* pod()
      const alice = `alice-${randomUUID()}`
      const decisions = yield* Effect.forEach(
        Array.from({ length: 8 }, (_, i) => Context.get(i % 2 === 0 ? podA : podB, ReadRateLimiter)),
        (limiter) => limiter.checkAndIncrement(alice),
        { concurrency: "unbounded" }
      )
      expect(decisions.filter((d) => d.allowed)).toHaveLength(5)
      expect(decisions.filter((d) => !d.allowed).every((d) => d.retryAfterSeconds >= 1)).toBe(true)
      // one send: its own counter, with the whole window left
      expect(yield* Context.get(podA, RateLimiter).checkAndIncrement(alice)).toMatchObject({
        allowed: true,
        remaining: 4
      })

      const readKey = `${keyPrefix}user:${alice}:readlimit:60s`
      const sendKey = `${keyPrefix}user:${alice}:ratelimit:60s`
      const [reads, readTtl, sends] = yield* inspect((redis) =>
        Promise.all([redis.get(readKey), redis.pttl(readKey), redis.get(sendKey)])
      )
      expect(reads).toBe("8")
      expect(readTtl).toBeGreaterThan(55_000)
      expect(readTtl).toBeLessThanOrEqual(60_000)
      expect(sends).toBe("1")
    }))

  it.live("fails open when Redis is unreachable, on its own metric and warning; closed when configured to", () =>
    Effect.gen(function*() {
      const port = yield* unusedPort
      const warnings = captureWarnings()
      const readsBefore = (yield* Metric.value(readRateLimiterFailOpenTotal)).count
      const sendsBefore = (yield* Metric.value(rateLimiterFailOpenTotal)).count
      const decisions = yield* Effect.flatMap(
        ReadRateLimiter,
        (limiter) => Effect.forEach(Array.from({ length: 3 }), () => limiter.checkAndIncrement("alice"))
      ).pipe(
        Effect.provide(
          RedisReadRateLimiter({ limit: 1, windowSeconds: 60, failOpen: true }).pipe(
            Layer.provide(unreachable(port))
          )
        ),
        Effect.provide(warnings.layer)
      )
      expect(decisions.every((d) => d.allowed)).toBe(true)
      expect((yield* Metric.value(readRateLimiterFailOpenTotal)).count - readsBefore).toBe(3)
      expect((yield* Metric.value(rateLimiterFailOpenTotal)).count - sendsBefore).toBe(0)
      expect(warnings.lines.filter((line) => line.startsWith("Read rate limiter fails open"))).toHaveLength(1)
      // the first unchecked read warns at once; the next two wait for the next interval's warning
      expect(warnings.lines.some((line) => line.includes("1 read(s) allowed unchecked"))).toBe(true)

      const exit = yield* Effect.exit(
        Effect.flatMap(ReadRateLimiter, (limiter) => limiter.checkAndIncrement("alice")).pipe(
          Effect.provide(
            RedisReadRateLimiter({ limit: 1, windowSeconds: 60, failOpen: false }).pipe(
              Layer.provide(unreachable(port))
            )
          )
        )
      )
      expectRedisUnavailable(exit)
    }))
})

describe("RedisPresence", () => {
  it.scopedLive("is shared across pods, expires abandoned scopes, and writes the original's user key", () =>
    Effect.gen(function*() {
      const keyPrefix = freshPrefix()
      const pod = (podId: string) =>
        Layer.build(
          RedisPresence({ ttlMillis: 1_000, podId }).pipe(Layer.provide(RedisClient.layer({ url, keyPrefix })))
        )
      const podA = Context.get(yield* pod("pod-a"), Presence)
      const podB = Context.get(yield* pod("pod-b"), Presence)
      const scope = `0:general-${randomUUID()}`
      yield* podA.track(scope, "alice", "c1")
      yield* podB.track(scope, "bob", "c2")
      yield* podB.track(scope, "alice", "c3")
      expect(yield* podB.online(scope)).toEqual([{ userId: "alice", connections: 2 }, {
        userId: "bob",
        connections: 1
      }])
      expect(yield* podA.online(scope)).toEqual(yield* podB.online(scope))

      const connections = `${keyPrefix}presence:${scope}:connections`
      const users = `${keyPrefix}presence:${scope}:users`
      const userKey = `${keyPrefix}user:bob:presence`
      const [ttlConnections, ttlUsers, bobValue, ttlBob] = yield* inspect((redis) =>
        Promise.all([redis.pttl(connections), redis.pttl(users), redis.get(userKey), redis.pttl(userKey)])
      )
      for (const ttl of [ttlConnections, ttlUsers, ttlBob]) {
        expect(ttl).toBeGreaterThan(0)
        expect(ttl).toBeLessThanOrEqual(1_000)
      }
      expect(bobValue).toBe("pod-b:c2")

      // nobody untracks and nobody asks: the scope's keys vanish on their own, soon after their TTL
      const remaining = yield* inspect((redis) => redis.exists(connections, users, userKey)).pipe(
        Effect.repeat({ until: (n) => n === 0, schedule: Schedule.passthrough(Schedule.spaced("50 millis")) }),
        Effect.timeout("5 seconds"),
        Effect.orElseSucceed(() => -1)
      )
      expect(remaining).toBe(0)
    }))

  it.live("fails with DependencyUnavailable while Redis is unreachable", () =>
    Effect.gen(function*() {
      const port = yield* unusedPort
      yield* Effect.gen(function*() {
        const presence = yield* Presence
        expectRedisUnavailable(yield* Effect.exit(presence.track("0:general", "alice", "c1")))
        expectRedisUnavailable(yield* Effect.exit(presence.untrack("0:general", "c1")))
        expectRedisUnavailable(yield* Effect.exit(presence.online("0:general")))
      }).pipe(Effect.provide(RedisPresence({ ttlMillis: 1_000 }).pipe(Layer.provide(unreachable(port)))))
    }))

  it.live("an outage does not fail a subscription's presence hold (PresenceHeartbeat ignores it)", () =>
    Effect.gen(function*() {
      const port = yield* unusedPort
      const held = yield* Effect.scoped(
        Effect.gen(function*() {
          yield* (yield* PresenceHeartbeat).hold("0:general", { userId: "alice", connectionId: "c1" })
          return "held"
        })
      ).pipe(
        Effect.provide(PresenceHeartbeat.layer.pipe(
          Layer.provide(RedisPresence({ ttlMillis: 3_000 })),
          Layer.provide(unreachable(port))
        ))
      )
      expect(held).toBe("held")
    }))
})

describe("RedisPodRegistry", () => {
  const registry = (podId: string, keyPrefix: string, ttlSeconds: number) =>
    RedisPodRegistry({ ttlSeconds, host: "test-host" }).pipe(
      Layer.provide(Layer.merge(RedisClient.layer({ url, keyPrefix }), Layer.succeed(PodIdentity, { podId })))
    )

  it.live("lists registered pods with a TTL that is refreshed, and forgets a pod when its scope closes", () =>
    Effect.gen(function*() {
      // glob characters in the prefix must not let the listing see a neighbouring prefix
      const id = randomUUID()
      const keyPrefix = `chatify-test:${id}*:`
      const neighbour = `chatify-test:${id}-other:`
      const key = `${keyPrefix}pod:pod-a:identity`

      yield* Effect.scoped(
        Effect.gen(function*() {
          const podA = Context.get(yield* Layer.build(registry("pod-a", keyPrefix, 3)), PodRegistry)
          yield* Layer.build(registry("pod-b", keyPrefix, 3))
          yield* Layer.build(registry("pod-z", neighbour, 3))

          const pods = yield* podA.livePods
          expect(pods.map((p) => p.podId)).toEqual(["pod-a", "pod-b"])
          expect(pods[0]).toEqual(podA.self)
          expect(podA.self.host).toBe("test-host")
          expect(Number.isNaN(Date.parse(podA.self.startedAt))).toBe(false)

          const ttl = yield* inspect((redis) => redis.pttl(key))
          expect(ttl).toBeGreaterThan(2_000)
          expect(ttl).toBeLessThanOrEqual(3_000)
          // refreshed every ttl/3 = 1 s: the TTL, which only runs down by itself, goes back up to
          // near its full length before the key would have expired
          // a rise between two readings is a refresh (comparing with the first reading misses one that
          // came just before it, after which the TTL never climbs above that reading again)
          let previous = ttl
          const refreshed = yield* inspect((redis) => redis.pttl(key)).pipe(
            Effect.repeat({
              until: (now) => {
                const rose = now > previous
                previous = now
                return rose
              },
              schedule: Schedule.passthrough(Schedule.spaced("50 millis"))
            }),
            // the promise is "before the key would have expired": wait up to its remaining TTL
            Effect.timeout(`${ttl} millis`),
            Effect.orElseSucceed(() => -1)
          )
          expect(refreshed).toBeGreaterThan(2_000)
        })
      )
      expect(yield* inspect((redis) => redis.exists(key))).toBe(0)
      // pod-a and pod-b deregistered when their scope closed: a newcomer lists only itself
      const listed = yield* Effect.scoped(
        Effect.flatMap(Layer.build(registry("observer", keyPrefix, 3)), (ctx) => Context.get(ctx, PodRegistry).livePods)
      )
      expect(listed.map((p) => p.podId)).toEqual(["observer"])
    }))

  it.live("does not block startup while Redis is unreachable", () =>
    Effect.gen(function*() {
      const port = yield* unusedPort
      const exit = yield* Effect.scoped(
        Effect.flatMap(PodRegistry, (registry) => registry.livePods)
      ).pipe(
        Effect.provide(
          RedisPodRegistry({ ttlSeconds: 3 }).pipe(
            Layer.provide(Layer.merge(unreachable(port), Layer.succeed(PodIdentity, { podId: "pod-a" })))
          )
        ),
        Effect.exit
      )
      expectRedisUnavailable(exit)
    }))
})

describe("RedisSendDeduplicator", () => {
  it.scopedLive("shares claims between pods: of concurrent claims over two connections, one wins; the hash expires with the window", () =>
    Effect.gen(function*() {
      const keyPrefix = freshPrefix()
      const pod = () =>
        Effect.map(
          Layer.build(
            RedisSendDeduplicator({ windowSeconds: 300, failOpen: false }).pipe(
              Layer.provide(RedisClient.layer({ url, keyPrefix }))
            )
          ),
          Context.get(SendDeduplicator)
        )
      const podA = yield* pod()
      const podB = yield* pod()
      const key = { senderId: `alice-${randomUUID()}`, clientMessageId: randomUUID() }
      const claims = yield* Effect.forEach(
        Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? podA : podB)),
        (store) => store.claim(key, candidateEvent(key)),
        { concurrency: "unbounded" }
      )
      expect(claims.filter((claim) => claim._tag === "Claimed")).toHaveLength(1)

      const name = `${keyPrefix}${RedisKeys.sentMessage(key.senderId, key.clientMessageId)}`
      const [fields, ttl] = yield* inspect((redis) => Promise.all([redis.hkeys(name), redis.pttl(name)]))
      expect([...fields].sort()).toEqual(["event", "lease", "owner"])
      expect(ttl).toBeGreaterThan(290_000)
      expect(ttl).toBeLessThanOrEqual(300_000)
    }))

  it.live("fails open while Redis is unreachable (the send goes on, un-deduplicated), or closed when told to", () =>
    Effect.gen(function*() {
      const port = yield* unusedPort
      const key = { senderId: "alice", clientMessageId: randomUUID() }
      const candidate = candidateEvent(key)
      const warnings = captureWarnings()
      const open = yield* Effect.flatMap(SendDeduplicator, (store) => store.claim(key, candidate)).pipe(
        Effect.provide(RedisSendDeduplicator({ windowSeconds: 60 }).pipe(Layer.provide(unreachable(port)))),
        Effect.provide(warnings.layer)
      )
      expect(open).toEqual({ _tag: "Claimed", event: candidate })
      expect(warnings.lines.some((line) => line.includes("Send de-duplication fails open"))).toBe(true)
      const closed = yield* Effect.flatMap(SendDeduplicator, (store) => store.claim(key, candidate)).pipe(
        Effect.provide(
          RedisSendDeduplicator({ windowSeconds: 60, failOpen: false }).pipe(Layer.provide(unreachable(port)))
        ),
        Effect.exit
      )
      expectRedisUnavailable(closed)
    }))
})

describe("RedisKeys", () => {
  const id = FastCheck.oneof(
    FastCheck.string(),
    FastCheck.string({ unit: "binary" }),
    FastCheck.constantFrom(":", "a:b", "{x}")
  )

  it.prop("different users never share a key, of the same kind or another", { a: id, b: id }, ({ a, b }) => {
    const keysOf = (
      user: string
    ) => [RedisKeys.rateLimit(user, 60), RedisKeys.rateLimit(user, 1), RedisKeys.userPresence(user)]
    const keysA = keysOf(a)
    const keysB = keysOf(b)
    expect(new Set(keysA).size).toBe(3)
    if (a !== b) { for (const k of keysA) expect(keysB).not.toContain(k) }
  })

  it.prop(
    "different (sender, clientMessageId) pairs never share a send's key, nor any other kind's",
    { a: id, b: id, c: id, d: id },
    ({ a, b, c, d }) => {
      const key = RedisKeys.sentMessage(a, b)
      if (a !== c || b !== d) expect(RedisKeys.sentMessage(c, d)).not.toBe(key)
      for (
        const other of [
          RedisKeys.rateLimit(c, 60),
          RedisKeys.userPresence(c),
          RedisKeys.scopeUsers(c),
          RedisKeys.podIdentity(c)
        ]
      ) {
        expect(other).not.toBe(key)
      }
    }
  )

  it.prop(
    "a user's read counter never shares a key with any user's send counter or presence",
    { a: id, b: id },
    ({ a, b }) => {
      const read = RedisKeys.readRateLimit(a, 60)
      for (const window of [60, 6, 1]) {
        expect(RedisKeys.rateLimit(b, window)).not.toBe(read)
        if (a !== b || window !== 60) expect(RedisKeys.readRateLimit(b, window)).not.toBe(read)
      }
      for (
        const other of [
          RedisKeys.userPresence(b),
          RedisKeys.scopeConnections(b),
          RedisKeys.scopeUsers(b),
          RedisKeys.podIdentity(b)
        ]
      ) {
        expect(other).not.toBe(read)
      }
    }
  )

  it.prop("different scopes never share a key", { a: id, b: id }, ({ a, b }) => {
    const keysOf = (scope: string) => [RedisKeys.scopeConnections(scope), RedisKeys.scopeUsers(scope)]
    if (a !== b) { for (const k of keysOf(a)) expect(keysOf(b)).not.toContain(k) }
    expect(RedisKeys.scopeConnections(a)).not.toBe(RedisKeys.scopeUsers(b))
  })
})
