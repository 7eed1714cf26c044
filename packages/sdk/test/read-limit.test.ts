import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Logger, LogLevel, Stream } from "effect"
import type { ScopeRef } from "@chatify/domain"
import { startTestServer } from "@chatify/server/testing"
import { makeChatClient, type SubscriptionUpdate } from "../src/node.js"

const WINDOW_SECONDS = 3
const WINDOW_MILLIS = WINDOW_SECONDS * 1_000

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

describe("ChatClient and the read rate limit", () => {
  it.scopedLive("a subscription refused with RateLimited resumes once, after its retryAfterSeconds", () =>
    Effect.gen(function*() {
      // one read per caller per window, windows aligned to the epoch; 3 s, not 1 s: the read and the
      // subscription below must fall in one window, and a loaded machine can take most of a second
      // between them
      const server = yield* startTestServer({
        config: { readRateLimit: { limit: 1, windowSeconds: WINDOW_SECONDS } }
      })
      const client = yield* makeChatClient({ url: server.wsUrl })
      const scope: ScopeRef = { scopeType: 0, scopeId: `room-${crypto.randomUUID()}` }
      // connected before the window starts, so the read below is quick
      yield* client.presence({ scopeType: 0, scopeId: `warm-up-${crypto.randomUUID()}` })
      // start early in a window, so the read and the subscription below fall in the same one
      yield* Effect.sleep(WINDOW_MILLIS + 50 - (Date.now() % WINDOW_MILLIS))
      const windowStartedAt = Date.now()
      const windowEndsAt = windowStartedAt - (windowStartedAt % WINDOW_MILLIS) + WINDOW_MILLIS
      yield* client.presence(scope)

      const started = Date.now()
      const updates = yield* client.subscribeWithStatus(scope).pipe(
        Stream.map((update) => ({ update, atMillis: Date.now() - started })),
        Stream.takeUntil(({ update }) => update._tag === "Live"),
        Stream.runCollect,
        Effect.timeout("15 seconds")
      )
      const tags = Chunk.toReadonlyArray(updates).map(({ update }) => update._tag)
      // refused once, then, waiting as long as the server said, live at the first retry
      expect(tags).toEqual(["Reconnecting", "Live"])
      const [refused, live] = Chunk.toReadonlyArray(updates)
      const reason = (refused!.update as Extract<SubscriptionUpdate, { _tag: "Reconnecting" }>).reason
      expect(reason).toMatchObject({ _tag: "RateLimited", kind: "read", limit: 1, windowSeconds: WINDOW_SECONDS })
      const retryAfterSeconds = reason._tag === "RateLimited" ? reason.retryAfterSeconds : 0
      // the rest of the window when the server refused (between `started` and the refusal's arrival),
      // rounded up to whole seconds: the retry lands in the next window
      const secondsLeftAt = (at: number) => Math.ceil((windowEndsAt - at) / 1_000)
      expect(retryAfterSeconds).toBeGreaterThanOrEqual(Math.max(1, secondsLeftAt(started + refused!.atMillis)))
      expect(retryAfterSeconds).toBeLessThanOrEqual(secondsLeftAt(started))
      expect(live!.atMillis - refused!.atMillis).toBeGreaterThanOrEqual(retryAfterSeconds * 1_000 - 20)
    }).pipe(quiet))
})
