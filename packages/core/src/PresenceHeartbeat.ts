import { Context, Effect, Layer, Option, Schedule, type Scope, Tracer } from "effect"
import { acquirePlainRelease } from "./Finalizers.js"
import { type Identity, Presence } from "./Ports.js"

/**
 * Keeps this pod's subscriptions present: one fiber per pod refreshes every held entry before its
 * TTL runs out, instead of a timer per subscription.
 */
export class PresenceHeartbeat extends Context.Tag("chatify/PresenceHeartbeat")<PresenceHeartbeat, {
  /** Tracks the identity in the scope until the surrounding Scope closes. */
  readonly hold: (scopeKey: string, identity: Identity) => Effect.Effect<void, never, Scope.Scope>
}>() {
  static readonly layer = Layer.scoped(
    PresenceHeartbeat,
    Effect.gen(function*() {
      const presence = yield* Presence
      // counted, so two subscriptions of one connection to one scope leave presence only together
      const held = new Map<string, { readonly scopeKey: string; readonly identity: Identity; holders: number }>()
      const entryKey = (scopeKey: string, connectionId: string) => `${connectionId}\u0000${scopeKey}`
      const refreshAll = Effect.suspend(() =>
        Effect.forEach(
          Array.from(held.values()),
          ({ identity, scopeKey }) => Effect.ignore(presence.track(scopeKey, identity.userId, identity.connectionId)),
          { concurrency: 16, discard: true }
        )
      )
      yield* refreshAll.pipe(
        // a round per ttl/3 for every held entry, with no request to belong to: no trace of its own
        Effect.withTracerEnabled(false),
        Effect.repeat(Schedule.spaced(Math.max(1_000, Math.floor(presence.ttlMillis / 3)))),
        Effect.forkScoped
      )
      return {
        hold: (scopeKey, identity) =>
          acquirePlainRelease(
            Effect.zipRight(
              Effect.sync(() => {
                const key = entryKey(scopeKey, identity.connectionId)
                const entry = held.get(key)
                if (entry === undefined) held.set(key, { scopeKey, identity, holders: 1 })
                else entry.holders++
              }),
              Effect.ignore(presence.track(scopeKey, identity.userId, identity.connectionId))
            ).pipe(Effect.zipRight(Effect.serviceOption(Tracer.ParentSpan))),
            // the untrack joins the trace of the request that tracked (only its span is kept; read without
            // Effect.currentParentSpan, whose NoSuchElementException with tracing off costs a stack trace)
            (parent) =>
              Effect.suspend(() => {
                const key = entryKey(scopeKey, identity.connectionId)
                const entry = held.get(key)
                if (entry !== undefined && --entry.holders > 0) return Effect.void
                held.delete(key)
                const untrack = Effect.ignore(presence.untrack(scopeKey, identity.connectionId))
                return Option.isSome(parent) ? Effect.withParentSpan(untrack, parent.value) : untrack
              })
          ).pipe(Effect.asVoid)
      }
    })
  )
}
