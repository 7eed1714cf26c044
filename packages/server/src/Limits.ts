import { Context, Layer } from "effect"
import { LimitExceeded } from "@chatify/domain"

/** What one client may hold or send at most (CHATIFY__LIMITS__*): each bound has its typed error. */
export interface LimitSettings {
  /** The largest WebSocket frame: a bigger one closes the socket with 1009 before it is buffered. */
  readonly maxFrameBytes: number
  /** The largest HTTP request body: a bigger one is answered 413 before it is read whole. */
  readonly maxBodyBytes: number
  /** Bytes of received requests one connection may have waiting to run; more closes it. */
  readonly maxInboundBytes: number
  /**
   * Requests one RPC connection may have running at once (SignalR's are bounded by its pending
   * invocations and bytes); a client that sends more is closed.
   */
  readonly maxConcurrentRequestsPerConnection: number
  /** Subscriptions (RPC) or joined scopes (SignalR) one connection may hold. */
  readonly maxSubscriptionsPerConnection: number
  /** Open WebSocket connections from one client address; more are refused with 429. */
  readonly maxConnectionsPerAddress: number
  /** WebSocket upgrades from one client address per second; more are refused with 429 (RateLimited). */
  readonly maxConnectsPerSecondPerAddress: number
  /**
   * Seconds an RPC subscription may wait for the Ack of a chunk it sent (the client takes it, or
   * the chunk leaves our outbox): then it ends with SubscriptionLagged, so the client resumes from
   * the history instead of waiting silently forever.
   */
  readonly subscriptionAckTimeoutSeconds: number
  /**
   * Sends in progress on this server at once, from every client and interface; more are refused at
   * once with 503 (DependencyUnavailable of "chat-api"), which clients retry, rather than queued.
   */
  readonly maxSendsInFlight: number
}

export const defaultLimitSettings: LimitSettings = {
  maxFrameBytes: 64 * 1024,
  maxBodyBytes: 64 * 1024,
  maxInboundBytes: 1024 * 1024,
  maxConcurrentRequestsPerConnection: 4_096,
  maxSubscriptionsPerConnection: 100,
  maxConnectionsPerAddress: 1_000,
  maxConnectsPerSecondPerAddress: 200,
  subscriptionAckTimeoutSeconds: 30,
  maxSendsInFlight: 1_000
}

export class Limits extends Context.Tag("@chatify/server/Limits")<Limits, LimitSettings>() {
  static readonly layer = (settings: LimitSettings) => Layer.succeed(Limits, settings)
}

export const tooManySubscriptions = (maximum: number) =>
  new LimitExceeded({
    limit: "MaxSubscriptionsPerConnection",
    maximum,
    message: `a connection may hold at most ${maximum} subscriptions (CHATIFY__LIMITS__MAXSUBSCRIPTIONSPERCONNECTION)`
  })

export const tooManyConnections = (maximum: number) =>
  new LimitExceeded({
    limit: "MaxConnectionsPerAddress",
    maximum,
    message: `at most ${maximum} connections from one address (CHATIFY__LIMITS__MAXCONNECTIONSPERADDRESS)`
  })

export const bodyTooLarge = (maximum: number) =>
  new LimitExceeded({
    limit: "MaxBodyBytes",
    maximum,
    message: `a request body may hold at most ${maximum} bytes (CHATIFY__LIMITS__MAXBODYBYTES)`
  })
