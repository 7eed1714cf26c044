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
import { type ChatError, PROBLEM_CONTENT_TYPE, problemOf } from "@chatify/domain"
import { bearerOfHeader } from "../Auth.js"
import { CORRELATION_HEADER, validCorrelationId } from "../Http.js"


export interface Upgrade {
  readonly request: IncomingMessage
  readonly path: string
  readonly query: URLSearchParams
  readonly correlationId: string
  /** The bearer token: the Authorization header, else `access_token` (browsers' WebSockets). */
  readonly bearer: string | undefined
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
}

/** Routes WebSocket upgrades by path; unclaimed upgrades go to the HTTP server's own handler. */
export class WebSocketGateway extends Context.Tag("@chatify/server/WebSocketGateway")<WebSocketGateway, {
  /** Claims the upgrades to `path` while the surrounding Scope is open. */
  readonly route: (path: string, handler: UpgradeHandler) => Effect.Effect<void, never, Scope.Scope>
  /** Called by the Node server for each upgrade: true when a route took it. */
  readonly dispatch: (request: IncomingMessage, socket: Duplex, head: Buffer) => boolean
}>() {}

/** Writes a ProblemDetails response on a socket that was never upgraded, then ends it. */
const writeProblem = (socket: Duplex, error: ChatError, instance: string, correlationId: string) => {
  const problem = problemOf(error, { instance, correlationId })
  const body = JSON.stringify(problem)
  const extra = error._tag === "RateLimited"
    ? `retry-after: ${error.retryAfterSeconds}\r\n`
    : error._tag === "Unauthenticated"
    ? `www-authenticate: Bearer error="invalid_token"\r\n`
    : ""
  socket.end(
    `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? ""}\r\n` +
      `content-type: ${PROBLEM_CONTENT_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `${CORRELATION_HEADER}: ${correlationId}\r\n${extra}connection: close\r\n\r\n${body}`
  )
}

export const makeGateway = (options: GatewayOptions) =>
  Effect.gen(function*() {
    const wss = yield* Effect.acquireRelease(
      Effect.sync(() => new WebSocketServer({ noServer: true, maxPayload: options.maxPayloadBytes, perMessageDeflate: false, clientTracking: false })),
      (server) => Effect.async<void>((resume) => server.close(() => resume(Effect.void)))
    )
    const routes = new Map<string, UpgradeHandler>()

    const dispatch = (request: IncomingMessage, socket: Duplex, head: Buffer): boolean => {
      const url = request.url ?? "/"
      const queryAt = url.indexOf("?")
      const path = queryAt < 0 ? url : url.slice(0, queryAt)
      const handler = routes.get(path)
      if (handler === undefined) return false
      const query = new URLSearchParams(queryAt < 0 ? "" : url.slice(queryAt + 1))
      const incoming = request.headers[CORRELATION_HEADER]
      const correlationId = typeof incoming === "string" && validCorrelationId.test(incoming) ? incoming : crypto.randomUUID()
      const authorization = request.headers["authorization"]
      const bearer = authorization !== undefined ? bearerOfHeader(authorization) : query.get("access_token") ?? undefined
      let answered = false
      socket.on("error", () => socket.destroy())
      handler({ request, path, query, correlationId, bearer }, {
        accept: (onOpen) => {
          if (answered) return
          answered = true
          if (socket.destroyed) return
          wss.handleUpgrade(request, socket, head, (ws) => {
            // a protocol error (an oversize frame, invalid UTF-8) closes that socket; without a
            // listener it would be thrown and end the process
            ws.on("error", () => undefined)
            onOpen(ws, socket)
          })
        },
        refuse: (error) => {
          if (answered) return
          answered = true
          if (!socket.destroyed) writeProblem(socket, error, path, correlationId)
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
 * upgrade handling (the platform's) only when no route claims the path.
 */
export const layerGateway = (server: Server, options: GatewayOptions) =>
  Layer.scoped(
    WebSocketGateway,
    Effect.tap(makeGateway(options), (gateway) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const emit = server.emit
          server.emit = function(this: Server, event: string | symbol, ...args: Array<unknown>) {
            if (event === "upgrade" && gateway.dispatch(args[0] as IncomingMessage, args[1] as Duplex, args[2] as Buffer)) {
              return true
            }
            return Reflect.apply(emit, this, [event, ...args]) as boolean
          } as Server["emit"]
          return emit
        }),
        (emit) => Effect.sync(() => void (server.emit = emit))
      ))
  )
