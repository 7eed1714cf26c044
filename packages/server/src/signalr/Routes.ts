/**
 * The HTTP side of the hub: POST {path}/negotiate and the WebSocket upgrade on GET {path}. Only
 * the WebSockets transport with the Text transfer format is offered.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Duration, Effect, Either, Layer, Option, Schedule } from "effect"
import type { Duplex } from "node:stream"
import type { WebSocket } from "ws"
import { callerServices, CorrelationId } from "@chatify/core"
import { type ChatError, Forbidden, NotFound, type Unauthenticated, ValidationError } from "@chatify/domain"
import { Authenticator, bearerOf, pathOf, type Principal } from "../Auth.js"
import { ClientAddresses } from "../ClientAddress.js"
import { Limits } from "../Limits.js"
import { problemResponse } from "../Http.js"
import { Identities, ShutdownGate } from "../Runtime.js"
import { type Upgrade, type UpgradeResponder, WebSocketGateway } from "../realtime/Gateway.js"
import { makeFiberStarter } from "../realtime/Fibers.js"
import { Flusher, webSocketTransport } from "../realtime/Outbox.js"
import { type InvocationServices, makeChatHub, makeReceiveMessageEncoder } from "./ChatHub.js"
import { type ConnectionSettings, defaultConnectionSettings, type RunFork, SignalRConnection } from "./Connection.js"

export interface SignalRHubOptions extends ConnectionSettings {
  readonly path: `/${string}`
  /** How long the id a negotiate hands out can be used to connect (once). */
  readonly negotiationTimeout: Duration.Duration
}

export const defaultSignalRHubOptions: SignalRHubOptions = {
  ...defaultConnectionSettings,
  path: "/hubs/chat",
  negotiationTimeout: Duration.seconds(15)
}

/** How often the connections' timers are checked: their precision. */
const TICK = Duration.seconds(1)

interface Negotiated {
  readonly connectionId: string
  readonly userId: string
  readonly validUntilMs: number
}

/**
 * Ids handed out by negotiate and not yet used. Every entry lives equally long, so the oldest
 * (first in insertion order) expire first and pruning stops at the first live one.
 */
const makeNegotiations = (lifetimeMs: number) => {
  const entries = new Map<string, Negotiated>()
  const prune = (nowMs: number) => {
    for (const [token, entry] of entries) {
      if (entry.validUntilMs > nowMs) break
      entries.delete(token)
    }
  }
  return {
    add: (token: string, connectionId: string, userId: string, nowMs: number) => {
      prune(nowMs)
      entries.set(token, { connectionId, userId, validUntilMs: nowMs + lifetimeMs })
    },
    find: (token: string, nowMs: number): Negotiated | undefined => {
      prune(nowMs)
      return entries.get(token)
    },
    use: (token: string) => {
      entries.delete(token)
    }
  }
}

const searchParamsOf = (url: string) => {
  const query = url.indexOf("?")
  return new URLSearchParams(query < 0 ? "" : url.slice(query + 1))
}

/** negotiateVersion: absent means 0 (the oldest clients); anything newer than 1 gets 1, as ASP.NET Core does. */
const negotiateVersionOf = (value: string | null): Either.Either<0 | 1, ValidationError> => {
  if (value === null) return Either.right(0)
  if (!/^\d{1,9}$/u.test(value)) {
    return Either.left(
      new ValidationError({ errors: [{ field: "negotiateVersion", message: "must be a non-negative integer" }] })
    )
  }
  return Either.right(Number(value) >= 1 ? 1 : 0)
}

/** A secret for v1 clients: the connection id is shared with other parties, the token is not. */
const newConnectionToken = () => {
  const bytes = new Uint8Array(16)
  crypto.getRandomValues(bytes)
  return Buffer.from(bytes).toString("base64url")
}

const refuse = (error: ChatError, url: string) =>
  Effect.map(CorrelationId, (correlationId) => problemResponse(error, pathOf(url), correlationId))

/** The SignalR hub's routes with `options` (defaults: ASP.NET Core's, 1 MiB messages). */
export const makeSignalRHubRoutes = (overrides: Partial<SignalRHubOptions> = {}) =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const limits = yield* Limits
      // a record never exceeds a frame (the gateway closes a larger frame first)
      const options: SignalRHubOptions = {
        ...defaultSignalRHubOptions,
        maxMessageBytes: Math.min(defaultSignalRHubOptions.maxMessageBytes, limits.maxFrameBytes),
        maxPendingBytes: limits.maxInboundBytes,
        ...overrides
      }
      const router = yield* HttpLayerRouter.HttpRouter
      const authenticator = yield* Authenticator
      const clientAddresses = yield* ClientAddresses
      const identities = yield* Identities
      const gate = yield* ShutdownGate
      const services = yield* callerServices
      const negotiations = makeNegotiations(Duration.toMillis(options.negotiationTimeout))
      const flusher = yield* Flusher
      const gateway = yield* WebSocketGateway
      const chatHub = makeChatHub({
        encodeReceiveMessage: makeReceiveMessageEncoder(),
        gate,
        services,
        maxMemberships: limits.maxSubscriptionsPerConnection
      })

      const negotiate = Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const version = negotiateVersionOf(searchParamsOf(request.url).get("negotiateVersion"))
        if (Either.isLeft(version)) return yield* refuse(version.left, request.url)
        const connectionId = identities.newConnectionId()
        const clientAddress = clientAddresses.of(
          Option.getOrUndefined(request.remoteAddress),
          request.headers["x-forwarded-for"]
        )
        const principal = yield* Effect.either(
          authenticator.authenticate(bearerOf(request), connectionId, clientAddress)
        )
        if (Either.isLeft(principal)) return yield* refuse(principal.left, request.url)
        const token = version.right === 1 ? newConnectionToken() : connectionId
        negotiations.add(token, connectionId, principal.right.userId, Date.now())
        return HttpServerResponse.unsafeJson({
          negotiateVersion: version.right,
          connectionId,
          ...(version.right === 1 ? { connectionToken: token } : {}),
          availableTransports: [{ transport: "WebSockets", transferFormats: ["Text"] }]
        })
      })

      // A plain GET is the client's mistake: the WebSocket upgrade is the only transport offered.
      const notAnUpgrade = Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        return yield* refuse(
          new ValidationError({
            errors: [{ field: "request", message: "expected a WebSocket upgrade (the only transport offered)" }]
          }),
          request.url
        )
      })

      // Invocations and upgrades run as fibers of this layer: they end with it (server shutdown),
      // before the services they use.
      const fibers = yield* makeFiberStarter()
      const runFork: RunFork = fibers.run
      const connections = new Set<SignalRConnection<InvocationServices>>()
      // one ticker for every connection's keep-alive, timeouts and token expiry
      yield* Effect.sync(() => {
        const now = Date.now()
        for (const connection of connections) connection.tick(now)
      }).pipe(Effect.repeat(Schedule.spaced(TICK)), Effect.forkScoped)
      yield* Effect.addFinalizer(() =>
        Effect.forEach(Array.from(connections), (connection) => connection.shutdown(), {
          discard: true,
          concurrency: "unbounded"
        })
      )

      // Made here rather than inside `admit`: the socket's listeners keep the scope they are made in
      // for as long as the connection lives, and admit's holds the upgrade request.
      const open = (ws: WebSocket, socket: Duplex, connectionId: string, principal: Principal) => {
        const connection = new SignalRConnection({
          transport: webSocketTransport(ws, socket),
          closeSocket: (code) => ws.close(code),
          settings: options,
          flusher,
          connectionId,
          expiresAtMs: principal.expiresAtMs,
          makeHub: (client) => chatHub(principal, client),
          runFork,
          startFiber: fibers.start,
          nowMs: Date.now()
        })
        connections.add(connection)
        connection.whenClosed(() => connections.delete(connection))
        ws.on("message", (data: Buffer, isBinary: boolean) =>
          connection.receive(
            isBinary ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : data.toString(),
            Date.now()
          ))
        ws.once("close", () => connection.closed())
      }

      /** Opens the hub connection of an upgrade whose credentials were checked. */
      const admit = (
        upgrade: Upgrade,
        respond: UpgradeResponder,
        negotiated: Negotiated | undefined,
        connectionId: string,
        authenticated: Either.Either<Principal, Unauthenticated>
      ) => {
        if (Either.isLeft(authenticated)) return respond.refuse(authenticated.left)
        const principal = authenticated.right
        if (negotiated !== undefined && negotiated.userId !== principal.userId) {
          return respond.refuse(new Forbidden({ message: "the connection was negotiated by another user" }))
        }
        const id = upgrade.query.get("id")
        if (id !== null) negotiations.use(id)
        respond.accept((ws, socket) => open(ws, socket, connectionId, principal))
      }

      // Synchronous unless the credentials need I/O (a token to verify): then a fiber checks them.
      const connect = (upgrade: Upgrade, respond: UpgradeResponder) => {
        // With an id it must come from a negotiate (connectionToken for v1); without one (skipNegotiation) mint it.
        const id = upgrade.query.get("id")
        const negotiated = id === null ? undefined : negotiations.find(id, Date.now())
        if (id !== null && negotiated === undefined) {
          return respond.refuse(new NotFound({ message: "No connection with that id: negotiate again" }))
        }
        const connectionId = negotiated?.connectionId ?? identities.newConnectionId()
        // authenticated again at the upgrade: the token may have changed or expired since negotiate
        const now = authenticator.authenticateNow?.(upgrade.bearer, connectionId, upgrade.clientAddress)
        if (now !== undefined) return admit(upgrade, respond, negotiated, connectionId, now)
        runFork(
          Effect.either(authenticator.authenticate(upgrade.bearer, connectionId, upgrade.clientAddress)).pipe(
            Effect.map((authenticated) => admit(upgrade, respond, negotiated, connectionId, authenticated)),
            Effect.annotateLogs({ hub: options.path, correlationId: upgrade.correlationId })
          )
        )
      }

      yield* router.add("POST", `${options.path}/negotiate`, negotiate)
      yield* router.add("GET", options.path, notAnUpgrade)
      yield* gateway.route(options.path, connect)
    })
  )

/** The SignalR-compatible hub at /hubs/chat (JoinScopeAsync, LeaveScopeAsync, SendAsync → ReceiveMessage). */
export const SignalRHubRoutes = makeSignalRHubRoutes()
