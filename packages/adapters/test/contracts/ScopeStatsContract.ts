import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck } from "effect"
import type { Layer } from "effect"
import { ScopeStatsStore } from "@chatify/core"
import { type ChatScopeType, type ScopeRef, ScopeWindowStats } from "@chatify/domain"

const MINUTE = 60 * 1000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
// Just before a UTC midnight, so the windows of a test cross a day (a Cassandra partition bucket).
const T0 = Date.UTC(2026, 10, 29, 23, 30)

const scopeOf = (scopeType: ChatScopeType = 0): ScopeRef => ({ scopeType, scopeId: `stats-${randomUUID()}` })

/** A one-minute window starting `minute` minutes after T0, with counts derived from `n`. */
const windowAt = (scope: ScopeRef, minute: number, n = minute + 1): ScopeWindowStats => {
  const start = T0 + minute * MINUTE
  return new ScopeWindowStats({
    scopeType: scope.scopeType,
    scopeId: scope.scopeId,
    windowStartUtc: new Date(start),
    windowEndUtc: new Date(start + MINUTE),
    messageCount: n * 2,
    distinctSenders: n,
    characterCount: n * 37,
    firstEventAtUtc: new Date(start + 1_000),
    lastEventAtUtc: new Date(start + MINUTE - 1)
  })
}

const startsOf = (windows: ReadonlyArray<ScopeWindowStats>) => windows.map((w) => w.windowStartUtc.getTime())

const range = (scope: ScopeRef, from: number, to: number, limit = 10_000) =>
  Effect.flatMap(ScopeStatsStore, (store) => store.range(scope, { from: new Date(from), to: new Date(to), limit }))

/**
 * What every ScopeStatsStore owes the stats writer and the stats query. It only touches scopes it
 * made up, so it can run against a shared, long-lived database.
 */
export const scopeStatsContract = (name: string, makeLayer: () => Layer.Layer<ScopeStatsStore, unknown>): void => {
  describe(`ScopeStatsStore contract: ${name}`, () => {
    it.effect("reads back what was stored, oldest first, across a day boundary", () =>
      Effect.gen(function*() {
        const store = yield* ScopeStatsStore
        const scope = scopeOf()
        const windows = [50, 3, 29, 31, 0].map((m) => windowAt(scope, m))
        yield* store.upsert(windows)

        const read = yield* range(scope, T0, T0 + DAY)
        expect(startsOf(read)).toEqual([0, 3, 29, 31, 50].map((m) => T0 + m * MINUTE))
        expect(read[0]).toBeInstanceOf(ScopeWindowStats)
        expect(read[0]).toEqual(windowAt(scope, 0))
        expect(read[4]).toEqual(windowAt(scope, 50))
      }).pipe(Effect.provide(makeLayer())))

    it.effect("keeps the windows that start in [from, to)", () =>
      Effect.gen(function*() {
        const store = yield* ScopeStatsStore
        const scope = scopeOf()
        yield* store.upsert([0, 1, 2, 3, 4, 5].map((m) => windowAt(scope, m)))
        expect(startsOf(yield* range(scope, T0 + MINUTE, T0 + 4 * MINUTE))).toEqual(
          [1, 2, 3].map((m) => T0 + m * MINUTE)
        )
        // a window that started before `from` is left out even though it ends after it
        expect(startsOf(yield* range(scope, T0 + 30_000, T0 + 2 * MINUTE))).toEqual([T0 + MINUTE])
        expect(yield* range(scope, T0 + 10 * MINUTE, T0 + HOUR)).toEqual([])
      }).pipe(Effect.provide(makeLayer())))

    it.effect("upserts idempotently per (scope, windowStart): a replay doubles nothing", () =>
      Effect.gen(function*() {
        const store = yield* ScopeStatsStore
        const scope = scopeOf()
        const window = windowAt(scope, 7)
        yield* store.upsert([window])
        yield* store.upsert([window])
        yield* store.upsert([window, window])
        expect(yield* range(scope, T0, T0 + HOUR)).toEqual([window])
      }).pipe(Effect.provide(makeLayer())))

    it.effect("a later result of the same window replaces the earlier one", () =>
      Effect.gen(function*() {
        const store = yield* ScopeStatsStore
        const scope = scopeOf()
        yield* store.upsert([windowAt(scope, 7, 3)])
        yield* store.upsert([windowAt(scope, 7, 5)])
        expect(yield* range(scope, T0, T0 + HOUR)).toEqual([windowAt(scope, 7, 5)])
      }).pipe(Effect.provide(makeLayer())))

    it.effect("keeps scopes apart, including one id under both scope types", () =>
      Effect.gen(function*() {
        const store = yield* ScopeStatsStore
        const channel = scopeOf(0)
        const direct: ScopeRef = { scopeType: 1, scopeId: channel.scopeId }
        yield* store.upsert([windowAt(channel, 1, 4), windowAt(direct, 1, 9), windowAt(direct, 2)])
        expect(yield* range(channel, T0, T0 + HOUR)).toEqual([windowAt(channel, 1, 4)])
        expect(yield* range(direct, T0, T0 + HOUR)).toEqual([windowAt(direct, 1, 9), windowAt(direct, 2)])
        expect(yield* range(scopeOf(), T0, T0 + HOUR)).toEqual([])
      }).pipe(Effect.provide(makeLayer())))

    it.effect("returns at most `limit` windows, the oldest", () =>
      Effect.gen(function*() {
        const store = yield* ScopeStatsStore
        const scope = scopeOf()
        yield* store.upsert([0, 10, 20, 30, 40, 50, 60].map((m) => windowAt(scope, m)))
        expect(startsOf(yield* range(scope, T0, T0 + DAY, 3))).toEqual([0, 10, 20].map((m) => T0 + m * MINUTE))
        expect(yield* range(scope, T0, T0 + DAY, 0)).toEqual([])
      }).pipe(Effect.provide(makeLayer())))

    it.effect("accepts an empty batch", () =>
      Effect.gen(function*() {
        const store = yield* ScopeStatsStore
        yield* store.upsert([])
      }).pipe(Effect.provide(makeLayer())))

    it.effect.prop(
      "any batches of upserts read back as the last write per window, in order",
      {
        // minutes after T0 (across the day boundary) and a value: repeats overwrite
        writes: FastCheck.array(
          FastCheck.tuple(FastCheck.integer({ min: 0, max: 90 }), FastCheck.integer({ min: 1, max: 1_000 })),
          { maxLength: 40 }
        ),
        batch: FastCheck.integer({ min: 1, max: 10 }),
        from: FastCheck.integer({ min: 0, max: 90 }),
        span: FastCheck.integer({ min: 1, max: 90 })
      },
      ({ batch, from, span, writes }) =>
        Effect.gen(function*() {
          const store = yield* ScopeStatsStore
          const scope = scopeOf()
          const expected = new Map<number, ScopeWindowStats>()
          for (let i = 0; i < writes.length; i += batch) {
            const windows = writes.slice(i, i + batch).map(([minute, n]) => windowAt(scope, minute, n))
            // within one batch the last write of a window wins, as across batches (the writer keeps one per window)
            const latest = new Map(windows.map((w) => [w.windowStartUtc.getTime(), w]))
            yield* store.upsert(Array.from(latest.values()))
            for (const [start, w] of latest) expected.set(start, w)
          }
          const lower = T0 + from * MINUTE
          const upper = lower + span * MINUTE
          const want = Array.from(expected.values())
            .filter((w) => w.windowStartUtc.getTime() >= lower && w.windowStartUtc.getTime() < upper)
            .sort((a, b) => a.windowStartUtc.getTime() - b.windowStartUtc.getTime())
          expect(yield* range(scope, lower, upper)).toEqual(want)
        }).pipe(Effect.provide(makeLayer())),
      { fastCheck: { numRuns: 15 } }
    )
  })
}
