/**
 * WebSocket upgrades without the HTTP pipeline: the Node server hands an upgrade whose path a
 * route claims straight to that route, which authenticates it and accepts it on one `ws` server
 * (bounded frames, no compression) or refuses it with ProblemDetails. A connection then costs a
 * socket and the state of its protocol, not a request fiber, a router pass and a platform socket.
 */
import { Context, Effect, Layer, type Scope } from "effect"
import type { IncomingMessage, Server } from "node:http"
import { STATUS_CODES } from "node:http"
import type { Duplex } from "node:stream"
import { WebSocketServer, type WebSocket } from "ws"
import { type ChatError, PROBLEM_CONTENT_TYPE, problemOf, RateLimited } from "@chatify/domain"
import { bearerChallenge, bearerOfHeader } from "../Auth.js"
import { acceptedCorrelationId, CORRELATION_HEADER } from "../Http.js"
import { ClientAddresses } from "../ClientAddress.js"
import { Limits, tooManyConnections } from "../Limits.js"
import { connectedSockets, socketLabels } from "../Metrics.js"
import { newUuid } from "../Runtime.js"

export interface Upgrade {
  readonly request: IncomingMessage
  readonly path: string
  readonly query: URLSearchParams
  readonly correlationId: string
  /** The bearer token: the Authorization header, else `access_token` (browsers' WebSockets). */
  readonly bearer: string | undefined
  /** The client's address (see ClientAddresses). */
  readonly clientAddress: string
}

/** What a route does with an upgrade: `accept` it (once), or `refuse` it with a typed error. */
export interface UpgradeResponder {
  /** `socket` is the one under `ws`, for writing prebuilt frames (see `webSocketTransport`). */
  readonly accept: (onOpen: (ws: WebSocket, socket: Duplex) => void) => void
  readonly refuse: (error: ChatError) => void
}

export type UpgradeHandler = (upgrade: Upgrade, respond: UpgradeResponder) => void

export interface GatewayOptions {
  /** The largest frame a client may send; bigger ones close the socket with 1009 before they are buffered. */
  readonly maxPayloadBytes: number
  /** Open sockets (and upgrades under way) from one client address; more are refused with 429. */
  readonly maxConnectionsPerAddress: number
  /** Upgrades from one client address per second; more are refused with 429 and Retry-After. */
  readonly maxConnectsPerSecondPerAddress: number
  readonly clientAddressOf: (request: IncomingMessage) => string
}

/** Routes WebSocket upgrades by path; unclaimed upgrades go to the HTTP server's own handler. */
export class WebSocketGateway extends Context.Tag("@chatify/server/WebSocketGateway")<WebSocketGateway, {
  /** Claims the upgrades to `path` while the surrounding Scope is open. */
  readonly route: (path: string, handler: UpgradeHandler) => Effect.Effect<void, never, Scope.Scope>
  /** Called by the Node server for each upgrade: true when a route took it. */
  readonly dispatch: (request: IncomingMessage, socket: Duplex, head: Buffer) => boolean
}>() {}

/**
 * Writes a ProblemDetails response on a socket that was never upgraded, then ends it. A 401
 * challenges with `error="invalid_token"` only when the upgrade sent a token (`bearer`).
 */
const writeProblem = (socket: Duplex, error: ChatError, instance: string, correlationId: string, bearer?: string) => {
  const problem = problemOf(error, { instance, correlationId })
  const body = JSON.stringify(problem)
  const extra = error._tag === "RateLimited"
    ? `retry-after: ${error.retryAfterSeconds}\r\n`
    : error._tag === "Unauthenticated"
    ? `www-authenticate: ${bearerChallenge(bearer)}\r\n`
    : ""
  socket.end(
    `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? ""}\r\n` +
      `content-type: ${PROBLEM_CONTENT_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `${CORRELATION_HEADER}: ${correlationId}\r\n${extra}connection: close\r\n\r\n${body}`
  )
}

// The listeners a socket keeps for its lifetime are made outside `dispatch`: a closure made inside
// it would keep dispatch's whole scope (the upgrade request with its headers, ~2 KB) as long as
// the socket lives.
function destroySocket(this: Duplex) {
  this.destroy()
}
const ignore = () => undefined

/** chatify_connected_sockets by interface: up as a socket opens, down as it closes. */
const countOpenSocket = (path: string, ws: WebSocket) => {
  const labels = path === "/rpc" ? socketLabels.rpc : path.startsWith("/hubs/") ? socketLabels.signalr : undefined
  if (labels === undefined) return
  connectedSockets.unsafeModify(1, labels)
  ws.once("close", () => connectedSockets.unsafeModify(-1, labels))
}

/** Counts a socket against its address until it closes. */
const holdAddress = (socket: Duplex, address: string, release: (address: string) => void) =>
  socket.once("close", () => release(address))

export const makeGateway = (options: GatewayOptions) =>
  Effect.gen(function*() {
    const wss = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new WebSocketServer({
          noServer: true,
          maxPayload: options.maxPayloadBytes,
          perMessageDeflate: false,
          clientTracking: false
        })
      ),
      (server) => Effect.async<void>((resume) => server.close(() => resume(Effect.void)))
    )
    const routes = new Map<string, UpgradeHandler>()
    const connectionsByAddress = new Map<string, number>()
    // upgrades per address in the current second: a fixed window, dropped whole when the second ends
    let connectsSecond = 0
    let connectsByAddress = new Map<string, number>()
    const connectAllowed = (address: string) => {
      const second = Math.floor(Date.now() / 1000)
      if (second !== connectsSecond) {
        connectsSecond = second
        connectsByAddress = new Map()
      }
      const count = (connectsByAddress.get(address) ?? 0) + 1
      connectsByAddress.set(address, count)
      return count <= options.maxConnectsPerSecondPerAddress
    }
    const release = (address: string) => {
      const count = (connectionsByAddress.get(address) ?? 1) - 1
      if (count <= 0) connectionsByAddress.delete(address)
      else connectionsByAddress.set(address, count)
    }

    const dispatch = (request: IncomingMessage, socket: Duplex, head: Buffer): boolean => {
      const url = request.url ?? "/"
      const queryAt = url.indexOf("?")
      const path = queryAt < 0 ? url : url.slice(0, queryAt)
      const handler = routes.get(path)
      if (handler === undefined) return false
      const query = new URLSearchParams(queryAt < 0 ? "" : url.slice(queryAt + 1))
      const incoming = request.headers[CORRELATION_HEADER]
      const correlationId = acceptedCorrelationId(typeof incoming === "string" ? incoming : undefined) ??
        newUuid()
      socket.on("error", destroySocket)
      const clientAddress = options.clientAddressOf(request)
      if (!connectAllowed(clientAddress)) {
        const limit = options.maxConnectsPerSecondPerAddress
        writeProblem(socket, new RateLimited({ limit, windowSeconds: 1, retryAfterSeconds: 1 }), path, correlationId)
        return true
      }
      const open = connectionsByAddress.get(clientAddress) ?? 0
      if (open >= options.maxConnectionsPerAddress) {
        writeProblem(socket, tooManyConnections(options.maxConnectionsPerAddress), path, correlationId)
        return true
      }
      // counted from the upgrade on, until its socket closes (refused, failed or ended)
      connectionsByAddress.set(clientAddress, open + 1)
      holdAddress(socket, clientAddress, release)
      const authorization = request.headers["authorization"]
      const bearer = authorization !== undefined
        ? bearerOfHeader(authorization)
        : query.get("access_token") ?? undefined
      let answered = false
      handler({ request, path, query, correlationId, bearer, clientAddress }, {
        accept: (onOpen) => {
          if (answered) return
          answered = true
          if (socket.destroyed) return
          wss.handleUpgrade(request, socket, head, (ws) => {
            // a protocol error (an oversize frame, invalid UTF-8) closes that socket; without a
            // listener it would be thrown and end the process
            ws.on("error", ignore)
            countOpenSocket(path, ws)
            onOpen(ws, socket)
          })
        },
        refuse: (error) => {
          if (answered) return
          answered = true
          if (!socket.destroyed) writeProblem(socket, error, path, correlationId, bearer)
        }
      })
      return true
    }

    return WebSocketGateway.of({
      route: (path, handler) =>
        Effect.acquireRelease(
          Effect.sync(() => void routes.set(path, handler)),
          () => Effect.sync(() => void routes.delete(path))
        ),
      dispatch
    })
  })

/**
 * The gateway of `server`: its upgrade events reach a route first, and the HTTP server's own
 * upgrade handling (the platform's) only when no route claims the path. Frames and connections
 * per address are bounded by the Limits; addresses are the ClientAddresses'.
 */
export const layerGateway = (server: Server) =>
  Layer.scoped(
    WebSocketGateway,
    Effect.gen(function*() {
      const limits = yield* Limits
      const addresses = yield* ClientAddresses
      return yield* makeGateway({
        maxPayloadBytes: limits.maxFrameBytes,
        maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
        maxConnectsPerSecondPerAddress: limits.maxConnectsPerSecondPerAddress,
        clientAddressOf: (request) => addresses.of(request.socket.remoteAddress, request.headers["x-forwarded-for"])
      })
    }).pipe(Effect.tap((gateway) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with the server as `this`
          const emit = server.emit
          server.emit = function(this: Server, event: string | symbol, ...args: Array<unknown>) {
            if (
              event === "upgrade" && gateway.dispatch(args[0] as IncomingMessage, args[1] as Duplex, args[2] as Buffer)
            ) {
              return true
            }
            return Reflect.apply(emit, this, [event, ...args]) as boolean
          } as Server["emit"]
          return emit
        }),
        (emit) => Effect.sync(() => void (server.emit = emit))
      )
    ))
  )
