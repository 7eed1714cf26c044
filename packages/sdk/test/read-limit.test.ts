import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Logger, LogLevel, Stream } from "effect"
import type { ScopeRef } from "@chatify/domain"
import { startTestServer } from "@chatify/server/testing"
import { makeChatClient, type SubscriptionUpdate } from "../src/node.js"

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

describe("ChatClient and the read rate limit", () => {
  it.scopedLive("a subscription refused with RateLimited resumes once, after its retryAfterSeconds", () =>
    Effect.gen(function*() {
      // one read per caller per second, windows aligned to the epoch's seconds
      const server = yield* startTestServer({ config: { readRateLimit: { limit: 1, windowSeconds: 1 } } })
      const client = yield* makeChatClient({ url: server.wsUrl })
      const scope: ScopeRef = { scopeType: 0, scopeId: `room-${crypto.randomUUID()}` }
      // start early in a window, so the read and the subscription below fall in the same one
      yield* Effect.sleep(1_050 - (Date.now() % 1_000))
      yield* client.presence(scope)

      const started = Date.now()
      const updates = yield* client.subscribeWithStatus(scope).pipe(
        Stream.map((update) => ({ update, atMillis: Date.now() - started })),
        Stream.takeUntil(({ update }) => update._tag === "Live"),
        Stream.runCollect,
        Effect.timeout("10 seconds")
      )
      const tags = Chunk.toReadonlyArray(updates).map(({ update }) => update._tag)
      // refused once, then, waiting as long as the server said, live at the first retry
      expect(tags).toEqual(["Reconnecting", "Live"])
      const [refused, live] = Chunk.toReadonlyArray(updates)
      const reason = (refused!.update as Extract<SubscriptionUpdate, { _tag: "Reconnecting" }>).reason
      expect(reason).toMatchObject({ _tag: "RateLimited", kind: "read", limit: 1, windowSeconds: 1 })
      const retryAfterSeconds = reason._tag === "RateLimited" ? reason.retryAfterSeconds : 0
      expect(retryAfterSeconds).toBe(1)
      expect(live!.atMillis - refused!.atMillis).toBeGreaterThanOrEqual(retryAfterSeconds * 1_000 - 20)
    }).pipe(quiet))
})
