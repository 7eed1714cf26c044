import { Chunk, Effect, Mailbox, Option, Schedule, Stream } from "effect"
import {
  Conflict,
  type EnrichedChatEvent,
  partitionForScope,
  type ScopeRef,
  scopeKey,
  type StreamPosition,
  Subscribed,
  type SubscribeError,
  type SubscriptionItem,
  Timeout
} from "@chatify/domain"
import { authorizeScope } from "./Access.js"
import {
  ChatEventSource,
  ChatHistory,
  ChatPolicy,
  CurrentUser,
  LocalFanout,
  Presence,
  ScopeAuthorizer
} from "./Ports.js"
import { CoreSettings } from "./Settings.js"

export type SubscribeRequirements =
  | ChatEventSource
  | ChatHistory
  | ChatPolicy
  | CoreSettings
  | CurrentUser
  | LocalFanout
  | Presence
  | ScopeAuthorizer

const REPLAY_PAGE = 500

/**
 * Waits until the history writer has stored everything before `endOffset` on the partition:
 * only then is the history complete enough to fill a resume gap.
 */
const awaitHistoryUpTo = (partition: number, endOffset: number) =>
  Effect.gen(function*() {
    const source = yield* ChatEventSource
    const settings = yield* CoreSettings
    const caughtUp = source.committedOffsets(settings.historyWriterGroup).pipe(
      Effect.map((committed) => (committed.get(partition) ?? 0) >= endOffset)
    )
    yield* caughtUp.pipe(
      Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (done) => done }),
      Effect.timeoutFail({
        duration: settings.historyCatchUpTimeout,
        onTimeout: () => new Timeout({ operation: "waiting for the history writer to catch up" })
      })
    )
  })

/** The scope's events after `from` up to and including `lastOffset`, read from history page by page. */
const replay = (scope: ScopeRef, from: StreamPosition, lastOffset: number) =>
  Stream.paginateChunkEffect(from, (position) =>
    Effect.flatMap(ChatHistory, (history) => history.after(scope, position, REPLAY_PAGE)).pipe(
      Effect.map((events) => {
        const wanted = events.filter((e) => e.offset <= lastOffset)
        const last = wanted.at(-1)
        const more = last !== undefined && events.length === REPLAY_PAGE && last.offset < lastOffset
        return [
          Chunk.unsafeFromArray(wanted),
          more ? Option.some({ partition: from.partition, offset: last.offset }) : Option.none()
        ] as const
      })
    ))

/**
 * A live subscription to a scope, optionally resumed after a position the client saw last.
 *
 * The subscriber is registered with this pod's fan-out before the log's end offsets are read, so
 * every event at or after those offsets arrives live; everything between the resume position and
 * them is replayed from the history once the history writer has committed that far. Live events
 * already replayed are dropped by offset, so the switch has no gap and no duplicate.
 */
export const subscribe = (
  scope: ScopeRef,
  after: StreamPosition | undefined
): Stream.Stream<SubscriptionItem, SubscribeError, SubscribeRequirements> =>
  Stream.unwrapScoped(
    Effect.gen(function*() {
      const identity = yield* authorizeScope(scope, "subscribe")
      const source = yield* ChatEventSource
      const fanout = yield* LocalFanout
      const presence = yield* Presence
      const settings = yield* CoreSettings
      const key = scopeKey(scope)
      const partition = partitionForScope(scope, source.partitions)
      if (after !== undefined && after.partition !== partition) {
        return yield* new Conflict({
          message: `position is on partition ${after.partition}, but the scope is on partition ${partition}`
        })
      }

      const live = yield* fanout.register(key, settings.subscriberBufferSize)
      yield* Effect.acquireRelease(
        presence.track(key, identity.userId, identity.connectionId),
        () => presence.untrack(key, identity.connectionId).pipe(Effect.ignore)
      )
      yield* presence.track(key, identity.userId, identity.connectionId).pipe(
        Effect.ignore,
        Effect.repeat(Schedule.spaced(Math.max(1_000, Math.floor(presence.ttlMillis / 3)))),
        Effect.forkScoped
      )

      let replayed: Stream.Stream<EnrichedChatEvent, SubscribeError, ChatHistory> = Stream.empty
      let lastDelivered = after?.offset ?? -1
      if (after !== undefined) {
        const endOffset = (yield* source.endOffsets).get(partition) ?? 0
        if (after.offset < endOffset - 1) {
          yield* awaitHistoryUpTo(partition, endOffset)
          replayed = replay(scope, after, endOffset - 1)
        }
      }
      const liveEvents = Mailbox.toStream(live).pipe(
        Stream.filter((event) => {
          if (event.offset <= lastDelivered) return false
          lastDelivered = event.offset
          return true
        })
      )
      const replayTracked = Stream.tap(replayed, (event) =>
        Effect.sync(() => {
          lastDelivered = Math.max(lastDelivered, event.offset)
        }))
      const marker: SubscriptionItem = new Subscribed({ scopeType: scope.scopeType, scopeId: scope.scopeId })
      return Stream.make(marker).pipe(
        Stream.concat(replayTracked),
        Stream.concat(liveEvents)
      )
    })
  )
