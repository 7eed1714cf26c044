import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcMiddleware from "@effect/rpc/RpcMiddleware"
import { Schema } from "effect"
import { ChatScopeType, ClientMessageId, EnrichedChatEvent, StreamPosition } from "./ChatEvent.js"
import { RateLimitViolation, ScopeStats, UtcDateTime } from "./Analytics.js"
import { OperatorStreamError, QueryError, SendError, SubscribeError, Unauthenticated, Unexpected } from "./Errors.js"
import { HistoryLimit, HistoryPage } from "./History.js"
import { CurrentUser } from "./Identity.js"
import { ScopePresence } from "./Presence.js"

/**
 * The first item of every subscription: from here on, live events reach the subscriber.
 * For a subscription without a resume position, `position` is where it went live: a client that
 * loses the connection before its first event resumes after it and misses nothing. It is absent
 * when the scope's partition is still empty.
 */
export class Subscribed extends Schema.TaggedClass<Subscribed>()("Subscribed", {
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  position: Schema.optional(StreamPosition)
}) {}

export const SubscriptionItem = Schema.Union(Subscribed, EnrichedChatEvent)
export type SubscriptionItem = typeof SubscriptionItem.Type

/** Subscribe's payload: the scope, and optionally the last position the client has seen. */
export const SubscribePayload = Schema.Struct({
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  after: Schema.optional(StreamPosition)
})

/** Send's payload: the scope, the text, and optionally the client's idempotency key. */
export const SendPayload = Schema.Struct({
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  text: Schema.String,
  clientMessageId: Schema.optional(ClientMessageId)
})

/**
 * Who calls: every RPC's caller, authenticated by the server from the call's headers (on the
 * WebSocket, the upgrade's Authorization header or access_token come first) and provided to the
 * handler. Server-side only: not required for clients, which send nothing for it, so any RpcClient
 * of ChatRpcs works as it is.
 */
export class RpcAuthentication extends RpcMiddleware.Tag<RpcAuthentication>()("@chatify/domain/RpcAuthentication", {
  provides: CurrentUser,
  failure: Unauthenticated
}) {}

/**
 * Around every RPC, outside RpcAuthentication: the call's correlation id (its X-Correlation-ID
 * when valid, else a fresh one) for everything it logs, and a defect answered as Unexpected,
 * without internals. Server-side only, as RpcAuthentication.
 */
export class RpcCall extends RpcMiddleware.Tag<RpcCall>()("@chatify/domain/RpcCall", {
  wrap: true,
  failure: Unexpected
}) {}

export class ChatRpcs extends RpcGroup.make(
  Rpc.make("Send", {
    payload: SendPayload,
    success: EnrichedChatEvent,
    error: SendError
  }),
  Rpc.make("Subscribe", {
    payload: SubscribePayload,
    success: SubscriptionItem,
    error: SubscribeError,
    stream: true
  }),
  Rpc.make("History", {
    payload: {
      scopeType: ChatScopeType,
      scopeId: Schema.String,
      limit: Schema.optional(HistoryLimit),
      before: Schema.optional(Schema.String)
    },
    success: HistoryPage,
    error: QueryError
  }),
  Rpc.make("Presence", {
    payload: { scopeType: ChatScopeType, scopeId: Schema.String },
    success: ScopePresence,
    error: QueryError
  }),
  Rpc.make("Stats", {
    payload: {
      scopeType: ChatScopeType,
      scopeId: Schema.String,
      from: Schema.optional(UtcDateTime),
      to: Schema.optional(UtcDateTime)
    },
    success: ScopeStats,
    error: QueryError
  }),
  /** For operators (CHATIFY__ANALYTICS__OPERATORS): the recent violations this pod holds, then live ones. */
  Rpc.make("RateLimitViolations", {
    success: RateLimitViolation,
    error: OperatorStreamError,
    stream: true
  })
)
  // each middleware wraps the ones before it: RpcCall runs outermost
  .middleware(RpcAuthentication)
  .middleware(RpcCall)
{}
