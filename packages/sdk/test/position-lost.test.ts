/**
 * A subscription resuming from a position the server's log does not hold (the log was recreated or
 * its data lost) is told so (`PositionLost`) and goes on live: newer messages are not dropped.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Stream } from "effect"
import { partitionForScope, type ScopeRef } from "@chatify/domain"
import { startTestServer } from "@chatify/server/testing"
import { makeChatClient, type SubscriptionUpdate } from "../src/node.js"

describe("ChatClient with a position the server does not know", () => {
  it.scopedLive("reports PositionLost, goes live, and delivers the messages sent afterwards", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const scope: ScopeRef = { scopeType: 0, scopeId: `lost-${crypto.randomUUID()}` }
      const client = yield* makeChatClient({ url: server.wsUrl })
      // a position from another life of the log: far beyond anything this server has written
      const stale = { partition: partitionForScope(scope, server.config.broker.partitions), offset: 1_000_000 }
      const updates: Array<SubscriptionUpdate> = []
      const live = yield* Deferred.make<void>()
      const consuming = yield* client.subscribeWithStatus(scope, { after: stale }).pipe(
        Stream.tap((update) =>
          Effect.zipRight(
            Effect.sync(() => updates.push(update)),
            update._tag === "Live" ? Deferred.succeed(live, undefined) : Effect.void
          )
        ),
        Stream.takeUntil((update) => update._tag === "Event" && update.event.chatEvent.text === "third"),
        Stream.runDrain,
        Effect.forkScoped
      )
      // live first: what is sent from here on must arrive
      yield* Deferred.await(live).pipe(Effect.timeout("10 seconds"))
      for (const text of ["first", "second", "third"]) yield* client.send({ ...scope, text })
      yield* Fiber.join(consuming).pipe(Effect.timeout("10 seconds"))

      const [lost, wentLive, ...events] = updates
      expect(lost?._tag).toBe("PositionLost")
      if (lost?._tag === "PositionLost") {
        expect(lost.position).toEqual(stale)
        expect(lost.reason.message).toContain("beyond the end of partition")
      }
      expect(wentLive?._tag).toBe("Live")
      expect(events.map((update) => (update._tag === "Event" ? update.event.chatEvent.text : update._tag))).toEqual([
        "first",
        "second",
        "third"
      ])
    }))
})
