import * as Socket from "@effect/platform/Socket"
import * as RpcClient from "@effect/rpc/RpcClient"
import * as RpcClientError from "@effect/rpc/RpcClientError"
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
  Exit,
  FiberId,
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
  type Conflict,
  type DependencyUnavailable,
  type EnrichedChatEvent,
  type HistoryPage,
  type HistoryQuery,
  type OperatorStreamError,
  positionOf,
  type QueryError,
  type RateLimited,
  type RateLimitViolation,
  type ScopePresence,
  type ScopeStats,
  type ScopeRef,
  type SendError,
  type StatsQuery,
  type StreamPosition,
  Subscribed,
  type SubscribeError,
  type SubscriptionLagged,
  Timeout,
  Unauthenticated
} from "@chatify/domain"
import { DEFAULT_DEDUPE_CAPACITY, makeMessageIdLru } from "./Dedupe.js"
import { inArrivalOrder, makeBoundedStreams } from "./Frames.js"
import { defaultReconnectSchedule, resetWhenQuiet } from "./Reconnect.js"
import { WebSocketConnector } from "./WebSocketConnector.js"

export type RpcClientFailure = RpcClientError.RpcClientError

/** The server ended or interrupted a subscription without an error (e.g. while shutting down). */
export class SubscriptionEnded extends Data.TaggedError("SubscriptionEnded")<{ readonly message: string }> {}

/**
 * Failures after which a subscription resumes from the last position it delivered; Unauthenticated
 * (e.g. its token expired) only when `accessToken` is an Effect that can give a fresh token;
 * RateLimited (the caller's read window is used up) no sooner than its `retryAfterSeconds`.
 */
export type RetryableSubscribeError =
  | RpcClientFailure
  | SubscriptionLagged
  | RateLimited
  | DependencyUnavailable
  | Timeout
  | SubscriptionEnded
  | Unauthenticated

/**
 * How a subscription can fail for good: a non-retryable server error (ValidationError, Forbidden,
 * Unauthenticated, Conflict on a subscription without a position, LimitExceeded, Unexpected), or the
 * last retryable one once the reconnect schedule gives up. (A Conflict over the position it resumes
 * from is `PositionLost`, and the subscription goes on live.)
 */
export type SubscriptionError = SubscribeError | RpcClientFailure | SubscriptionEnded

/** What `subscribeWithStatus` emits: the subscription's state changes interleaved with its events. */
export type SubscriptionUpdate = Data.TaggedEnum<{
  /** The server registered the subscription: every event from here on reaches it. */
  Live: { readonly resumedAfter: Option.Option<StreamPosition> }
  /** The subscription was lost and will be resumed after the schedule's delay. */
  Reconnecting: { readonly reason: RetryableSubscribeError; readonly attempt: number }
  /**
   * The server does not know the position the subscription was to resume after (its log was
   * recreated or its data lost): the subscription goes on live, from now; events between that
   * position and now may be missing (read the history to see what it holds).
   */
  PositionLost: { readonly position: StreamPosition; readonly reason: Conflict }
  Event: { readonly event: EnrichedChatEvent }
}>
export const SubscriptionUpdate = Data.taggedEnum<SubscriptionUpdate>()

export interface SendInput {
  readonly scopeType: ChatScopeType
  readonly scopeId: string
  readonly text: string
  /**
   * The send's idempotency key (1..128 characters). Defaults to a fresh UUID per `send`, which its
   * retries share; pass your own to make a send idempotent beyond one call (e.g. across restarts).
   */
  readonly clientMessageId?: string | undefined
}

/**
 * The default backoff between attempts of a send: exponential from 100 ms, each delay capped at 2 s,
 * jittered, at most 5 retries (about 3 s in all).
 */
export const defaultSendRetrySchedule: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis", 2).pipe(
  Schedule.union(Schedule.spaced("2 seconds")),
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(5))
)

/**
 * Failures after which a send is tried again with the same clientMessageId: the server may or may
 * not have written it, and a repeat returns the first result instead of writing it twice.
 */
export const isRetryableSendError = (error: SendError | RpcClientFailure): boolean =>
  error._tag === "Timeout" || error._tag === "DependencyUnavailable" || error._tag === "RpcClientError"

/** A random UUID (v4), also where `crypto.randomUUID` is missing (browsers outside secure contexts). */
const newClientMessageId = (): string => {
  if (typeof globalThis.crypto.randomUUID === "function") return globalThis.crypto.randomUUID()
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16))
  bytes[6] = (bytes[6]! & 0x0f) | 0x40
  bytes[8] = (bytes[8]! & 0x3f) | 0x80
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
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
  /**
   * Whether subscriptions drop redeliveries by messageId (default true). `false` hands on whatever
   * the server sends: for tests of the server's own no-duplicate guarantee, which the dedupe would hide.
   */
  readonly dedupe?: boolean | undefined
  /** RPC headers sent with every call, e.g. `x-correlation-id`. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /**
   * Backoff between attempts of a send that failed with Timeout, DependencyUnavailable or a lost
   * connection (see `isRetryableSendError`); every attempt carries the same clientMessageId, so the
   * message is written once. Defaults to `defaultSendRetrySchedule`; `Schedule.stop` never retries.
   */
  readonly sendRetry?: Schedule.Schedule<unknown, SendError | RpcClientFailure> | undefined
  /**
   * The bearer token when the server requires authentication. An Effect is run again on every
   * (re)connect of the socket, and before a subscription resubscribes after its token was refused
   * (it expired): the subscription then goes on with the fresh token, from where it was.
   */
  readonly accessToken?: string | Effect.Effect<string> | undefined
  /**
   * How the token travels on the WebSocket upgrade: `header` (`Authorization: Bearer …`, the
   * default where the runtime's WebSocket can send upgrade headers: Node) or `query`
   * (`?access_token=…`, the default elsewhere, e.g. browsers, whose WebSocket cannot).
   */
  readonly accessTokenTransport?: AccessTokenTransport | undefined
  /**
   * How many events a subscription holds for a consumer that has not taken them yet (default
   * 10,000). The server does not wait for the client between events (`/rpc?acks=none`); a
   * subscription whose consumer falls further behind lets go and resumes from the history after
   * the last event taken, reporting `Reconnecting` with SubscriptionLagged: memory stays bounded.
   */
  readonly subscriptionBuffer?: number | undefined
}

/** Where the access token goes on the WebSocket upgrade. */
export type AccessTokenTransport = "header" | "query"

/** The URL with one more query parameter. */
const withQuery = (url: string, name: string, value: string): string => {
  const parsed = new URL(url)
  parsed.searchParams.set(name, value)
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
  /** The analytics job's window statistics of a scope in [from, to) (default: the last hour), oldest first. */
  readonly stats: (query: StatsQuery) => Effect.Effect<ScopeStats, QueryError | RpcClientFailure>
  /**
   * For operators (CHATIFY__ANALYTICS__OPERATORS): the recent rate-limit violations, then live ones.
   * Fails with SubscriptionLagged (scopeId `rate-limit-violations`) when its consumer falls more
   * than `subscriptionBuffer` violations behind.
   */
  readonly rateLimitViolations: Stream.Stream<
    RateLimitViolation,
    OperatorStreamError | SubscriptionLagged | RpcClientFailure
  >
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

/** Events a subscription holds for its consumer by default (see `subscriptionBuffer`). */
const DEFAULT_SUBSCRIPTION_BUFFER = 10_000
/** The name in SubscriptionLagged of the operators' stream of rate-limit violations. */
export const RATE_LIMIT_VIOLATIONS_STREAM = "rate-limit-violations"

const DEFAULT_ATTEMPT_TIMEOUT = "30 seconds"

/** A connection that stayed up this long reconnects with the schedule's first, shortest delay. */
const SOCKET_QUIET_RESET = "10 seconds"

/** What a call left on a socket that RpcClient replaced on its own fails with. */
const SOCKET_LOST = "the connection stopped answering pings"
const isSocketLost = (error: unknown): boolean =>
  error instanceof RpcClientError.RpcClientError && error.reason === "Protocol" && error.message === SOCKET_LOST
/** How often a read is asked again after its socket was replaced, before the failure is the caller's. */
const READ_RETRIES_ON_SOCKET_LOSS = 3

/** Whether a subscription resumes after `error`; `freshToken`: whether a fresh token may cure an Unauthenticated. */
const retryable = (error: SubscriptionError, freshToken: boolean): Option.Option<RetryableSubscribeError> => {
  switch (error._tag) {
    case "RpcClientError":
    case "SubscriptionLagged":
    case "RateLimited":
    case "DependencyUnavailable":
    case "Timeout":
    case "SubscriptionEnded":
      return Option.some(error)
    case "Unauthenticated":
      return freshToken ? Option.some(error) : Option.none()
    case "ValidationError":
    case "Forbidden":
    case "Conflict":
    case "LimitExceeded":
    case "Unexpected":
      return Option.none()
  }
}

/**
 * A ChatClient over one WebSocket, closed with the scope. The runtime's WebSocketConnector comes
 * from `@chatify/sdk/node` or `@chatify/sdk/browser`, whose `makeChatClient` provides it.
 */
export const makeChatClient = (
  options: ChatClientOptions
): Effect.Effect<ChatClientService, never, Scope.Scope | WebSocketConnector> =>
  Effect.gen(function*() {
    const reconnect = options.reconnect ?? defaultReconnectSchedule
    const dedupeCapacity = options.dedupeCapacity ?? DEFAULT_DEDUPE_CAPACITY
    const dedupe = options.dedupe ?? true
    const attemptTimeout = Duration.decode(options.attemptTimeout ?? DEFAULT_ATTEMPT_TIMEOUT)
    const headers = options.headers
    const subscriptionBuffer = options.subscriptionBuffer ?? DEFAULT_SUBSCRIPTION_BUFFER
    // Frames are read in order and every stream is bounded here, so the server need not wait for
    // an Ack of each chunk before it sends the next one.
    const url = withQuery(options.url, "acks", "none")
    const accessToken = options.accessToken
    const tokenOf = accessToken === undefined
      ? undefined
      : typeof accessToken === "string"
      ? Effect.succeed(accessToken)
      : accessToken
    // a constant token cannot be refreshed: once refused, it stays refused
    const refreshable = accessToken !== undefined && typeof accessToken !== "string"

    // Each (re)connect takes the token anew: in the Authorization header where the runtime's
    // WebSocket can send upgrade headers, in the URL's query elsewhere.
    const connector = yield* WebSocketConnector
    const transport = options.accessTokenTransport ?? (connector.upgradeHeaders ? "header" : "query")
    // RpcClient retries a refused upgrade as it retries a lost connection, so the calls waiting for
    // a socket would wait for ever on a token the server refuses (401): where the runtime tells the
    // status, those calls fail with Unauthenticated instead.
    let upgradeRefused = Deferred.unsafeMake<Unauthenticated>(FiberId.none)
    const onRefused = (status: number) => {
      if (status !== 401) return
      const refused = upgradeRefused
      upgradeRefused = Deferred.unsafeMake<Unauthenticated>(FiberId.none)
      Deferred.unsafeDone(
        refused,
        Exit.succeed(new Unauthenticated({ message: "the server refused the connection's access token (401)" }))
      )
    }
    const tokenRefused = Effect.suspend(() => Deferred.await(upgradeRefused)).pipe(Effect.flatMap(Effect.fail))
    const open: Effect.Effect<globalThis.WebSocket> = tokenOf === undefined
      ? Effect.sync(() => connector.open(url, {}, onRefused))
      : transport === "query"
      ? Effect.map(tokenOf, (token) => connector.open(withQuery(url, "access_token", token), {}, onRefused))
      : Effect.map(tokenOf, (token) => connector.open(url, { authorization: `Bearer ${token}` }, onRefused))
    // The RPC client replaces a socket that answered no ping for 10 s on its own, without failing
    // the calls open on it (@effect/rpc swallows that "OpenTimeout" under retryTransientErrors):
    // their replies would never come. Its run is interrupted then, and this tells those calls.
    let socketReplaced = Deferred.unsafeMake<void>(FiberId.none)
    let closed = false
    const socket = Effect.map(
      Socket.fromWebSocket(Effect.acquireRelease(open, (ws) => Effect.sync(() => ws.close(1000)))),
      (opened): Socket.Socket => {
        const socket = inArrivalOrder(opened)
        return {
          ...socket,
          runRaw: (handler, runOptions) =>
            Effect.onInterrupt(socket.runRaw(handler, runOptions), () =>
              Effect.sync(() => {
                if (closed) return
                const replaced = socketReplaced
                socketReplaced = Deferred.unsafeMake<void>(FiberId.none)
                Deferred.unsafeDone(replaced, Exit.void)
              }))
        }
      }
    )
    /** Fails once the socket a call started on is replaced without its calls being failed. */
    const socketLost = Effect.suspend(() => Deferred.await(socketReplaced)).pipe(
      Effect.zipRight(Effect.fail(new RpcClientError.RpcClientError({ reason: "Protocol", message: SOCKET_LOST })))
    )
    /** A read (history, presence, stats) left on a replaced socket is asked again on the new one: reads are safe to repeat. */
    const read = <A, E>(
      call: Effect.Effect<A, E>
    ): Effect.Effect<A, E | RpcClientError.RpcClientError | Unauthenticated> =>
      Effect.raceFirst(call, socketLost).pipe(
        Effect.retry({ times: READ_RETRIES_ON_SOCKET_LOSS, while: isSocketLost }),
        Effect.raceFirst(tokenRefused)
      )

    // ndjson, as the server's /rpc route; transient open errors wait for the socket instead of
    // failing calls; no Ack per stream chunk (see `url`).
    const protocol = Layer.scoped(
      RpcClient.Protocol,
      Effect.map(
        RpcClient.makeProtocolSocket({
          retryTransientErrors: true,
          retrySchedule: resetWhenQuiet(reconnect, SOCKET_QUIET_RESET)
        }),
        (protocol) => ({ ...protocol, supportsAck: false })
      )
    ).pipe(
      Layer.provide(Layer.effect(Socket.Socket, socket)),
      Layer.provide(RpcSerialization.layerNdjson)
    )
    // Built into this scope (not Effect.provide), so the socket lives as long as the client.
    const rpc = yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(yield* Layer.build(protocol)))

    const bounded = yield* makeBoundedStreams(subscriptionBuffer)

    // Registered after the RPC client, so it runs before the client interrupts its open calls:
    // those interruptions then end subscriptions instead of looking like a server going away.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
      })
    )

    const sendRetry = options.sendRetry ?? defaultSendRetrySchedule
    const send = (request: SendInput) =>
      Effect.suspend(() => {
        const payload = {
          scopeType: request.scopeType,
          scopeId: request.scopeId,
          text: request.text,
          clientMessageId: request.clientMessageId ?? newClientMessageId()
        }
        return Effect.raceFirst(rpc.Send(payload, { headers }), socketLost).pipe(
          Effect.retry({ schedule: sendRetry, while: isRetryableSendError }),
          Effect.raceFirst(tokenRefused)
        )
      })

    const history = (query: HistoryQuery) => read(rpc.History(query, { headers }))

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
      read(rpc.Presence({ scopeType: scope.scopeType, scopeId: scope.scopeId }, { headers }))

    const stats = (query: StatsQuery) => read(rpc.Stats(query, { headers }))

    const rateLimitViolations = bounded(
      RATE_LIMIT_VIOLATIONS_STREAM,
      (mailbox) => rpc.RateLimitViolations(undefined, { headers, ...mailbox })
    )

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
        // After a refused token: the next attempt carries a fresh one of its own (the socket's may
        // be the expired one until the server closes it); one such attempt per live period.
        let needsFreshToken = false
        let triedFreshToken = false

        const once = Stream.unwrap(Effect.gen(function*() {
          const fresh = needsFreshToken && tokenOf !== undefined ? yield* tokenOf : undefined
          needsFreshToken = false
          return attemptWith(fresh === undefined ? headers : { ...headers, authorization: `Bearer ${fresh}` })
        }))

        const attemptWith = (attemptHeaders: Readonly<Record<string, string>> | undefined) =>
          Stream.suspend(() => {
            const after = last
            let live = false
            // Bounds an attempt that never becomes live, e.g. a request queued behind a socket that cannot connect.
            const liveInTime = Effect.sleep(attemptTimeout).pipe(
              Effect.zipRight(
                Effect.suspend(() => live ? Effect.never : Effect.fail(new Timeout({ operation: "subscribe" })))
              )
            )
            return bounded(scope.scopeId, (mailbox) =>
              rpc.Subscribe(
                { scopeType: scope.scopeType, scopeId: scope.scopeId, ...(after === undefined ? {} : { after }) },
                { headers: attemptHeaders, ...mailbox }
              )).pipe(
                Stream.mapEffect((item): Effect.Effect<Option.Option<SubscriptionUpdate>> => {
                  if (item instanceof Subscribed) {
                    // Live again: the next loss starts the backoff from its first delay.
                    return Effect.as(
                      Effect.zipRight(
                        backoff.reset,
                        Effect.sync(() => {
                          live = true
                          attempt = 0
                          triedFreshToken = false
                          // nothing delivered yet: a later resume starts where this subscription went live
                          if (last === undefined) last = item.position
                        })
                      ),
                      Option.some(SubscriptionUpdate.Live({ resumedAfter: Option.fromNullable(after) }))
                    )
                  }
                  return Effect.sync(() => {
                    if (dedupe && !seen.firstSeen(item.chatEvent.messageId)) return Option.none()
                    last = positionOf(item)
                    return Option.some(SubscriptionUpdate.Event({ event: item }))
                  })
                }),
                Stream.filterMap(identity),
                Stream.interruptWhen(liveInTime),
                Stream.interruptWhen(socketLost),
                Stream.interruptWhen(tokenRefused),
                // A subscription has no natural end: a clean end means the server let go of it.
                Stream.concat(
                  Stream.suspend(() =>
                    Stream.fail(new SubscriptionEnded({ message: "the server ended the subscription" }))
                  )
                )
              )
          })

        const resume = (reason: RetryableSubscribeError): Stream.Stream<SubscriptionUpdate, SubscriptionError> =>
          Stream.concat(
            Stream.sync(() => SubscriptionUpdate.Reconnecting({ reason, attempt: ++attempt })),
            Stream.unwrap(
              backoff.next(reason).pipe(
                // refused by the read rate limit: not before the server said (the backoff's jitter on
                // top, so the clients it refused together do not all come back at once)
                Effect.zipLeft(
                  reason._tag === "RateLimited" ? Effect.sleep(Duration.seconds(reason.retryAfterSeconds)) : Effect.void
                ),
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
              onLeft: (error) => {
                const lostPosition = last
                if (error._tag === "Conflict" && lostPosition !== undefined) {
                  // the position, not the subscription, is what the server refused: go on live
                  last = undefined
                  return Stream.concat(
                    Stream.succeed(SubscriptionUpdate.PositionLost({ position: lostPosition, reason: error })),
                    Stream.suspend(run)
                  )
                }
                return Option.match(retryable(error, refreshable && !triedFreshToken), {
                  onNone: () => Stream.failCause(cause),
                  onSome: (reason) => {
                    if (reason._tag === "Unauthenticated") {
                      needsFreshToken = true
                      triedFreshToken = true
                    }
                    return resume(reason)
                  }
                })
              },
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

    return {
      send,
      history,
      historyAll,
      presence,
      stats,
      rateLimitViolations,
      subscribe,
      subscribeWithStatus
    } satisfies ChatClientService
  })

/**
 * The Chatify client as a service: `ChatClient.layer({ url })`, then `yield* ChatClient`. This
 * `layer` needs a WebSocketConnector; the ChatClient of `@chatify/sdk/node` or `/browser` has it.
 */
export class ChatClient extends Context.Tag("@chatify/sdk/ChatClient")<ChatClient, ChatClientService>() {
  static readonly layer = (options: ChatClientOptions): Layer.Layer<ChatClient, never, WebSocketConnector> =>
    Layer.scoped(ChatClient, makeChatClient(options))
}
