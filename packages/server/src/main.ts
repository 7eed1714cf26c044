import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Cause, Duration, Effect, Layer, Logger, LogLevel, Option } from "effect"
import { createServer } from "node:http"
import { envConfigProvider, loadServerConfig } from "./Config.js"
import { HttpConnections } from "./Runtime.js"
import { ChatServer } from "./Server.js"

const SERVICE = "chatify-chat-api"

const program = Effect.gen(function*() {
  const config = yield* loadServerConfig
  yield* Effect.logInfo(
    `Starting on ${config.host}:${config.port} as pod ${config.podId} (embedded broker, data in ${config.dataDirectory})`
  )
  if (Option.isNone(config.auth)) {
    yield* Effect.logWarning(
      "No authentication is configured (CHATIFY__AUTH__*): every connection gets an anonymous identity"
    )
  }
  const nodeServer = createServer()
  const connections = Layer.succeed(HttpConnections, {
    closeIdle: Effect.sync(() => nodeServer.closeIdleConnections()),
    closeAllAfter: (delay) =>
      Effect.sync(() => {
        setTimeout(() => nodeServer.closeAllConnections(), Duration.toMillis(delay)).unref()
      })
  })
  return yield* Layer.launch(
    ChatServer(config).pipe(
      Layer.provide(connections),
      Layer.provide(NodeHttpServer.layer(() => nodeServer, { port: config.port, host: config.host }))
    )
  ).pipe(Effect.annotateLogs({ podId: config.podId }))
}).pipe(
  Effect.tapErrorCause((cause) =>
    Cause.failureOption(cause).pipe(
      Option.filter((error) => error._tag === "InvalidConfiguration"),
      Option.match({
        onSome: (error) => Effect.logError(error.message),
        onNone: () => Effect.logError("Chatify stopped on an error", cause)
      })
    )
  ),
  Effect.annotateLogs({ service: SERVICE }),
  Effect.provide(envConfigProvider),
  Effect.provide(Logger.json),
  Logger.withMinimumLogLevel(LogLevel.Info)
)

// errors are logged above as JSON lines; the exit code says the rest
NodeRuntime.runMain(program, { disablePrettyLogger: true, disableErrorReporting: true })
