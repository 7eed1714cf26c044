import type { Scope, Stream } from "effect"
import { Context, Effect } from "effect"
import type {
  ChatEvent,
  DependencyUnavailable,
  EnrichedChatEvent,
  HistoryCursorPosition,
  PolicyLimits,
  PresentUser,
  ScopeRef,
  StreamPosition,
  Timeout
} from "@chatify/domain"
import { CurrentUser, type Identity } from "@chatify/domain"

/** Mints message ids (UUID v7: time-ordered, so history clustering stays local). */
export class IdGenerator extends Context.Tag("chatify/IdGenerator")<IdGenerator, {
  readonly next: Effect.Effect<string>
}>() {}

/** This process's identity in the cluster (POD_NAME). */
export class PodIdentity extends Context.Tag("chatify/PodIdentity")<PodIdentity, {
  readonly podId: string
}>() {}

/** The correlation id of the request being served; absent outside a request. */
export class CorrelationId extends Context.Reference<CorrelationId>()("chatify/CorrelationId", {
  defaultValue: (): string | undefined => undefined
}) {}

/** ChatDomainPolicy's limits, from configuration. */
export class ChatPolicy extends Context.Tag("chatify/ChatPolicy")<ChatPolicy, PolicyLimits>() {}

export interface RateLimitDecision {
  readonly allowed: boolean
  readonly limit: number
  readonly remaining: number
  readonly windowSeconds: number
  readonly retryAfterSeconds: number
}

/** Counts a user's sends in a fixed window; check-and-increment is atomic. */
export class RateLimiter extends Context.Tag("chatify/RateLimiter")<RateLimiter, {
  readonly checkAndIncrement: (userId: string) => Effect.Effect<RateLimitDecision, DependencyUnavailable>
}>() {}

/**
 * Counts a caller's reads (Subscribe, History, Presence) in a fixed window of its own, as RateLimiter
 * counts sends: the two never share a counter, so reading never uses up a caller's sends or the
 * other way round.
 */
export class ReadRateLimiter extends Context.Tag("chatify/ReadRateLimiter")<ReadRateLimiter, RateLimiter["Type"]>() {}

/** Appends chat events to the log, keyed by scope; resolves once the log has them durably. */
export class ChatEventProducer extends Context.Tag("chatify/ChatEventProducer")<ChatEventProducer, {
  readonly produce: (event: ChatEvent) => Effect.Effect<StreamPosition, DependencyUnavailable | Timeout>
}>() {}

/**
 * How long a claim of a send's key holds before another attempt may take it over: longer than a
 * produce may take (Kafka's produce timeout is 10 s), short enough that a pod that died mid-send
 * does not block its key for the whole window.
 */
export const DEFAULT_SEND_CLAIM_LEASE_MILLIS = 30_000

/** Whose send a `clientMessageId` names: the same id from two senders is two keys. */
export interface SendKey {
  readonly senderId: string
  readonly clientMessageId: string
}

/** What a claim of a send's key found. */
export type SendClaim =
  /**
   * The key is this attempt's until it completes or releases it (or its lease runs out): produce
   * `event`, which is the candidate, or the event of an earlier attempt that did not complete (it may
   * be in the log already; producing it again keeps its messageId, so the history holds it once).
   */
  | { readonly _tag: "Claimed"; readonly event: ChatEvent }
  /** An earlier send with this key completed: its result, to be returned as it is. */
  | { readonly _tag: "Sent"; readonly sent: EnrichedChatEvent }
  /** Another attempt holds the key right now. */
  | { readonly _tag: "InProgress" }

/**
 * Remembers sends by (sender, clientMessageId) for a window, so a repeat returns the first result
 * and writes nothing. `claim` is atomic: of concurrent claims of one key, exactly one is Claimed. A
 * claim is a lease (`leaseMillis`, longer than a produce may take): an attempt that neither
 * completes nor releases (a crashed pod) gives the key up when it runs out. The record, first
 * attempt's event included, lives for the window from the first claim, and again from completion.
 */
export class SendDeduplicator extends Context.Tag("chatify/SendDeduplicator")<SendDeduplicator, {
  /** Claims `key` for the attempt whose candidate event is `candidate` (its messageId is the attempt's token). */
  readonly claim: (key: SendKey, candidate: ChatEvent) => Effect.Effect<SendClaim, DependencyUnavailable>
  /** Records the result; the first result recorded for a key stays. */
  readonly complete: (key: SendKey, sent: EnrichedChatEvent) => Effect.Effect<void, DependencyUnavailable>
  /**
   * Gives the key up after a failed attempt (`owner`: its candidate's messageId), keeping the claimed
   * event for the next attempt; a key another attempt holds by now is left alone.
   */
  readonly release: (key: SendKey, owner: string) => Effect.Effect<void, DependencyUnavailable>
}>() {}

/** One record of the log as read by a consumer: the value is raw text, decoded by the consumer. */
export interface LogRecord {
  readonly partition: number
  readonly offset: number
  readonly key: string | null
  readonly value: string
  readonly timestampMs: number
  /**
   * The event whose JSON `value` is, when the log runs in this process and still holds the producer's
   * (already validated) instance: consumers take it instead of decoding `value` again.
   */
  readonly event?: ChatEvent | undefined
  /** The producer's W3C trace context (`traceparent`), when the send was traced. */
  readonly traceParent?: string | undefined
  /** The sender's correlation id, so the consumers' spans and log lines carry it too. */
  readonly correlationId?: string | undefined
}

export interface ConsumerOptions {
  readonly groupId: string
  /**
   * "committed-or-earliest": resume the group, or read everything; "latest": only what comes next;
   * `{ offsets }`: per partition, from this offset (the next record to read) whatever the group
   * committed, and from the end of the log for a partition it does not name. A consumer that takes
   * over from a failed one of this process starts there, so nothing between them is skipped.
   */
  readonly startFrom: "committed-or-earliest" | "latest" | { readonly offsets: ReadonlyMap<number, number> }
  /**
   * How long the log may hold records back to hand them over in larger batches (fewer fetches from a
   * remote log, at the price of this much latency); absent = as soon as they are there.
   */
  readonly maxBatchDelayMillis?: number | undefined
  /**
   * The most records the consumer handles in one go. The source holds at least this many ready for
   * it (Kafka: the buffer between fetches and the Stream), so a chunk smaller than this means the
   * consumer has caught up with the log.
   */
  readonly maxBatchRecords?: number | undefined
}

export interface ConsumerRecords {
  readonly records: Stream.Stream<LogRecord, DependencyUnavailable>
  /** Marks every record up to and including each position as processed by the group. */
  readonly commit: (positions: ReadonlyArray<StreamPosition>) => Effect.Effect<void, DependencyUnavailable>
}

/** Reads the log as a consumer group member; the consumer leaves the group when its scope closes. */
export class ChatEventSource extends Context.Tag("chatify/ChatEventSource")<ChatEventSource, {
  readonly partitions: number
  readonly consume: (options: ConsumerOptions) => Effect.Effect<ConsumerRecords, DependencyUnavailable, Scope.Scope>
  /** Per partition, the offset the next record will get. */
  readonly endOffsets: Effect.Effect<ReadonlyMap<number, number>, DependencyUnavailable>
  /** Per partition, the next offset the group will read (everything before it is processed). */
  readonly committedOffsets: (groupId: string) => Effect.Effect<ReadonlyMap<number, number>, DependencyUnavailable>
}>() {}

/** Where records that can never be processed go, so a consumer can move on without losing them. */
export class DeadLetters extends Context.Tag("chatify/DeadLetters")<DeadLetters, {
  readonly publish: (record: LogRecord, reason: string) => Effect.Effect<void, DependencyUnavailable>
}>() {}

export interface HistorySlice {
  readonly items: ReadonlyArray<EnrichedChatEvent>
  readonly next: HistoryCursorPosition | undefined
}

/** The durable history of every scope. Appends are idempotent on messageId. */
export class ChatHistory extends Context.Tag("chatify/ChatHistory")<ChatHistory, {
  readonly append: (events: ReadonlyArray<EnrichedChatEvent>) => Effect.Effect<void, DependencyUnavailable>
  /** Newest first, strictly older than `before` when given. */
  readonly page: (
    scope: ScopeRef,
    options: { readonly limit: number; readonly before: HistoryCursorPosition | undefined }
  ) => Effect.Effect<HistorySlice, DependencyUnavailable>
  /** Oldest first by offset: the scope's events after `position` on its partition, up to `limit`. */
  readonly after: (
    scope: ScopeRef,
    position: StreamPosition,
    limit: number
  ) => Effect.Effect<ReadonlyArray<EnrichedChatEvent>, DependencyUnavailable>
  readonly ping: Effect.Effect<void, DependencyUnavailable>
}>() {}

/** Who is connected to which scope, across pods; entries expire unless heartbeated. */
export class Presence extends Context.Tag("chatify/Presence")<Presence, {
  readonly track: (scopeKey: string, userId: string, connectionId: string) => Effect.Effect<void, DependencyUnavailable>
  readonly untrack: (scopeKey: string, connectionId: string) => Effect.Effect<void, DependencyUnavailable>
  readonly online: (scopeKey: string) => Effect.Effect<ReadonlyArray<PresentUser>, DependencyUnavailable>
  readonly ttlMillis: number
}>() {}

/** One live subscriber as the fan-out sees it: `deliver` returns false once it wants no more events. */
export interface FanoutSubscriber {
  readonly deliver: (event: EnrichedChatEvent) => boolean
}

/**
 * This pod's live subscribers per scope. Publishing is synchronous and non-blocking: one lookup per
 * event, one `deliver` per subscriber; what a subscriber does with a full buffer is its own business.
 */
export class LocalFanout extends Context.Tag("chatify/LocalFanout")<LocalFanout, {
  readonly register: (scopeKey: string, subscriber: FanoutSubscriber) => Effect.Effect<void, never, Scope.Scope>
  readonly publish: (event: EnrichedChatEvent) => Effect.Effect<number>
  /** A batch of events in log order, as `publish` would one by one, in one step; returns the deliveries. */
  readonly publishAll: (events: ReadonlyArray<EnrichedChatEvent>) => Effect.Effect<number>
  readonly subscriberCount: Effect.Effect<number>
}>() {}

/** The caller (declared in the domain, where the HTTP API's Authentication middleware provides it). */
export { CurrentUser, type Identity }

export type ScopeAction = "send" | "subscribe" | "read"

/** Who may do what in a scope. Deployments plug their own rule in here. */
export class ScopeAuthorizer extends Context.Tag("chatify/ScopeAuthorizer")<ScopeAuthorizer, {
  readonly authorize: (identity: Identity, scope: ScopeRef, action: ScopeAction) => Effect.Effect<boolean>
}>() {}
