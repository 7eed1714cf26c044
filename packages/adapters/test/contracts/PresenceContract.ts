import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Duration, Layer } from "effect"
import { Presence } from "@chatify/core"

export interface PresenceContractOptions {
  readonly makeLayer: () => Layer.Layer<Presence, unknown>
  readonly advance: (duration: Duration.DurationInput) => Effect.Effect<void>
  readonly live?: boolean
}

/** What every Presence must do; run against each adapter. */
export const presenceContract = (name: string, options: PresenceContractOptions) =>
  describe(`Presence contract: ${name}`, () => {
    const test = options.live === true ? it.live : it.effect
    const scope = () => `0:presence-${randomUUID()}`

    test("lists each tracked user once, with the number of their connections", () =>
      Effect.gen(function*() {
        const presence = yield* Presence
        const general = scope()
        yield* presence.track(general, "alice", "c1")
        yield* presence.track(general, "alice", "c2")
        yield* presence.track(general, "bob", "c3")
        yield* presence.track(general, "alice", "c1")
        const online = yield* presence.online(general)
        expect([...online].sort((a, b) => a.userId.localeCompare(b.userId))).toEqual([
          { userId: "alice", connections: 2 },
          { userId: "bob", connections: 1 }
        ])
      }).pipe(Effect.provide(options.makeLayer())))

    test("forgets a connection when it is untracked, and keeps scopes apart", () =>
      Effect.gen(function*() {
        const presence = yield* Presence
        const general = scope()
        const random = scope()
        yield* presence.track(general, "alice", "c1")
        yield* presence.track(random, "bob", "c2")
        yield* presence.untrack(general, "c1")
        yield* presence.untrack(general, "never-tracked")
        expect(yield* presence.online(general)).toEqual([])
        expect(yield* presence.online(random)).toEqual([{ userId: "bob", connections: 1 }])
      }).pipe(Effect.provide(options.makeLayer())))

    test("drops a connection that is not refreshed within the TTL, and keeps one that is", () =>
      Effect.gen(function*() {
        const presence = yield* Presence
        const general = scope()
        yield* presence.track(general, "alice", "c1")
        yield* presence.track(general, "bob", "c2")
        yield* options.advance(presence.ttlMillis / 2)
        yield* presence.track(general, "bob", "c2")
        yield* options.advance(presence.ttlMillis / 2 + 50)
        expect(yield* presence.online(general)).toEqual([{ userId: "bob", connections: 1 }])
      }).pipe(Effect.provide(options.makeLayer())))
  })
