import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck } from "effect"
import type { Layer } from "effect"
import { ChatHistory, type HistorySlice } from "@chatify/core"
import { ChatEvent, EnrichedChatEvent, type HistoryCursorPosition, type ScopeRef } from "@chatify/domain"

const HOUR = 60 * 60 * 1000
const DAY = 24 * HOUR
// A fixed origin keeps the data reproducible; each test's own scope keeps it apart on a shared database.
const T0 = Date.UTC(2024, 0, 15, 12, 0, 0)

const channel = (): ScopeRef => ({ scopeType: 0, scopeId: `contract-${randomUUID()}` })

const eventAt = (
  scope: ScopeRef,
  createdAtMs: number,
  offset: number,
  options: { readonly partition?: number; readonly messageId?: string; readonly text?: string } = {}
): EnrichedChatEvent =>
  new EnrichedChatEvent({
    chatEvent: new ChatEvent({
      messageId: options.messageId ?? randomUUID(),
      scopeType: scope.scopeType,
      scopeId: scope.scopeId,
      senderId: "contract-sender",
      text: options.text ?? `message ${offset}`,
      createdAtUtc: new Date(createdAtMs),
      originPodId: "contract-pod"
    }),
    partition: options.partition ?? 0,
    offset
  })

const idsOf = (events: ReadonlyArray<EnrichedChatEvent>): ReadonlyArray<string> =>
  events.map((e) => e.chatEvent.messageId)

const timesOf = (events: ReadonlyArray<EnrichedChatEvent>): ReadonlyArray<number> =>
  events.map((e) => e.chatEvent.createdAtUtc.getTime())

/** Newest first by time; ties on time are ordered by the store, so only the times are compared. */
const newestFirst = (events: ReadonlyArray<EnrichedChatEvent>): ReadonlyArray<EnrichedChatEvent> =>
  [...events].sort((a, b) => b.chatEvent.createdAtUtc.getTime() - a.chatEvent.createdAtUtc.getTime())

/** Follows `next` until the store says there is no more, collecting every page. */
const walk = (scope: ScopeRef, limit: number) =>
  Effect.gen(function*() {
    const history = yield* ChatHistory
    const pages: Array<ReadonlyArray<EnrichedChatEvent>> = []
    let before: HistoryCursorPosition | undefined = undefined
    // Bounded, so a store whose cursor never ends fails the test instead of hanging it.
    for (let guard = 0; guard < 10_000; guard++) {
      const slice: HistorySlice = yield* history.page(scope, { limit, before })
      pages.push(slice.items)
      if (slice.next === undefined) return pages
      before = slice.next
    }
    return yield* Effect.dieMessage("the history cursor never ended")
  })

/**
 * The behaviour every ChatHistory adapter owes its callers. It only talks to the port and only
 * touches scopes it made up, so it can run against a shared, long-lived database.
 */
export const chatHistoryContract = (name: string, makeLayer: () => Layer.Layer<ChatHistory, unknown>): void => {
  describe(`ChatHistory contract: ${name}`, () => {
    it.effect("pages newest first after an append", () =>
      Effect.gen(function*() {
        const history = yield* ChatHistory
        const scope = channel()
        const events = [0, 1, 2, 3, 4].map((i) => eventAt(scope, T0 + i * 1000, i))
        // Appended out of order: the order of a page comes from the time, not from the insertion.
        yield* history.append([events[2]!, events[0]!, events[4]!])
        yield* history.append([events[1]!, events[3]!])

        const slice = yield* history.page(scope, { limit: 10, before: undefined })
        expect(idsOf(slice.items)).toEqual(idsOf([...events].reverse()))
        expect(slice.next).toBeUndefined()

        const first = slice.items[0]!
        expect(first).toBeInstanceOf(EnrichedChatEvent)
        expect(first.chatEvent).toBeInstanceOf(ChatEvent)
        expect(first.chatEvent.createdAtUtc).toBeInstanceOf(Date)
        expect(first).toEqual(events[4])
      }).pipe(Effect.provide(makeLayer())))

    it.effect("gives a cursor only when there is more", () =>
      Effect.gen(function*() {
        const history = yield* ChatHistory
        const scope = channel()
        const events = [0, 1, 2, 3].map((i) => eventAt(scope, T0 + i * 1000, i))
        yield* history.append(events)

        const exact = yield* history.page(scope, { limit: 4, before: undefined })
        expect(exact.items).toHaveLength(4)
        expect(exact.next).toBeUndefined()

        const first = yield* history.page(scope, { limit: 3, before: undefined })
        expect(idsOf(first.items)).toEqual(idsOf([events[3]!, events[2]!, events[1]!]))
        expect(first.next).toEqual({ createdAtMs: T0 + 1000, messageId: events[1]!.chatEvent.messageId })

        const second = yield* history.page(scope, { limit: 3, before: first.next })
        expect(idsOf(second.items)).toEqual(idsOf([events[0]!]))
        expect(second.next).toBeUndefined()
      }).pipe(Effect.provide(makeLayer())))

    it.effect("appends idempotently on messageId", () =>
      Effect.gen(function*() {
        const history = yield* ChatHistory
        const scope = channel()
        const event = eventAt(scope, T0, 7)
        yield* history.append([event])
        yield* history.append([event])
        // A redelivery in the same batch is still one message.
        yield* history.append([event, event])

        const slice = yield* history.page(scope, { limit: 10, before: undefined })
        expect(idsOf(slice.items)).toEqual([event.chatEvent.messageId])
        expect(slice.next).toBeUndefined()

        const replay = yield* history.after(scope, { partition: 0, offset: 0 }, 10)
        expect(idsOf(replay)).toEqual([event.chatEvent.messageId])
      }).pipe(Effect.provide(makeLayer())))

    it.effect("accepts an empty batch", () =>
      Effect.gen(function*() {
        const history = yield* ChatHistory
        const scope = channel()
        yield* history.append([])
        const slice = yield* history.page(scope, { limit: 10, before: undefined })
        expect(slice.items).toEqual([])
      }).pipe(Effect.provide(makeLayer())))

    it.effect.prop(
      "walks every message exactly once, page by page",
      {
        // Hours since the origin: few distinct values, so equal times (ties) are common and span days.
        hours: FastCheck.array(FastCheck.integer({ min: 0, max: 96 }), { maxLength: 60 }),
        limit: FastCheck.integer({ min: 1, max: 15 })
      },
      ({ hours, limit }) =>
        Effect.gen(function*() {
          const history = yield* ChatHistory
          const scope = channel()
          const events = hours.map((h, i) => eventAt(scope, T0 + h * HOUR, i))
          yield* history.append(events)

          const pages = yield* walk(scope, limit)
          const items = pages.flat()

          // Every page but the last is full, and only the last is empty when the scope is.
          for (const page of pages.slice(0, -1)) expect(page).toHaveLength(limit)
          expect(pages.length).toBe(Math.max(1, Math.ceil(events.length / limit)))

          // No overlap, no gap.
          expect(new Set(idsOf(items)).size).toBe(items.length)
          expect([...idsOf(items)].sort()).toEqual([...idsOf(events)].sort())

          // Newest first across page boundaries.
          expect(timesOf(items)).toEqual(timesOf(newestFirst(events)))
        }).pipe(Effect.provide(makeLayer())),
      { fastCheck: { numRuns: 20 } }
    )

    it.effect("keeps scopes apart", () =>
      Effect.gen(function*() {
        const history = yield* ChatHistory
        const scope = channel()
        // Same id as a direct message, and another channel: neither belongs to `scope`.
        const sameIdOtherType: ScopeRef = { scopeType: 1, scopeId: scope.scopeId }
        const otherChannel = channel()
        const mine = eventAt(scope, T0, 1)
        const dm = eventAt(sameIdOtherType, T0 + 1000, 2)
        const other = eventAt(otherChannel, T0 + 2000, 3)
        yield* history.append([mine, dm, other])

        const slice = yield* history.page(scope, { limit: 10, before: undefined })
        expect(idsOf(slice.items)).toEqual([mine.chatEvent.messageId])
        const dmSlice = yield* history.page(sameIdOtherType, { limit: 10, before: undefined })
        expect(idsOf(dmSlice.items)).toEqual([dm.chatEvent.messageId])
        const otherSlice = yield* history.page(otherChannel, { limit: 10, before: undefined })
        expect(idsOf(otherSlice.items)).toEqual([other.chatEvent.messageId])

        // The three share partition 0, with offsets 1, 2, 3: a replay still only sees its own scope.
        const replay = yield* history.after(scope, { partition: 0, offset: 0 }, 10)
        expect(idsOf(replay)).toEqual([mine.chatEvent.messageId])
        const dmReplay = yield* history.after(sameIdOtherType, { partition: 0, offset: 0 }, 10)
        expect(idsOf(dmReplay)).toEqual([dm.chatEvent.messageId])
      }).pipe(Effect.provide(makeLayer())))

    it.effect("replays later offsets of the partition, ascending and limited", () =>
      Effect.gen(function*() {
        const history = yield* ChatHistory
        const scope = channel()
        // Offsets out of time order: `after` follows the log, not the clock.
        const onPartition = [10, 11, 12, 13, 14, 15].map((offset, i) =>
          eventAt(scope, T0 + (6 - i) * 1000, offset, { partition: 3 })
        )
        const elsewhere = eventAt(scope, T0, 20, { partition: 4 })
        yield* history.append([...onPartition].reverse())
        yield* history.append([elsewhere])

        const later = yield* history.after(scope, { partition: 3, offset: 11 }, 100)
        expect(later.map((e) => e.offset)).toEqual([12, 13, 14, 15])
        expect(later.every((e) => e.partition === 3)).toBe(true)

        const limited = yield* history.after(scope, { partition: 3, offset: 9 }, 2)
        expect(limited.map((e) => e.offset)).toEqual([10, 11])
        expect(idsOf(limited)).toEqual(idsOf(onPartition.slice(0, 2)))

        const caughtUp = yield* history.after(scope, { partition: 3, offset: 15 }, 10)
        expect(caughtUp).toEqual([])

        const otherPartition = yield* history.after(scope, { partition: 4, offset: 0 }, 10)
        expect(idsOf(otherPartition)).toEqual([elsewhere.chatEvent.messageId])
      }).pipe(Effect.provide(makeLayer())))

    it.effect("pages across days", () =>
      Effect.gen(function*() {
        const history = yield* ChatHistory
        const scope = channel()
        // Three per day over five days, including both edges of midnight.
        const events = [0, 1, 2, 3, 4].flatMap((day) => {
          const midnight = Date.UTC(2024, 0, 15 + day)
          return [midnight - 1, midnight, midnight + 12 * HOUR]
        }).map((ms, i) => eventAt(scope, ms, i))
        yield* history.append(events)

        const pages = yield* walk(scope, 4)
        expect(pages.map((p) => p.length)).toEqual([4, 4, 4, 3])
        expect(idsOf(pages.flat())).toEqual(idsOf([...events].reverse()))

        // A cursor from several days back still starts right below it.
        const third = events[8]!
        const older = yield* history.page(scope, {
          limit: 100,
          before: { createdAtMs: third.chatEvent.createdAtUtc.getTime(), messageId: third.chatEvent.messageId }
        })
        expect(idsOf(older.items)).toEqual(idsOf(events.slice(0, 8).reverse()))
        expect(older.next).toBeUndefined()
        expect(timesOf(older.items)[0]! - timesOf(older.items).at(-1)!).toBeGreaterThan(DAY)
      }).pipe(Effect.provide(makeLayer())))

    it.effect("returns an empty page without a cursor for an empty scope", () =>
      Effect.gen(function*() {
        const history = yield* ChatHistory
        const scope = channel()
        const slice = yield* history.page(scope, { limit: 10, before: undefined })
        expect(slice.items).toEqual([])
        expect(slice.next).toBeUndefined()

        const fromCursor = yield* history.page(scope, {
          limit: 10,
          before: { createdAtMs: T0, messageId: randomUUID() }
        })
        expect(fromCursor.items).toEqual([])
        expect(fromCursor.next).toBeUndefined()

        const replay = yield* history.after(scope, { partition: 0, offset: 0 }, 10)
        expect(replay).toEqual([])
      }).pipe(Effect.provide(makeLayer())))

    it.effect("answers a ping", () =>
      Effect.gen(function*() {
        const history = yield* ChatHistory
        yield* history.ping
      }).pipe(Effect.provide(makeLayer())))
  })
}
