import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Duration, Effect, Fiber, Layer, Option } from "effect"
import {
  createServer,
  type IncomingMessage,
  type Server as NodeHttpServerType,
  type ServerResponse,
  STATUS_CODES
} from "node:http"
import type { Duplex } from "node:stream"
import { ChatApi } from "@chatify/domain"
import type { ServerConfig } from "./Config.js"
import { HealthRoutes } from "./Health.js"
import { MetricsRoute } from "./Metrics.js"
import { AuthenticationLive, ChatApiHandlers, ProblemAndCorrelationMiddleware } from "./Http.js"
import { ChatRpcHandlers } from "./Rpc.js"
import { HttpConnections, ShutdownGate } from "./Runtime.js"
import { Consumers, ServerServices } from "./Services.js"
import { ClientAddresses } from "./ClientAddress.js"
import { Limits } from "./Limits.js"
import { layerGateway } from "./realtime/Gateway.js"
import { Flusher } from "./realtime/Outbox.js"
import { layerRpcSocket } from "./realtime/RpcSocketProtocol.js"
import { SignalRHubRoutes } from "./signalr/index.js"
import { isUntracedRequest } from "./Telemetry.js"
import { WebPageRoutes } from "./WebPage.js"

const RpcRoute = layerRpcSocket().pipe(Layer.provide(ChatRpcHandlers))

const ApiRoutes = HttpLayerRouter.addHttpApi(ChatApi, { openapiPath: "/openapi.json" }).pipe(
  Layer.provide(ChatApiHandlers),
  Layer.provide(AuthenticationLive)
)

/**
 * Swagger UI at /docs, loaded on the first visit: its module inlines the UI's bundle (~7 MB of
 * strings once imported), which a server that nobody browses need not hold. The first request
 * builds the page on a router of its own, in a fiber of the layer's scope; every visit (the first
 * too) waits for that fiber. A visitor who goes away stops waiting, not the build: built in the
 * first visitor's fiber, an interruption there was kept by Effect.cached and answered every later
 * visit with 499.
 */
const DocsRoute = Layer.scopedDiscard(
  Effect.gen(function*() {
    const router = yield* HttpLayerRouter.HttpRouter
    const scope = yield* Effect.scope
    const building = yield* Effect.cached(Effect.forkIn(
      Effect.gen(function*() {
        const HttpApiSwagger = yield* Effect.promise(() => import("@effect/platform/HttpApiSwagger"))
        const docsRouter = yield* HttpLayerRouter.make
        yield* Layer.buildWithScope(
          HttpApiSwagger.layerHttpLayerRouter({ api: ChatApi, path: "/docs" }).pipe(
            Layer.provide(Layer.succeed(HttpLayerRouter.HttpRouter, docsRouter))
          ),
          scope
        )
        return docsRouter.asHttpEffect()
      }),
      scope
    ))
    yield* router.add("GET", "/docs", Effect.flatten(Effect.flatMap(building, Fiber.join)))
  })
)

export const Routes = Layer.mergeAll(
  RpcRoute,
  ApiRoutes,
  DocsRoute,
  HealthRoutes,
  ProblemAndCorrelationMiddleware,
  SignalRHubRoutes,
  WebPageRoutes(),
  MetricsRoute
).pipe(
  Layer.provide(Flusher.layer)
)

/**
 * Built after the HTTP server, so on shutdown it runs first. /health/ready turns 503 at once while
 * everything is still served for the drain delay (CHATIFY__SHUTDOWN__DRAINDELAYSECONDS): load
 * balancers take that long to stop routing here (Kubernetes removes a terminating pod from its
 * endpoints as it sends SIGTERM, and every node and ingress catches up a few seconds later). Then it
 * refuses new sends (answered with `Connection: close`), finishes those in flight, lets go of idle
 * keep-alive connections and bounds the wait for the others.
 */
const DrainOnShutdown = (config: ServerConfig) =>
  Layer.scopedDiscard(
    Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const gate = yield* ShutdownGate
        const delay = config.shutdownDrainDelay
        if (!Duration.isZero(delay)) {
          yield* Effect.logInfo(
            `Shutting down: /health/ready is 503, serving on for ${
              Duration.format(delay)
            } (CHATIFY__SHUTDOWN__DRAINDELAYSECONDS; Ctrl-C skips it) while load balancers stop routing here`
          )
        }
        yield* gate.leave(delay)
        yield* Effect.logInfo("Shutting down: draining in-flight sends")
        yield* gate.drain(config.shutdownGrace)
        const connections = yield* Effect.serviceOption(HttpConnections)
        if (Option.isSome(connections)) {
          yield* connections.value.closeIdle
          yield* connections.value.closeAllAfter("1 second")
        }
      })
    )
  )

/**
 * The whole server on the embedded default. Build order is services → consumers → HTTP → drain,
 * so shutdown runs drain → stop HTTP → let the history writer catch up → close the stores.
 */
export const ChatServer = (config: ServerConfig) =>
  DrainOnShutdown(config).pipe(
    Layer.provide(
      HttpLayerRouter.serve(Routes, { disableLogger: true }).pipe(
        HttpMiddleware.withTracerDisabledWhen(isUntracedRequest)
      )
    ),
    Layer.provide(Consumers(config)),
    // the services stay in the output: an embedding process (or a test) can reach them
    Layer.provideMerge(ServerServices(config))
  )

/**
 * The server listens before the services behind the routes are built (Kafka, Cassandra and Redis
 * are awaited with backoff) and after they are gone on shutdown. Meanwhile nothing would answer a
 * request, and a probe would hang until its own timeout: this listener answers at once whenever no
 * router is attached. /health/live is 200 (the process is alive), every other path 503 with
 * `Retry-After`; once the router is attached (a second "request" listener) it stays out of the way.
 */
const answerWhileNotServing = (server: NodeHttpServerType) => {
  let served = false
  return (request: IncomingMessage, response: ServerResponse): void => {
    if (server.listenerCount("request") > 1) {
      served = true
      return
    }
    const phase = served ? "stopping" : "starting"
    const path = (request.url ?? "/").split("?", 1)[0]
    const live = path === "/health/live"
    const body = path?.startsWith("/health/") === true
      ? { status: live ? "Healthy" : "Unhealthy", checks: live ? {} : { server: phase } }
      : {
        type: "about:blank",
        title: "Service Unavailable",
        status: 503,
        detail: `the server is ${phase}`,
        instance: path
      }
    response.writeHead(live ? 200 : 503, {
      "content-type": path?.startsWith("/health/") === true ? "application/json" : "application/problem+json",
      ...(live ? {} : { "retry-after": "1" }),
      ...(served ? { connection: "close" } : {})
    })
    response.end(JSON.stringify(body))
    request.resume()
  }
}

/** What Node answers a request it cannot parse with, by its error code (400 for the rest). */
const UNPARSABLE_STATUS: Record<string, number> = {
  HPE_HEADER_OVERFLOW: 431,
  HPE_CHUNK_EXTENSIONS_OVERFLOW: 413,
  ERR_HTTP_REQUEST_TIMEOUT: 408
}

/**
 * Bytes Node's parser cannot read as a request (a broken head, a body without its length running
 * into the next request) get the status Node would send, as a ProblemDetails instead of a bare
 * status line, and the connection closes. Like Node, nothing is written while a response on the
 * connection has begun (it would corrupt that one).
 */
const answerUnparsable = (error: Error & { readonly code?: unknown }, socket: Duplex): void => {
  const inFlight = (socket as { readonly _httpMessage?: { readonly headersSent: boolean } | null })._httpMessage
  if (
    error.code !== "ECONNRESET" && socket.writable &&
    (inFlight === undefined || inFlight === null || !inFlight.headersSent)
  ) {
    const status = typeof error.code === "string" ? UNPARSABLE_STATUS[error.code] ?? 400 : 400
    const title = STATUS_CODES[status] ?? "Bad Request"
    const body = JSON.stringify({
      type: "about:blank",
      title,
      status,
      detail: "the request could not be parsed as HTTP/1.1"
    })
    socket.write(
      `HTTP/1.1 ${status} ${title}\r\ncontent-type: application/problem+json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
    )
  }
  socket.destroy()
}

const LISTEN_FAILURES: Record<string, string> = {
  EADDRINUSE:
    "is already in use (EADDRINUSE): another process listens there; stop it, or set PORT to another port (0 picks a free one)",
  EACCES: "may not be bound by this user (EACCES): ports below 1024 need privileges; set PORT to 1024 or above",
  EADDRNOTAVAIL: "is not an address of this machine (EADDRNOTAVAIL): set HOST to one of its addresses, or 0.0.0.0"
}

/**
 * The one line a failure to listen is reported with (`PORT: 0.0.0.0:8080 is already in use
 * (EADDRINUSE): …`), naming the address and the system's code; undefined for any other error.
 */
export const listenFailureMessage = (
  error: unknown,
  address: { readonly host: string; readonly port: number }
): string | undefined => {
  if (!(error instanceof HttpServerError.ServeError)) return undefined
  const cause: unknown = error.cause
  const code = typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined
  if (typeof code !== "string") return undefined
  const what = LISTEN_FAILURES[code] ?? `cannot be listened on (${code})`
  return `${code === "EADDRNOTAVAIL" ? "HOST" : "PORT"}: ${address.host}:${address.port} ${what}`
}

/**
 * Node's HTTP server on the configured address, with the connection handle shutdown needs and the
 * gateway that takes WebSocket upgrades.
 */
export const NodeServer = (config: Pick<ServerConfig, "host" | "port" | "limits" | "trustedProxies">) => {
  // a request without Host gets its 400 as a ProblemDetails from the HTTP middleware (Http.ts)
  const server = createServer({ requireHostHeader: false })
  server.on("request", answerWhileNotServing(server))
  server.on("clientError", answerUnparsable)
  return Layer.mergeAll(
    NodeHttpServer.layer(() => server, { port: config.port, host: config.host }),
    layerGateway(server).pipe(
      Layer.provide(Layer.merge(Limits.layer(config.limits), ClientAddresses.layer(config.trustedProxies)))
    ),
    Layer.succeed(HttpConnections, {
      closeIdle: Effect.sync(() => server.closeIdleConnections()),
      closeAllAfter: (delay) =>
        Effect.sync(() => {
          setTimeout(() => server.closeAllConnections(), Duration.toMillis(delay)).unref()
        })
    })
  )
}
