import { Effect, Layer } from "effect"
import { ScopeStatsStore, traced } from "@chatify/core"
import { type ScopeRef, scopeKey, type ScopeWindowStats } from "@chatify/domain"

/** Window stats in this process (tests, tools): per scope, windows by start time; an upsert replaces. */
export const MemoryScopeStats: Layer.Layer<ScopeStatsStore> = Layer.sync(ScopeStatsStore, () => {
  const scopes = new Map<string, Map<number, ScopeWindowStats>>()
  return ScopeStatsStore.of({
    upsert: traced("MemoryScopeStats.upsert")((windows: ReadonlyArray<ScopeWindowStats>) =>
      Effect.sync(() => {
        for (const window of windows) {
          const key = scopeKey(window)
          const byStart = scopes.get(key) ?? new Map<number, ScopeWindowStats>()
          byStart.set(window.windowStartUtc.getTime(), window)
          scopes.set(key, byStart)
        }
      })
    ),
    range: traced("MemoryScopeStats.range")((
      scope: ScopeRef,
      { from, limit, to }: { readonly from: Date; readonly to: Date; readonly limit: number }
    ) =>
      Effect.sync(() =>
        Array.from(scopes.get(scopeKey(scope))?.values() ?? [])
          .filter((w) => w.windowStartUtc.getTime() >= from.getTime() && w.windowStartUtc.getTime() < to.getTime())
          .sort((a, b) => a.windowStartUtc.getTime() - b.windowStartUtc.getTime())
          .slice(0, Math.max(0, Math.trunc(limit)))
      )
    )
  })
})
