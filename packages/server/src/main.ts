import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Layer, Logger, LogLevel, Option } from "effect"
import { envConfigProvider, loadServerConfig } from "./Config.js"
import { withCallerFields } from "./Logging.js"
import { ShutdownGate } from "./Runtime.js"
import { ChatServer, NodeServer } from "./Server.js"

const SERVICE = "chatify-chat-api"

/**
 * Ctrl-C (SIGINT) comes from someone at a terminal, not from an orchestrator: there is no load
 * balancer to wait for, so shutdown skips the drain delay (also when one already runs after SIGTERM).
 * SIGTERM keeps it; either signal starts the shutdown itself (NodeRuntime.runMain).
 */
const SkipDrainDelayOnCtrlC = Layer.effectDiscard(
  Effect.flatMap(ShutdownGate, (gate) =>
    Effect.sync(() => {
      process.once("SIGINT", () => Effect.runSync(gate.skipDelay))
    }))
)

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
  return yield* Layer.launch(
    SkipDrainDelayOnCtrlC.pipe(Layer.provideMerge(ChatServer(config)), Layer.provide(NodeServer(config)))
  ).pipe(
    Effect.annotateLogs({ podId: config.podId })
  )
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
  // Logger.json, with the caller's fields on every line written inside a call
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleLog(withCallerFields(Logger.jsonLogger)))),
  Logger.withMinimumLogLevel(LogLevel.Info)
)

// errors are logged above as JSON lines; the exit code says the rest
NodeRuntime.runMain(program, { disablePrettyLogger: true, disableErrorReporting: true })
