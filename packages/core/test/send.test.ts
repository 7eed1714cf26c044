import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Ref, Schema, TestClock } from "effect"
import {
  ChatEventProducer,
  ChatPolicy,
  CurrentUser,
  IdGenerator,
  PodIdentity,
  RateLimiter,
  ScopeAuthorizer,
  sendMessage
} from "../src/index.js"
import { ChatScopeType, type ChatEvent, defaultPolicyLimits, DependencyUnavailable } from "@chatify/domain"

interface World {
  readonly produced: Ref.Ref<ReadonlyArray<ChatEvent>>
  readonly counted: Ref.Ref<number>
}

/** Test doubles that record what the pipeline did, so each test can assert nothing was produced. */
const makeWorld = (options: {
  readonly allowScope?: boolean
  readonly rateLimit?: number
  readonly producerDown?: boolean
} = {}) =>
  Effect.gen(function*() {
    const produced = yield* Ref.make<ReadonlyArray<ChatEvent>>([])
    const counted = yield* Ref.make(0)
    const limit = options.rateLimit ?? 100
    let ids = 0
    const layer = Layer.mergeAll(
      Layer.succeed(ChatPolicy, defaultPolicyLimits),
      Layer.succeed(PodIdentity, { podId: "pod-a" }),
      Layer.succeed(CurrentUser, { userId: "alice", connectionId: "c1" }),
      Layer.succeed(IdGenerator, {
        next: Effect.sync(() => `00000000-0000-7000-8000-${String(++ids).padStart(12, "0")}`)
      }),
      Layer.succeed(ScopeAuthorizer, { authorize: () => Effect.succeed(options.allowScope ?? true) }),
      Layer.succeed(RateLimiter, {
        checkAndIncrement: () =>
          Ref.updateAndGet(counted, (n) => n + 1).pipe(
            Effect.map((n) => ({
              allowed: n <= limit,
              limit,
              remaining: Math.max(0, limit - n),
              windowSeconds: 60,
              retryAfterSeconds: n <= limit ? 0 : 42
            }))
          )
      }),
      Layer.succeed(ChatEventProducer, {
        produce: (event) =>
          options.producerDown === true
            ? Effect.fail(new DependencyUnavailable({ dependency: "broker", message: "down" }))
            : Ref.modify(produced, (all) => [{ partition: 1, offset: all.length }, [...all, event]])
      })
    )
    return { world: { produced, counted } satisfies World, layer }
  })

describe("send pipeline", () => {
  it.effect("creates the event from the identity, the clock, the id generator and the pod, then produces it", () =>
    Effect.gen(function*() {
      const { layer, world } = yield* makeWorld()
      yield* TestClock.setTime(Date.parse("2026-01-15T10:30:00Z"))
      const sent = yield* sendMessage({ scopeType: 0, scopeId: "general", text: "Hello, Chatify!" }).pipe(
        Effect.provide(layer)
      )
      expect(sent.partition).toBe(1)
      expect(sent.offset).toBe(0)
      expect(sent.chatEvent.senderId).toBe("alice")
      expect(sent.chatEvent.originPodId).toBe("pod-a")
      expect(sent.chatEvent.messageId).toBe("00000000-0000-7000-8000-000000000001")
      expect(sent.chatEvent.createdAtUtc.toISOString()).toBe("2026-01-15T10:30:00.000Z")
      expect(yield* Ref.get(world.produced)).toEqual([sent.chatEvent])
    }))

  it.effect("rejects invalid input with a ValidationError naming the fields, before counting or producing", () =>
    Effect.gen(function*() {
      const { layer, world } = yield* makeWorld()
      const error = yield* sendMessage({ scopeType: 0, scopeId: "  ", text: "" }).pipe(
        Effect.provide(layer),
        Effect.flip
      )
      expect(error._tag).toBe("ValidationError")
      expect(error._tag === "ValidationError" ? error.errors.map((e) => e.field) : []).toEqual(["scopeId", "text"])
      expect(yield* Ref.get(world.produced)).toEqual([])
      expect(yield* Ref.get(world.counted)).toBe(0)
    }))

  it.effect("refuses a scope the identity may not use with Forbidden and produces nothing", () =>
    Effect.gen(function*() {
      const { layer, world } = yield* makeWorld({ allowScope: false })
      const error = yield* sendMessage({ scopeType: 1, scopeId: "dm", text: "psst" }).pipe(
        Effect.provide(layer),
        Effect.flip
      )
      expect(error._tag).toBe("Forbidden")
      expect(yield* Ref.get(world.produced)).toEqual([])
      expect(yield* Ref.get(world.counted)).toBe(0)
    }))

  it.effect("answers RateLimited with the retry delay once the limit is used up, and produces nothing more", () =>
    Effect.gen(function*() {
      const { layer, world } = yield* makeWorld({ rateLimit: 2 })
      const send = sendMessage({ scopeType: 0, scopeId: "general", text: "hi" }).pipe(Effect.provide(layer))
      yield* send
      yield* send
      const error = yield* Effect.flip(send)
      expect(error).toMatchObject({ _tag: "RateLimited", limit: 2, retryAfterSeconds: 42 })
      expect((yield* Ref.get(world.produced)).length).toBe(2)
    }))

  it.effect("passes a broker failure through as DependencyUnavailable", () =>
    Effect.gen(function*() {
      const { layer, world } = yield* makeWorld({ producerDown: true })
      const error = yield* sendMessage({ scopeType: 0, scopeId: "general", text: "hi" }).pipe(
        Effect.provide(layer),
        Effect.flip
      )
      expect(error._tag).toBe("DependencyUnavailable")
      expect(yield* Ref.get(world.produced)).toEqual([])
    }))

  it.effect.prop(
    "either produces exactly the acknowledged event or fails and produces nothing",
    {
      scopeType: ChatScopeType,
      scopeId: Schema.String,
      text: Schema.String
    },
    (request) =>
      Effect.gen(function*() {
        const { layer, world } = yield* makeWorld()
        const exit = yield* sendMessage(request).pipe(Effect.provide(layer), Effect.exit)
        const produced = yield* Ref.get(world.produced)
        if (Exit.isSuccess(exit)) {
          expect(produced).toEqual([exit.value.chatEvent])
          expect(exit.value.chatEvent.text).toBe(request.text)
        } else {
          expect(produced).toEqual([])
        }
      }),
    { fastCheck: { numRuns: 200 } }
  )
})
