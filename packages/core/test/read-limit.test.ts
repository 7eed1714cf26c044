import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Layer, Ref, TestClock } from "effect"
import {
  ChatEventProducer,
  ChatEventSource,
  ChatHistory,
  ChatPolicy,
  CoreSettings,
  CurrentUser,
  type Identity,
  IdGenerator,
  LocalFanout,
  PodIdentity,
  Presence,
  PresenceHeartbeat,
  RateLimiter,
  ReadRateLimiter,
  readHistory,
  readPresence,
  ScopeAuthorizer,
  SendDeduplicator,
  sendMessage,
  subscribe,
  subscribeInto,
  type SubscribeRequirements
} from "../src/index.js"
import {
  defaultPolicyLimits,
  DependencyUnavailable,
  type QueryError,
  type ScopeRef,
  type SubscribeError
} from "@chatify/domain"

const scope: ScopeRef = { scopeType: 0, scopeId: "general" }
const alice: Identity = { userId: "alice", connectionId: "c1" }

/**
 * A fixed-window counter per key, in memory, as the in-memory adapter counts (windows aligned to
 * the epoch, on the Effect Clock): each limiter of a world is one of these, with counters of its own.
 */
const fixedWindow = (limit: number, windowSeconds: number) => {
  const counters = new Map<string, { readonly window: number; readonly count: number }>()
  const keys: Array<string> = []
  const limiter: RateLimiter["Type"] = {
    checkAndIncrement: (key) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        keys.push(key)
        const windowMs = windowSeconds * 1000
        const window = Math.floor(now / windowMs)
        const counter = counters.get(key)
        const count = counter !== undefined && counter.window === window ? counter.count + 1 : 1
        counters.set(key, { window, count })
        const allowed = count <= limit
        return {
          allowed,
          limit,
          remaining: Math.max(0, limit - count),
          windowSeconds,
          retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil(((window + 1) * windowMs - now) / 1000))
        }
      })
  }
  return { limiter, keys }
}

/** What each read did once it got past its checks. */
interface Work {
  readonly historyPages: number
  readonly presenceLookups: number
  readonly fanoutRegistrations: number
  readonly presenceHolds: number
  readonly endOffsetReads: number
  readonly produced: number
}

const noWork: Work = {
  historyPages: 0,
  presenceLookups: 0,
  fanoutRegistrations: 0,
  presenceHolds: 0,
  endOffsetReads: 0,
  produced: 0
}

/** In-memory stand-ins for every port a read or a send touches, recording the work they were asked for. */
const makeWorld = (options: { readonly readLimit: number; readonly sendLimit: number }) =>
  Effect.gen(function*() {
    const work = yield* Ref.make(noWork)
    const did = (field: keyof Work) => Ref.update(work, (w) => ({ ...w, [field]: w[field] + 1 }))
    const reads = fixedWindow(options.readLimit, 60)
    const sends = fixedWindow(options.sendLimit, 60)
    let ids = 0
    const layer = Layer.mergeAll(
      Layer.succeed(ChatPolicy, defaultPolicyLimits),
      Layer.succeed(ScopeAuthorizer, { authorize: () => Effect.succeed(true) }),
      CoreSettings.layer(),
      Layer.succeed(ReadRateLimiter, reads.limiter),
      Layer.succeed(RateLimiter, sends.limiter),
      Layer.succeed(ChatHistory, {
        append: () => Effect.void,
        page: () => Effect.as(did("historyPages"), { items: [], next: undefined }),
        after: () => Effect.succeed([]),
        ping: Effect.void
      }),
      Layer.succeed(Presence, {
        track: () => Effect.void,
        untrack: () => Effect.void,
        online: () => Effect.as(did("presenceLookups"), []),
        ttlMillis: 300_000
      }),
      Layer.succeed(PresenceHeartbeat, { hold: () => did("presenceHolds") }),
      Layer.succeed(LocalFanout, {
        register: () => did("fanoutRegistrations"),
        publish: () => Effect.succeed(0),
        publishAll: () => Effect.succeed(0),
        subscriberCount: Effect.succeed(0)
      }),
      Layer.succeed(ChatEventSource, {
        partitions: 3,
        consume: () => Effect.dieMessage("not used by reads"),
        endOffsets: Effect.as(did("endOffsetReads"), new Map<number, number>()),
        committedOffsets: () => Effect.succeed(new Map<number, number>())
      }),
      Layer.succeed(PodIdentity, { podId: "pod-a" }),
      Layer.succeed(IdGenerator, {
        next: Effect.sync(() => `00000000-0000-7000-8000-${String(++ids).padStart(12, "0")}`)
      }),
      Layer.succeed(ChatEventProducer, {
        produce: () => Effect.as(did("produced"), { partition: 1, offset: ids })
      }),
      Layer.succeed(SendDeduplicator, {
        claim: (_, candidate) => Effect.succeed({ _tag: "Claimed" as const, event: candidate }),
        complete: () => Effect.void,
        release: () => Effect.void
      })
    )
    return { layer, work: Ref.get(work), readKeys: reads.keys, sendKeys: sends.keys }
  })

type World = Effect.Effect.Success<ReturnType<typeof makeWorld>>

type ReadKind = "history" | "presence" | "subscribe" | "subscribeInto"

/** Each read as a use case, run as `identity`. */
const reads: Record<ReadKind, Effect.Effect<unknown, QueryError | SubscribeError, SubscribeRequirements | Presence>> = {
  history: readHistory(scope, {}),
  presence: readPresence(scope),
  subscribe: Effect.scoped(subscribe(scope, undefined)),
  subscribeInto: Effect.scoped(
    subscribeInto(scope, undefined, { push: () => true, pushReplay: () => Effect.succeed(true), fail: () => {} })
  )
}
const readKinds = Object.keys(reads) as Array<ReadKind>

const readAs = (world: World, read: ReadKind, identity: Identity = alice) =>
  reads[read].pipe(Effect.asVoid, Effect.provideService(CurrentUser, identity), Effect.provide(world.layer))

const sendAs = (world: World, identity: Identity = alice) =>
  sendMessage({ scopeType: 0, scopeId: "general", text: "hi" }).pipe(
    Effect.provideService(CurrentUser, identity),
    Effect.provide(world.layer)
  )

/** What one read of each kind asks of the ports once past its checks. */
const workOf: Record<ReadKind, Partial<Work>> = {
  history: { historyPages: 1 },
  presence: { presenceLookups: 1 },
  subscribe: { fanoutRegistrations: 1, presenceHolds: 1, endOffsetReads: 1 },
  subscribeInto: { fanoutRegistrations: 1, presenceHolds: 1, endOffsetReads: 1 }
}

const times = (work: Partial<Work>, n: number): Work => {
  const total = { ...noWork }
  for (const [field, count] of Object.entries(work) as Array<[keyof Work, number]>) total[field] = count * n
  return total
}

describe("read rate limit", () => {
  for (const read of readKinds) {
    it.effect(`${read}: the read after the limit in a window is RateLimited (kind "read") before any work`, () =>
      Effect.gen(function*() {
        const world = yield* makeWorld({ readLimit: 3, sendLimit: 100 })
        for (let i = 0; i < 3; i++) yield* readAs(world, read)
        expect(yield* world.work).toEqual(times(workOf[read], 3))

        const refused = yield* Effect.flip(readAs(world, read))
        expect(refused).toMatchObject({ _tag: "RateLimited", limit: 3, windowSeconds: 60, kind: "read" })
        expect(refused._tag === "RateLimited" && refused.retryAfterSeconds).toBeGreaterThan(0)
        // nothing was read, registered, tracked or asked of the log for it
        expect(yield* world.work).toEqual(times(workOf[read], 3))
        // and the send window is another window
        expect(world.sendKeys).toEqual([])
      }))
  }

  it.effect("History, Presence and Subscribe share one read window per caller", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld({ readLimit: 3, sendLimit: 100 })
      yield* readAs(world, "history")
      yield* readAs(world, "presence")
      yield* readAs(world, "subscribe")
      for (const read of readKinds) {
        expect((yield* Effect.flip(readAs(world, read)))._tag).toBe("RateLimited")
      }
    }))

  it.effect("a used-up read window leaves the send window whole, and used-up sends leave reads alone", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld({ readLimit: 2, sendLimit: 2 })
      yield* readAs(world, "history")
      yield* readAs(world, "presence")
      expect((yield* Effect.flip(readAs(world, "history")))._tag).toBe("RateLimited")
      // every send of the window still goes through, then the send limit refuses on its own
      yield* sendAs(world)
      yield* sendAs(world)
      expect(yield* Effect.flip(sendAs(world))).toMatchObject({ _tag: "RateLimited", limit: 2 })
      expect((yield* world.work).produced).toBe(2)
      expect(world.sendKeys).toEqual(["alice", "alice", "alice"])
      expect(world.readKeys).toEqual(["alice", "alice", "alice"])

      // a new window: sends used up first, reads still all there
      yield* TestClock.adjust("60 seconds")
      yield* sendAs(world)
      yield* sendAs(world)
      expect((yield* Effect.flip(sendAs(world)))._tag).toBe("RateLimited")
      yield* readAs(world, "history")
      yield* readAs(world, "subscribe")
      expect((yield* Effect.flip(readAs(world, "presence")))._tag).toBe("RateLimited")
    }))

  it.effect("counts a caller by its rate limit key (an anonymous caller's address), else by its user", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld({ readLimit: 2, sendLimit: 100 })
      const anonymous = (n: number): Identity => ({
        userId: `anon_${n}`,
        connectionId: `c${n}`,
        rateLimitKey: "address:203.0.113.5"
      })
      // a new anonymous identity per request, one address: one window
      yield* readAs(world, "history", anonymous(1))
      yield* readAs(world, "presence", anonymous(2))
      expect((yield* Effect.flip(readAs(world, "subscribe", anonymous(3))))._tag).toBe("RateLimited")
      // another caller has a window of its own
      yield* readAs(world, "history", alice)
      yield* readAs(world, "history", { userId: "bob", connectionId: "c9" })
      expect(world.readKeys).toEqual([
        "address:203.0.113.5",
        "address:203.0.113.5",
        "address:203.0.113.5",
        "alice",
        "bob"
      ])
    }))

  it.effect("a read allowed again once the window has passed", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld({ readLimit: 1, sendLimit: 100 })
      yield* readAs(world, "history")
      const refused = yield* Effect.flip(readAs(world, "history"))
      expect(refused._tag).toBe("RateLimited")
      if (refused._tag === "RateLimited") yield* TestClock.adjust(`${refused.retryAfterSeconds} seconds`)
      expect(Exit.isSuccess(yield* Effect.exit(readAs(world, "history")))).toBe(true)
    }))

  it.effect("a read limiter that cannot answer fails the read with its DependencyUnavailable, before any work", () =>
    Effect.gen(function*() {
      const world = yield* makeWorld({ readLimit: 10, sendLimit: 10 })
      const down = Layer.succeed(ReadRateLimiter, {
        checkAndIncrement: () => Effect.fail(new DependencyUnavailable({ dependency: "redis", message: "down" }))
      })
      for (const read of readKinds) {
        const error = yield* reads[read].pipe(
          Effect.provideService(CurrentUser, alice),
          Effect.provide(down),
          Effect.provide(world.layer),
          Effect.flip
        )
        expect(error._tag).toBe("DependencyUnavailable")
      }
      expect(yield* world.work).toEqual(noWork)
    }))
})
