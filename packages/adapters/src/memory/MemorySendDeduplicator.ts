import { Clock, Effect, Layer } from "effect"
import { DEFAULT_SEND_CLAIM_LEASE_MILLIS, type SendClaim, SendDeduplicator, type SendKey, traced } from "@chatify/core"
import type { ChatEvent, EnrichedChatEvent } from "@chatify/domain"

export interface MemorySendDeduplicatorOptions {
  /** How long a send is remembered (from its first claim, and again from its completion). */
  readonly windowSeconds: number
  /** How long a claim holds (see DEFAULT_SEND_CLAIM_LEASE_MILLIS). */
  readonly leaseMillis?: number | undefined
}

interface Entry {
  /** The event of the first attempt, or of the completed send. */
  event: ChatEvent
  owner: string
  leaseUntil: number
  sent: EnrichedChatEvent | undefined
  expiresAt: number
}

/** One name per (sender, clientMessageId): the sender's length first, so no two pairs share one. */
const nameOf = (key: SendKey): string => `${key.senderId.length}:${key.senderId}:${key.clientMessageId}`

/**
 * SendDeduplicator in this process's memory: for unit tests and single-process tools (the
 * embedded server keeps its keys in SQLite, pods share them in Redis). Expired entries are swept
 * at most once per minute, on use.
 */
export const MemorySendDeduplicator = (options: MemorySendDeduplicatorOptions) =>
  Layer.sync(SendDeduplicator, () => {
    const windowMillis = options.windowSeconds * 1000
    const leaseMillis = options.leaseMillis ?? DEFAULT_SEND_CLAIM_LEASE_MILLIS
    const sweepEvery = Math.min(windowMillis, 60_000)
    const entries = new Map<string, Entry>()
    let nextSweep = 0
    const live = (name: string, now: number): Entry | undefined => {
      if (now >= nextSweep) {
        for (const [other, entry] of entries) if (entry.expiresAt <= now) entries.delete(other)
        nextSweep = now + sweepEvery
      }
      const entry = entries.get(name)
      return entry === undefined || entry.expiresAt <= now ? undefined : entry
    }
    return SendDeduplicator.of({
      claim: traced("MemorySendDeduplicator.claim")((key: SendKey, candidate: ChatEvent) =>
        Effect.map(Clock.currentTimeMillis, (now): SendClaim => {
          const name = nameOf(key)
          const entry = live(name, now)
          if (entry === undefined) {
            entries.set(name, {
              event: candidate,
              owner: candidate.messageId,
              leaseUntil: now + leaseMillis,
              sent: undefined,
              expiresAt: now + windowMillis
            })
            return { _tag: "Claimed", event: candidate }
          }
          if (entry.sent !== undefined) return { _tag: "Sent", sent: entry.sent }
          if (entry.leaseUntil > now) return { _tag: "InProgress" }
          entry.owner = candidate.messageId
          entry.leaseUntil = now + leaseMillis
          return { _tag: "Claimed", event: entry.event }
        })
      ),
      complete: traced("MemorySendDeduplicator.complete")((key: SendKey, sent: EnrichedChatEvent) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          const name = nameOf(key)
          const entry = live(name, now)
          if (entry?.sent !== undefined) return
          entries.set(name, { event: sent.chatEvent, owner: "", leaseUntil: 0, sent, expiresAt: now + windowMillis })
        })
      ),
      release: traced("MemorySendDeduplicator.release")((key: SendKey, owner: string) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          const entry = live(nameOf(key), now)
          if (entry !== undefined && entry.sent === undefined && entry.owner === owner) entry.leaseUntil = 0
        })
      )
    })
  })
