import * as Socket from "@effect/platform/Socket"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as RpcClient from "@effect/rpc/RpcClient"
import type * as RpcClientError from "@effect/rpc/RpcClientError"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import {
  Cause,
  Chunk,
  Context,
  Data,
  Deferred,
  Duration,
  Effect,
  Either,
  identity,
  Layer,
  Option,
  Schedule,
  type Scope,
  Stream
} from "effect"
import {
  type ChatScopeType,
  ChatRpcs,
  type DependencyUnavailable,
  type EnrichedChatEvent,
  type HistoryPage,
  type HistoryQuery,
  positionOf,
  type QueryError,
  type ScopePresence,
  type ScopeRef,
  type SendError,
  type StreamPosition,
  Subscribed,
  type SubscribeError,
  type SubscriptionLagged,
  Timeout
} from "@chatify/domain"
import { DEFAULT_DEDUPE_CAPACITY, makeMessageIdLru } from "./Dedupe.js"
import { defaultReconnectSchedule, resetWhenQuiet } from "./Reconnect.js"

export type RpcClientFailure = RpcClientError.RpcClientError

/** The server ended or interrupted a subscription without an error (e.g. while shutting down). */
export class SubscriptionEnded extends Data.TaggedError("SubscriptionEnded")<{ readonly message: string }> {}

/** Failures after which a subscription resumes from the last position it delivered. */
export type RetryableSubscribeError =
  | RpcClientFailure
  | SubscriptionLagged
  | DependencyUnavailable
  | Timeout
  | SubscriptionEnded

/**
 * How a subscription can fail for good: a non-retryable server error (ValidationError, Forbidden,
 * Unauthenticated, Conflict, Unexpected), or the last retryable one once the reconnect schedule
 * gives up.
 */
export type SubscriptionError = SubscribeError | RpcClientFailure | SubscriptionEnded

/** What `subscribeWithStatus` emits: the subscription's state changes interleaved with its events. */
export type SubscriptionUpdate = Data.TaggedEnum<{
  /** The server registered the subscription: every event from here on reaches it. */
  Live: { readonly resumedAfter: Option.Option<StreamPosition> }
  /** The subscription was lost and will be resumed after the schedule's delay. */
  Reconnecting: { readonly reason: RetryableSubscribeError; readonly attempt: number }
  Event: { readonly event: EnrichedChatEvent }
}>
export const SubscriptionUpdate = Data.taggedEnum<SubscriptionUpdate>()

export interface SendInput {
  readonly scopeType: ChatScopeType
  readonly scopeId: string
  readonly text: string
}

export interface SubscribeOptions {
  /** Resume after this position (exclusive) instead of starting with live events. */
  readonly after?: StreamPosition | undefined
  /** Completed the first time the subscription is live, so callers can send without racing it. */
  readonly onLive?: Deferred.Deferred<void> | undefined
}

export interface ChatClientOptions {
  /** The server's RPC endpoint, e.g. `ws://chat.internal:8080/rpc`. */
  readonly url: string
  /**
   * Backoff between reconnects, both of the socket and of subscriptions; it is reset once a
   * subscription is live again. Defaults to exponential from 50 ms, capped at 5 s, jittered.
   */
  readonly reconnect?: Schedule.Schedule<unknown, unknown> | undefined
  /**
   * How long one (re)subscribe attempt may take to become live before it counts as failed and is
   * retried (default 30 s), e.g. while its request waits for a socket that cannot connect.
   */
  readonly attemptTimeout?: Duration.DurationInput | undefined
  /** How many message ids each subscription remembers to drop redeliveries (default 10,000). */
  readonly dedupeCapacity?: number | undefined
  /** RPC headers sent with every call, e.g. `x-correlation-id`. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /**
   * The bearer token when the server requires authentication, sent as `access_token` on the
   * WebSocket URL. An Effect is run again on every (re)connect, so it can refresh the token.
   */
  readonly accessToken?: string | Effect.Effect<string> | undefined
}

/** The socket URL with the access token as its `access_token` query parameter. */
const withAccessToken = (url: string, token: string): string => {
  const parsed = new URL(url)
  parsed.searchParams.set("access_token", token)
  return parsed.toString()
}

export interface ChatClientService {
  readonly send: (request: SendInput) => Effect.Effect<EnrichedChatEvent, SendError | RpcClientFailure>
  /** One page of a scope's history, newest first; pass `nextCursor` back as `before` for the next. */
  readonly history: (query: HistoryQuery) => Effect.Effect<HistoryPage, QueryError | RpcClientFailure>
  /** A scope's whole history, newest first, fetched page by page as it is consumed. */
  readonly historyAll: (
    scope: ScopeRef,
    options?: { readonly pageSize?: number | undefined }
  ) => Stream.Stream<EnrichedChatEvent, QueryError | RpcClientFailure>
  readonly presence: (scope: ScopeRef) => Effect.Effect<ScopePresence, QueryError | RpcClientFailure>
  /**
   * The scope's events, each message once and in log order, surviving reconnects: after a
   * retryable failure it resubscribes after the last position it delivered.
   */
  readonly subscribe: (
    scope: ScopeRef,
    options?: SubscribeOptions
  ) => Stream.Stream<EnrichedChatEvent, SubscriptionError>
  /** As `subscribe`, with `Live` and `Reconnecting` items between the events. */
  readonly subscribeWithStatus: (
    scope: ScopeRef,
    options?: { readonly after?: StreamPosition | undefined }
  ) => Stream.Stream<SubscriptionUpdate, SubscriptionError>
}

/** Room for a burst of events between the socket and a consumer; the server is acked per chunk. */
const SUBSCRIBE_BUFFER = 256

const DEFAULT_ATTEMPT_TIMEOUT = "30 seconds"

/** A connection that stayed up this long reconnects with the schedule's first, shortest delay. */
const SOCKET_QUIET_RESET = "10 seconds"

const retryable = (error: SubscriptionError): Option.Option<RetryableSubscribeError> => {
  switch (error._tag) {
    case "RpcClientError":
    case "SubscriptionLagged":
    case "DependencyUnavailable":
    case "Timeout":
    case "SubscriptionEnded":
      return Option.some(error)
    case "ValidationError":
    case "Unauthenticated":
    case "Forbidden":
    case "Conflict":
    case "Unexpected":
      return Option.none()
  }
}

/** A ChatClient over one WebSocket, closed with the scope. */
export const makeChatClient = (
  options: ChatClientOptions
): Effect.Effect<ChatClientService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const reconnect = options.reconnect ?? defaultReconnectSchedule
    const dedupeCapacity = options.dedupeCapacity ?? DEFAULT_DEDUPE_CAPACITY
    const attemptTimeout = Duration.decode(options.attemptTimeout ?? DEFAULT_ATTEMPT_TIMEOUT)
    const headers = options.headers

    // ndjson, as the server's /rpc route; transient open errors wait for the socket instead of failing calls.
    const protocol = RpcClient.layerProtocolSocket({
      retryTransientErrors: true,
      retrySchedule: resetWhenQuiet(reconnect, SOCKET_QUIET_RESET)
    }).pipe(
      Layer.provide(
        Layer.effect(
          Socket.Socket,
          Socket.makeWebSocket(
            options.accessToken === undefined
              ? options.url
              : Effect.map(
                typeof options.accessToken === "string" ? Effect.succeed(options.accessToken) : options.accessToken,
                (token) => withAccessToken(options.url, token)
              )
          )
        ).pipe(Layer.provide(NodeSocket.layerWebSocketConstructor))
      ),
      Layer.provide(RpcSerialization.layerNdjson)
    )
    // Built into this scope (not Effect.provide), so the socket lives as long as the client.
    const rpc = yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(yield* Layer.build(protocol)))

    // Registered after the RPC client, so it runs before the client interrupts its open calls:
    // those interruptions then end subscriptions instead of looking like a server going away.
    let closed = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
      })
    )

    const send = (request: SendInput) =>
      rpc.Send({ scopeType: request.scopeType, scopeId: request.scopeId, text: request.text }, { headers })

    const history = (query: HistoryQuery) => rpc.History(query, { headers })

    const historyAll = (scope: ScopeRef, pageOptions: { readonly pageSize?: number | undefined } = {}) =>
      Stream.paginateChunkEffect(Option.none<string>(), (before) =>
        history({
          scopeType: scope.scopeType,
          scopeId: scope.scopeId,
          ...(pageOptions.pageSize === undefined ? {} : { limit: pageOptions.pageSize }),
          ...(Option.isSome(before) ? { before: before.value } : {})
        }).pipe(
          Effect.map((page) =>
            [
              Chunk.fromIterable(page.items),
              page.nextCursor === undefined ? Option.none() : Option.some(Option.some(page.nextCursor))
            ] as const
          )
        ))

    const presence = (scope: ScopeRef) =>
      rpc.Presence({ scopeType: scope.scopeType, scopeId: scope.scopeId }, { headers })

    const subscribeWithStatus = (
      scope: ScopeRef,
      subscribeOptions: { readonly after?: StreamPosition | undefined } = {}
    ): Stream.Stream<SubscriptionUpdate, SubscriptionError> =>
      Stream.unwrap(Effect.gen(function*() {
        const backoff = yield* Schedule.driver(reconnect)
        // Per subscription: each one must see every message once, whatever other subscriptions saw.
        const seen = makeMessageIdLru(dedupeCapacity)
        let last = subscribeOptions.after
        let attempt = 0

        const once = Stream.suspend(() => {
          const after = last
          let live = false
          // Bounds an attempt that never becomes live, e.g. a request queued behind a socket that cannot connect.
          const liveInTime = Effect.sleep(attemptTimeout).pipe(
            Effect.zipRight(
              Effect.suspend(() => live ? Effect.never : Effect.fail(new Timeout({ operation: "subscribe" })))
            )
          )
          return rpc.Subscribe(
            { scopeType: scope.scopeType, scopeId: scope.scopeId, ...(after === undefined ? {} : { after }) },
            { headers, streamBufferSize: SUBSCRIBE_BUFFER }
          ).pipe(
            Stream.mapEffect((item): Effect.Effect<Option.Option<SubscriptionUpdate>> => {
              if (item instanceof Subscribed) {
                // Live again: the next loss starts the backoff from its first delay.
                return Effect.as(
                  Effect.zipRight(
                    backoff.reset,
                    Effect.sync(() => {
                      live = true
                      attempt = 0
                      // nothing delivered yet: a later resume starts where this subscription went live
                      if (last === undefined) last = item.position
                    })
                  ),
                  Option.some(SubscriptionUpdate.Live({ resumedAfter: Option.fromNullable(after) }))
                )
              }
              return Effect.sync(() => {
                if (!seen.firstSeen(item.chatEvent.messageId)) return Option.none()
                last = positionOf(item)
                return Option.some(SubscriptionUpdate.Event({ event: item }))
              })
            }),
            Stream.filterMap(identity),
            Stream.interruptWhen(liveInTime),
            // A subscription has no natural end: a clean end means the server let go of it.
            Stream.concat(
              Stream.suspend(() => Stream.fail(new SubscriptionEnded({ message: "the server ended the subscription" })))
            )
          )
        })

        const resume = (reason: RetryableSubscribeError): Stream.Stream<SubscriptionUpdate, SubscriptionError> =>
          Stream.concat(
            Stream.sync(() => SubscriptionUpdate.Reconnecting({ reason, attempt: ++attempt })),
            Stream.unwrap(
              backoff.next(reason).pipe(
                Effect.match({
                  onFailure: (): Stream.Stream<SubscriptionUpdate, SubscriptionError> => Stream.fail(reason),
                  onSuccess: () => run()
                })
              )
            )
          )

        const run = (): Stream.Stream<SubscriptionUpdate, SubscriptionError> =>
          Stream.catchAllCause(once, (cause) =>
            Either.match(Cause.failureOrCause(cause), {
              onLeft: (error) =>
                Option.match(retryable(error), { onNone: () => Stream.failCause(cause), onSome: resume }),
              // The server interrupts open streams when it shuts down; our own interruption never gets here.
              onRight: (other) =>
                Cause.isInterruptedOnly(other) && !closed
                  ? resume(new SubscriptionEnded({ message: "the server interrupted the subscription" }))
                  : Stream.failCause(other)
            }))

        return run()
      }))

    const subscribe = (scope: ScopeRef, subscribeOptions: SubscribeOptions = {}) => {
      const onLive = subscribeOptions.onLive
      return subscribeWithStatus(scope, { after: subscribeOptions.after }).pipe(
        Stream.tap((update) =>
          update._tag === "Live" && onLive !== undefined ? Deferred.succeed(onLive, undefined) : Effect.void
        ),
        Stream.filterMap((update) => (update._tag === "Event" ? Option.some(update.event) : Option.none()))
      )
    }

    return { send, history, historyAll, presence, subscribe, subscribeWithStatus } satisfies ChatClientService
  })

/** The Chatify client as a service: `ChatClient.layer({ url })`, then `yield* ChatClient`. */
export class ChatClient extends Context.Tag("@chatify/sdk/ChatClient")<ChatClient, ChatClientService>() {
  static readonly layer = (options: ChatClientOptions): Layer.Layer<ChatClient> =>
    Layer.scoped(ChatClient, makeChatClient(options))
}
