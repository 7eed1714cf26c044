import { Cause, Chunk, Clock, Effect, Exit, Mailbox, Option, Schedule, type Scope, Stream } from "effect"
import {
  Conflict,
  type EnrichedChatEvent,
  partitionForScope,
  type ScopeRef,
  scopeKey,
  type StreamPosition,
  Subscribed,
  type SubscribeError,
  SubscriptionLagged,
  type SubscriptionItem,
  Timeout,
  Unauthenticated,
  Unexpected
} from "@chatify/domain"
import { authorizeScope } from "./Access.js"
import { addPlainFinalizer } from "./Finalizers.js"
import {
  ChatEventSource,
  ChatHistory,
  ChatPolicy,
  CurrentUser,
  LocalFanout,
  ReadRateLimiter,
  ScopeAuthorizer
} from "./Ports.js"
import { PresenceHeartbeat } from "./PresenceHeartbeat.js"
import { checkReadRate } from "./ReadLimit.js"
import { CoreSettings } from "./Settings.js"
import { traced } from "./Tracing.js"

export type SubscribeRequirements =
  | ChatEventSource
  | ChatHistory
  | ChatPolicy
  | CoreSettings
  | CurrentUser
  | LocalFanout
  | PresenceHeartbeat
  | ReadRateLimiter
  | ScopeAuthorizer

const REPLAY_PAGE = 500

const expired = new Unauthenticated({ message: "the access token expired" })

/** Defects of a replay never reach a client as such: they end the subscription as Unexpected. */
const unexpected = new Unexpected({ message: "the subscription failed unexpectedly" })

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
  Stream.paginateChunkEffect(
    from,
    (position) =>
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
      )
  )

/**
 * Where a subscription's items go. `push` is called synchronously from the fan-out, so it must
 * not block: it returns false when the subscriber cannot take more (it is then ended as lagged).
 * `pushReplay` takes a page of history and may wait until the subscriber has room for more.
 * `fail` ends the subscription; nothing is pushed after it.
 */
export interface SubscriptionSink {
  readonly push: (item: SubscriptionItem) => boolean
  readonly pushReplay: (events: ReadonlyArray<EnrichedChatEvent>) => Effect.Effect<boolean>
  readonly fail: (error: SubscribeError) => void
}

/**
 * A live subscription to a scope, optionally resumed after the position the client saw last,
 * delivering into `sink` until the surrounding Scope closes: first a `Subscribed` marker, then
 * events in log order.
 *
 * The subscriber joins this pod's fan-out before the log's end offsets are read, so every event
 * at or after them arrives live. Everything between the resume position and them is replayed from
 * the history once the history writer has committed that far; live events meanwhile wait in a
 * buffer and are released after the replay, minus what it already delivered: no gap, no
 * duplicate. A subscriber whose sink refuses an event, or whose held-back buffer exceeds
 * `subscriberBufferSize` during a replay, ends with SubscriptionLagged and resumes from its last
 * position. Each subscription is a read in the caller's read window: past it, RateLimited before
 * anything is registered, tracked or read.
 */
export const subscribeInto: (
  scope: ScopeRef,
  after: StreamPosition | undefined,
  sink: SubscriptionSink
) => Effect.Effect<void, SubscribeError, SubscribeRequirements | Scope.Scope> = traced("Chat.subscribe")((
  scope: ScopeRef,
  after: StreamPosition | undefined,
  sink: SubscriptionSink
) =>
  Effect.gen(function*() {
    const identity = yield* authorizeScope(scope, "subscribe")
    yield* checkReadRate(identity)
    const source = yield* ChatEventSource
    const fanout = yield* LocalFanout
    const settings = yield* CoreSettings
    const key = scopeKey(scope)
    const partition = partitionForScope(scope, source.partitions)
    if (after !== undefined && after.partition !== partition) {
      return yield* new Conflict({
        message: `position is on partition ${after.partition}, but the scope is on partition ${partition}`
      })
    }

    let ended = false
    const end = (error: SubscribeError) => {
      if (ended) return
      ended = true
      sink.fail(error)
    }
    const lagged = () =>
      end(new SubscriptionLagged({ scopeId: scope.scopeId, bufferSize: settings.subscriberBufferSize }))
    yield* addPlainFinalizer(Effect.sync(() => {
      ended = true
    }))
    let lastDelivered = after?.offset ?? -1
    const deliverNow = (event: EnrichedChatEvent): boolean => {
      if (ended) return false
      if (event.offset <= lastDelivered) return true
      if (!sink.push(event)) {
        lagged()
        return false
      }
      lastDelivered = event.offset
      return true
    }
    // live events wait here until the marker (and, on resume, the replay) is delivered
    let held: Array<EnrichedChatEvent> | undefined = []
    const goLive = Effect.sync(() => {
      const waiting = held ?? []
      held = undefined
      for (const event of waiting) if (!deliverNow(event)) return
    })

    yield* fanout.register(key, {
      deliver: (event) => {
        if (held === undefined) return deliverNow(event)
        if (ended) return false
        if (held.length >= settings.subscriberBufferSize) {
          lagged()
          return false
        }
        held.push(event)
        return true
      }
    })
    yield* (yield* PresenceHeartbeat).hold(key, identity)
    if (identity.expiresAtMs !== undefined) {
      const expiresAtMs = identity.expiresAtMs
      yield* Clock.currentTimeMillis.pipe(
        Effect.flatMap((now) => Effect.sleep(Math.max(0, expiresAtMs - now))),
        Effect.zipRight(Effect.sync(() => end(expired))),
        Effect.forkScoped
      )
    }

    // read after joining the fan-out: every event at or after endOffset is certain to arrive live
    const endOffset = (yield* source.endOffsets).get(partition) ?? 0
    // A position the log has not reached was never handed out by it: the log was recreated or its
    // data lost. Going live from there would drop every newer event up to that offset, unseen.
    if (after !== undefined && after.offset > endOffset - 1) {
      return yield* new Conflict({
        message:
          `position ${after.offset} is beyond the end of partition ${partition} (last offset ${endOffset - 1}): ` +
          "the log does not hold it (recreated, or its data lost); subscribe without a position"
      })
    }
    const wentLiveAt = after === undefined && endOffset > 0 ? { position: { partition, offset: endOffset - 1 } } : {}
    // built from checked values: skip the constructor's validation on this per-subscription path
    const marker = new Subscribed({ scopeType: scope.scopeType, scopeId: scope.scopeId, ...wentLiveAt }, true)
    if (!sink.push(marker)) {
      return lagged()
    }
    if (after === undefined || after.offset >= endOffset - 1) {
      yield* goLive
      return
    }
    yield* awaitHistoryUpTo(partition, endOffset).pipe(
      Effect.zipRight(
        Stream.runForEachChunk(replay(scope, after, endOffset - 1), (chunk) =>
          Effect.suspend(() => {
            if (ended) return Effect.interrupt
            const events = Chunk.toReadonlyArray(chunk)
            const newest = events.at(-1)
            // an empty page: the scope has no message in the rest of the gap (other scopes' filled it)
            if (newest === undefined) return Effect.void
            lastDelivered = Math.max(lastDelivered, newest.offset)
            return Effect.flatMap(sink.pushReplay(events), (accepted) => (accepted ? Effect.void : Effect.sync(lagged)))
          }))
      ),
      Effect.zipRight(goLive),
      Effect.catchAllCause((cause) => {
        if (Cause.isInterruptedOnly(cause)) return Effect.void
        const failure = Cause.failureOption(cause)
        const error = Option.isSome(failure) ? failure.value : unexpected
        const logged = Option.isSome(failure) ? Effect.void : Effect.logError("Replaying a resume gap failed", cause)
        return Effect.zipRight(logged, Effect.sync(() => end(error)))
      }),
      Effect.forkScoped
    )
  })
)

/** The same subscription as a mailbox the interface drains (bounded by `subscriberBufferSize`). */
export const subscribe = (
  scope: ScopeRef,
  after: StreamPosition | undefined
): Effect.Effect<
  Mailbox.ReadonlyMailbox<SubscriptionItem, SubscribeError>,
  SubscribeError,
  SubscribeRequirements | Scope.Scope
> =>
  Effect.gen(function*() {
    const settings = yield* CoreSettings
    const mailbox = yield* Mailbox.make<SubscriptionItem, SubscribeError>({
      capacity: settings.subscriberBufferSize,
      strategy: "suspend"
    })
    yield* addPlainFinalizer(mailbox.shutdown)
    yield* subscribeInto(scope, after, {
      push: (item) => mailbox.unsafeOffer(item),
      pushReplay: (events) => Effect.as(mailbox.offerAll(events), true),
      fail: (error) => void mailbox.unsafeDone(Exit.fail(error))
    })
    return mailbox
  })

/** The same subscription as a Stream, for interfaces and tests that prefer one. */
export const subscribeStream = (
  scope: ScopeRef,
  after: StreamPosition | undefined
): Stream.Stream<SubscriptionItem, SubscribeError, SubscribeRequirements> =>
  Stream.unwrapScoped(Effect.map(subscribe(scope, after), Mailbox.toStream))
