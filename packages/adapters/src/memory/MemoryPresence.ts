import { Clock, Effect, Layer } from "effect"
import { Presence, traced } from "@chatify/core"
import type { PresentUser } from "@chatify/domain"

/** Presence with a TTL per connection: an entry not refreshed within ttl is gone. */
export const MemoryPresence = (settings: { readonly ttlMillis: number }) =>
  Layer.sync(Presence, () => {
    const scopes = new Map<string, Map<string, { userId: string; expiresAt: number }>>()
    const online = (scopeKey: string, now: number): ReadonlyArray<PresentUser> => {
      const connections = scopes.get(scopeKey)
      if (connections === undefined) return []
      const counts = new Map<string, number>()
      for (const [connectionId, entry] of connections) {
        if (entry.expiresAt <= now) connections.delete(connectionId)
        else counts.set(entry.userId, (counts.get(entry.userId) ?? 0) + 1)
      }
      if (connections.size === 0) scopes.delete(scopeKey)
      return Array.from(counts, ([userId, n]) => ({ userId, connections: n })).sort((a, b) =>
        a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0
      )
    }
    return {
      ttlMillis: settings.ttlMillis,
      track: traced("MemoryPresence.track")((scopeKey: string, userId: string, connectionId: string) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          let connections = scopes.get(scopeKey)
          if (connections === undefined) {
            connections = new Map()
            scopes.set(scopeKey, connections)
          }
          connections.set(connectionId, { userId, expiresAt: now + settings.ttlMillis })
        })
      ),
      untrack: traced("MemoryPresence.untrack")((scopeKey: string, connectionId: string) =>
        Effect.sync(() => {
          const connections = scopes.get(scopeKey)
          connections?.delete(connectionId)
          if (connections?.size === 0) scopes.delete(scopeKey)
        })
      ),
      online: traced("MemoryPresence.online")((scopeKey: string) =>
        Effect.map(Clock.currentTimeMillis, (now) => online(scopeKey, now))
      )
    }
  })
