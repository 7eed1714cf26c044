import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { createServer } from "node:http"
import { envConfigProvider, loadServerConfig } from "./Config.js"
import { ChatServer } from "./Server.js"

const SERVICE = "chatify-chat-api"

const program = Effect.gen(function*() {
  const config = yield* loadServerConfig
  yield* Effect.logInfo(
    `Starting on ${config.host}:${config.port} as pod ${config.podId} (embedded broker, data in ${config.dataDirectory})`
  )
  yield* Effect.logWarning("No authentication is configured: every connection gets an anonymous identity")
  return yield* Layer.launch(
    ChatServer(config).pipe(
      Layer.provide(NodeHttpServer.layer(createServer, { port: config.port, host: config.host }))
    )
  ).pipe(Effect.annotateLogs({ podId: config.podId }))
}).pipe(
  Effect.tapErrorTag("InvalidConfiguration", (error) => Effect.logError(error.message)),
  Effect.annotateLogs({ service: SERVICE }),
  Effect.provide(envConfigProvider),
  Effect.provide(Logger.json),
  Logger.withMinimumLogLevel(LogLevel.Info)
)

NodeRuntime.runMain(program, { disablePrettyLogger: true })
