// first: V8 settings that must hold before the other modules run (see V8Tuning.ts)
import "./V8TuningApplied.js"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Layer, Option } from "effect"
import { envConfigProvider, loadServerConfig } from "./Config.js"
import * as Logging from "./Logging.js"
import { ShutdownGate } from "./Runtime.js"
import { ChatServer, listenFailureMessage, NodeServer } from "./Server.js"
import { loadTracingConfig, TracingLayer } from "./Telemetry.js"

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

let listenAddress: { readonly host: string; readonly port: number } | undefined

const program = Effect.gen(function*() {
  const config = yield* loadServerConfig
  const tracing = yield* loadTracingConfig
  listenAddress = { host: config.host, port: config.port }
  yield* Effect.logInfo(
    `Starting on ${config.host}:${config.port} as pod ${config.podId} (embedded broker, data in ${config.dataDirectory})`
  )
  if (Option.isNone(config.auth)) {
    yield* Effect.logWarning(
      "No authentication is configured (CHATIFY__AUTH__*): every caller is anonymous (one identity per connection, per client address on REST)"
    )
  }
  return yield* Layer.launch(
    SkipDrainDelayOnCtrlC.pipe(
      Layer.provideMerge(ChatServer(config)),
      Layer.provide(NodeServer(config)),
      // built first and closed last: spans of the whole shutdown are still exported
      Layer.provide(TracingLayer(tracing, { "service.instance.id": config.podId }))
    )
  )
}).pipe(
  Effect.tapErrorCause((cause) =>
    Cause.failureOption(cause).pipe(
      Option.flatMap((error): Option.Option<string> =>
        error._tag === "InvalidConfiguration"
          ? Option.some(error.message)
          : Option.fromNullable(listenAddress === undefined ? undefined : listenFailureMessage(error, listenAddress))
      ),
      Option.match({
        // one line that says what to do, without a stack trace
        onSome: (message) => Effect.logError(message),
        onNone: () => Effect.logError("Chatify stopped on an error", cause)
      })
    )
  ),
  Effect.provide(envConfigProvider),
  // JSON lines (pretty in a terminal) with service, pod, environment, pid and the caller's fields,
  // also to Elasticsearch/OpenSearch with CHATIFY__LOGGING__URI; released last, after a final flush
  Effect.provide(Logging.layerConfig(process.stdout.isTTY).pipe(Layer.provide(envConfigProvider)))
)

// errors are logged above as JSON lines; the exit code says the rest
NodeRuntime.runMain(program, { disablePrettyLogger: true, disableErrorReporting: true })
