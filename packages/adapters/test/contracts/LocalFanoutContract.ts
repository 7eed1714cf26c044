import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Mailbox, Stream } from "effect"
import type { Layer } from "effect"
import { LocalFanout } from "@chatify/core"
import { ChatEvent, EnrichedChatEvent, type ScopeRef, scopeKey } from "@chatify/domain"

const eventIn = (scope: ScopeRef, offset: number) =>
  new EnrichedChatEvent({
    chatEvent: new ChatEvent({
      messageId: randomUUID(),
      scopeType: scope.scopeType,
      scopeId: scope.scopeId,
      senderId: "s",
      text: `m${offset}`,
      createdAtUtc: new Date(0),
      originPodId: "p"
    }),
    partition: 0,
    offset
  })

/** What every LocalFanout must do. */
export const localFanoutContract = (name: string, makeLayer: () => Layer.Layer<LocalFanout>) =>
  describe(`LocalFanout contract: ${name}`, () => {
    it.scoped("delivers an event to every subscriber of its scope and to no one else", () =>
      Effect.gen(function*() {
        const fanout = yield* LocalFanout
        const general: ScopeRef = { scopeType: 0, scopeId: "general" }
        const dm: ScopeRef = { scopeType: 1, scopeId: "general" }
        const a = yield* fanout.register(scopeKey(general), 16)
        const b = yield* fanout.register(scopeKey(general), 16)
        const c = yield* fanout.register(scopeKey(dm), 16)
        const event = eventIn(general, 1)
        expect(yield* fanout.publish(event)).toBe(2)
        expect(Chunk.toReadonlyArray((yield* a.takeAll)[0])).toEqual([event])
        expect(Chunk.toReadonlyArray((yield* b.takeAll)[0])).toEqual([event])
        expect(yield* c.size).toEqual(expect.objectContaining({ _tag: "Some", value: 0 }))
        expect(yield* fanout.subscriberCount).toBe(3)
      }).pipe(Effect.provide(makeLayer())))

    it.scoped("forgets a subscriber when its scope closes", () =>
      Effect.gen(function*() {
        const fanout = yield* LocalFanout
        const general: ScopeRef = { scopeType: 0, scopeId: "general" }
        yield* Effect.scoped(fanout.register(scopeKey(general), 16))
        expect(yield* fanout.subscriberCount).toBe(0)
        expect(yield* fanout.publish(eventIn(general, 1))).toBe(0)
      }).pipe(Effect.provide(makeLayer())))

    it.scoped("ends a subscriber whose buffer is full with SubscriptionLagged after what it buffered", () =>
      Effect.gen(function*() {
        const fanout = yield* LocalFanout
        const general: ScopeRef = { scopeType: 0, scopeId: "general" }
        const slow = yield* fanout.register(scopeKey(general), 2)
        const fast = yield* fanout.register(scopeKey(general), 16)
        const events = [1, 2, 3].map((offset) => eventIn(general, offset))
        const delivered = yield* Effect.forEach(events, (e) => fanout.publish(e))
        expect(delivered).toEqual([2, 2, 1])
        const received: Array<EnrichedChatEvent> = []
        const ended = yield* Stream.runForEach(Mailbox.toStream(slow), (e) => Effect.sync(() => received.push(e))).pipe(
          Effect.flip
        )
        expect(received).toEqual(events.slice(0, 2))
        expect(ended._tag).toBe("SubscriptionLagged")
        expect(Chunk.toReadonlyArray((yield* fast.takeAll)[0])).toEqual(events)
        expect(yield* fanout.subscriberCount).toBe(1)
      }).pipe(Effect.provide(makeLayer())))
  })
