import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Layer } from "effect"
import { type FanoutSubscriber, LocalFanout } from "@chatify/core"
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

/** A subscriber that records what it gets and accepts at most `capacity` events. */
const recording = (capacity = Number.POSITIVE_INFINITY) => {
  const received: Array<EnrichedChatEvent> = []
  const subscriber: FanoutSubscriber = {
    deliver: (event) => {
      if (received.length >= capacity) return false
      received.push(event)
      return true
    }
  }
  return { received, subscriber }
}

/** What every LocalFanout must do. */
export const localFanoutContract = (name: string, makeLayer: () => Layer.Layer<LocalFanout>) =>
  describe(`LocalFanout contract: ${name}`, () => {
    it.scoped("delivers an event to every subscriber of its scope and to no one else", () =>
      Effect.gen(function*() {
        const fanout = yield* LocalFanout
        const general: ScopeRef = { scopeType: 0, scopeId: "general" }
        const dm: ScopeRef = { scopeType: 1, scopeId: "general" }
        const [a, b, c] = [recording(), recording(), recording()]
        yield* fanout.register(scopeKey(general), a.subscriber)
        yield* fanout.register(scopeKey(general), b.subscriber)
        yield* fanout.register(scopeKey(dm), c.subscriber)
        const event = eventIn(general, 1)
        expect(yield* fanout.publish(event)).toBe(2)
        expect(a.received).toEqual([event])
        expect(b.received).toEqual([event])
        expect(c.received).toEqual([])
        expect(yield* fanout.subscriberCount).toBe(3)
      }).pipe(Effect.provide(makeLayer())))

    it.scoped("forgets a subscriber when its scope closes", () =>
      Effect.gen(function*() {
        const fanout = yield* LocalFanout
        const general: ScopeRef = { scopeType: 0, scopeId: "general" }
        const gone = recording()
        yield* Effect.scoped(fanout.register(scopeKey(general), gone.subscriber))
        expect(yield* fanout.subscriberCount).toBe(0)
        expect(yield* fanout.publish(eventIn(general, 1))).toBe(0)
        expect(gone.received).toEqual([])
      }).pipe(Effect.provide(makeLayer())))

    it.scoped("stops delivering to a subscriber that refused an event, and keeps the others", () =>
      Effect.gen(function*() {
        const fanout = yield* LocalFanout
        const general: ScopeRef = { scopeType: 0, scopeId: "general" }
        const slow = recording(2)
        const fast = recording()
        yield* fanout.register(scopeKey(general), slow.subscriber)
        yield* fanout.register(scopeKey(general), fast.subscriber)
        const events = [1, 2, 3, 4].map((offset) => eventIn(general, offset))
        expect(yield* Effect.forEach(events, (e) => fanout.publish(e))).toEqual([2, 2, 1, 1])
        expect(slow.received).toEqual(events.slice(0, 2))
        expect(fast.received).toEqual(events)
        expect(yield* fanout.subscriberCount).toBe(1)
      }).pipe(Effect.provide(makeLayer())))
  })
