import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Duration, Layer } from "effect"
import { type SendClaim, SendDeduplicator, type SendKey } from "@chatify/core"
import { ChatEvent, EnrichedChatEvent } from "@chatify/domain"

export interface SendDeduplicatorContractOptions {
  /** The store under test, remembering sends for `windowSeconds`, with claims held for `leaseMillis`. */
  readonly makeLayer: (
    settings: { readonly windowSeconds: number; readonly leaseMillis: number }
  ) => Layer.Layer<SendDeduplicator, unknown>
  /** Moves time: TestClock for in-process stores, real time for a real server. */
  readonly advance: (duration: Duration.DurationInput) => Effect.Effect<void>
  /** it.effect (TestClock) for in-process stores, it.live for real servers. */
  readonly live?: boolean
}

const WINDOW_SECONDS = 2
const LEASE_MILLIS = 400

/** A send attempt's candidate event: a fresh messageId, the given text. */
export const candidateEvent = (key: SendKey, text = "hello", scopeId = "general") =>
  new ChatEvent({
    messageId: randomUUID(),
    scopeType: 0,
    scopeId,
    senderId: key.senderId,
    text,
    createdAtUtc: new Date(Math.floor(Date.now() / 1000) * 1000),
    originPodId: "pod-contract"
  })

const freshKey = (): SendKey => ({ senderId: `user-${randomUUID()}`, clientMessageId: randomUUID() })

const claimedEvent = (claim: SendClaim): ChatEvent => {
  expect(claim._tag).toBe("Claimed")
  if (claim._tag !== "Claimed") throw new Error(`expected Claimed, got ${claim._tag}`)
  return claim.event
}

const sentEvent = (claim: SendClaim): EnrichedChatEvent => {
  expect(claim._tag).toBe("Sent")
  if (claim._tag !== "Sent") throw new Error(`expected Sent, got ${claim._tag}`)
  return claim.sent
}

/** What every SendDeduplicator must do; run against each adapter. */
export const sendDeduplicatorContract = (name: string, options: SendDeduplicatorContractOptions) =>
  describe(`SendDeduplicator contract: ${name}`, () => {
    const test = options.live === true ? it.live : it.effect
    const layer = () => options.makeLayer({ windowSeconds: WINDOW_SECONDS, leaseMillis: LEASE_MILLIS })

    test("a new key is claimed with the candidate; while it is held, a repeat is InProgress", () =>
      Effect.gen(function*() {
        const store = yield* SendDeduplicator
        const key = freshKey()
        const first = candidateEvent(key)
        expect(claimedEvent(yield* store.claim(key, first))).toEqual(first)
        expect((yield* store.claim(key, candidateEvent(key)))._tag).toBe("InProgress")
      }).pipe(Effect.provide(layer())))

    test("once completed, a repeat is Sent with the first result, event and position", () =>
      Effect.gen(function*() {
        const store = yield* SendDeduplicator
        const key = freshKey()
        const first = candidateEvent(key, "first")
        claimedEvent(yield* store.claim(key, first))
        const sent = new EnrichedChatEvent({ chatEvent: first, partition: 2, offset: 41 })
        yield* store.complete(key, sent)
        const again = sentEvent(yield* store.claim(key, candidateEvent(key, "first")))
        expect(again).toEqual(sent)
        expect(again.chatEvent.createdAtUtc.toISOString()).toBe(first.createdAtUtc.toISOString())
        // the first result stays
        yield* store.complete(key, new EnrichedChatEvent({ chatEvent: candidateEvent(key), partition: 0, offset: 7 }))
        expect(sentEvent(yield* store.claim(key, candidateEvent(key)))).toEqual(sent)
      }).pipe(Effect.provide(layer())))

    test("after a release, the next attempt claims the first attempt's event (same messageId), not its own", () =>
      Effect.gen(function*() {
        const store = yield* SendDeduplicator
        const key = freshKey()
        const first = candidateEvent(key)
        claimedEvent(yield* store.claim(key, first))
        yield* store.release(key, first.messageId)
        const retry = candidateEvent(key)
        expect(claimedEvent(yield* store.claim(key, retry))).toEqual(first)
        // the retry holds it now
        expect((yield* store.claim(key, candidateEvent(key)))._tag).toBe("InProgress")
        // and the first attempt's late release does not free it
        yield* store.release(key, first.messageId)
        expect((yield* store.claim(key, candidateEvent(key)))._tag).toBe("InProgress")
      }).pipe(Effect.provide(layer())))

    test("a release by another attempt than the holder's changes nothing; nor does one after completion", () =>
      Effect.gen(function*() {
        const store = yield* SendDeduplicator
        const key = freshKey()
        const first = candidateEvent(key)
        claimedEvent(yield* store.claim(key, first))
        yield* store.release(key, randomUUID())
        expect((yield* store.claim(key, candidateEvent(key)))._tag).toBe("InProgress")
        const sent = new EnrichedChatEvent({ chatEvent: first, partition: 0, offset: 3 })
        yield* store.complete(key, sent)
        yield* store.release(key, first.messageId)
        expect(sentEvent(yield* store.claim(key, candidateEvent(key)))).toEqual(sent)
      }).pipe(Effect.provide(layer())))

    test("a claim whose lease ran out (its attempt died) is taken over, with the first attempt's event", () =>
      Effect.gen(function*() {
        const store = yield* SendDeduplicator
        const key = freshKey()
        const first = candidateEvent(key)
        claimedEvent(yield* store.claim(key, first))
        yield* options.advance(`${LEASE_MILLIS + 150} millis`)
        expect(claimedEvent(yield* store.claim(key, candidateEvent(key)))).toEqual(first)
      }).pipe(Effect.provide(layer())))

    test("after the window, the key is new again", () =>
      Effect.gen(function*() {
        const store = yield* SendDeduplicator
        const key = freshKey()
        const first = candidateEvent(key)
        claimedEvent(yield* store.claim(key, first))
        yield* store.complete(key, new EnrichedChatEvent({ chatEvent: first, partition: 1, offset: 5 }))
        yield* options.advance(`${WINDOW_SECONDS * 1000 + 300} millis`)
        const later = candidateEvent(key)
        expect(claimedEvent(yield* store.claim(key, later))).toEqual(later)
      }).pipe(Effect.provide(layer())))

    test("the window counts again from the send's completion", () =>
      Effect.gen(function*() {
        const store = yield* SendDeduplicator
        const key = freshKey()
        const first = candidateEvent(key)
        claimedEvent(yield* store.claim(key, first))
        yield* options.advance(`${WINDOW_SECONDS * 750} millis`)
        const sent = new EnrichedChatEvent({ chatEvent: first, partition: 1, offset: 5 })
        yield* store.complete(key, sent)
        // past the window from the claim, within it from the completion
        yield* options.advance(`${WINDOW_SECONDS * 500} millis`)
        expect(sentEvent(yield* store.claim(key, candidateEvent(key)))).toEqual(sent)
        // past it from the completion too
        yield* options.advance(`${WINDOW_SECONDS * 550} millis`)
        const later = candidateEvent(key)
        expect(claimedEvent(yield* store.claim(key, later))).toEqual(later)
      }).pipe(Effect.provide(layer())))

    test("keys are per sender, and no two (sender, clientMessageId) pairs share one", () =>
      Effect.gen(function*() {
        const store = yield* SendDeduplicator
        const suffix = randomUUID()
        // pairs whose naive concatenations (sender:id) are equal
        const keys: ReadonlyArray<SendKey> = [
          { senderId: `a:${suffix}`, clientMessageId: "b" },
          { senderId: "a", clientMessageId: `${suffix}:b` },
          { senderId: `a:${suffix}:b`, clientMessageId: "x" },
          { senderId: `other-${suffix}`, clientMessageId: "b" }
        ]
        for (const key of keys) {
          const candidate = candidateEvent(key)
          expect(claimedEvent(yield* store.claim(key, candidate))).toEqual(candidate)
        }
      }).pipe(Effect.provide(layer())))

    test("of concurrent claims of one key, exactly one is Claimed", () =>
      Effect.gen(function*() {
        const store = yield* SendDeduplicator
        const key = freshKey()
        const claims = yield* Effect.forEach(
          Array.from({ length: 20 }, () => candidateEvent(key)),
          (candidate) => store.claim(key, candidate),
          { concurrency: "unbounded" }
        )
        expect(claims.filter((claim) => claim._tag === "Claimed")).toHaveLength(1)
        expect(claims.filter((claim) => claim._tag === "InProgress")).toHaveLength(19)
      }).pipe(Effect.provide(layer())))

    test("texts and ids with quotes, newlines and emoji come back as they were", () =>
      Effect.gen(function*() {
        const store = yield* SendDeduplicator
        const key: SendKey = { senderId: `ü "x"\\${randomUUID()}`, clientMessageId: "id with 😀 and \"quotes\"" }
        const first = candidateEvent(key, "line 1\nline \"2\" 👩‍💻", "dm:ü:x")
        claimedEvent(yield* store.claim(key, first))
        yield* store.release(key, first.messageId)
        expect(claimedEvent(yield* store.claim(key, candidateEvent(key)))).toEqual(first)
        const sent = new EnrichedChatEvent({ chatEvent: first, partition: 0, offset: 0 })
        yield* store.complete(key, sent)
        expect(sentEvent(yield* store.claim(key, candidateEvent(key)))).toEqual(sent)
      }).pipe(Effect.provide(layer())))
  })
