import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Duration, Effect, Layer, Schedule } from "effect"
import { ConsumerHealth } from "@chatify/core"
import { ReadinessChecks, ShutdownGate } from "./Runtime.js"

const CONSUMERS = ["broadcast", "history-writer"] as const

const report = (healthy: boolean, checks: Record<string, string>) =>
  HttpServerResponse.unsafeJson({ status: healthy ? "Healthy" : "Unhealthy", checks }, { status: healthy ? 200 : 503 })

/** How often the dependencies are asked in the background, and how old an answer /health/ready reuses. */
const CHECK_INTERVAL = Duration.seconds(1)
const MAX_ANSWER_AGE_MILLIS = 3_000

/**
 * /health/live, /health/startup and /health/ready, as the Kubernetes probes of the original design.
 * The dependencies are asked in the background once a second; /health/ready answers from the latest
 * answers (at most a few seconds old), so a probe waits for no round trip to a busy dependency.
 */
export const HealthRoutes = Layer.scopedDiscard(
  Effect.gen(function*() {
    const router = yield* HttpLayerRouter.HttpRouter
    const consumers = yield* ConsumerHealth
    const readiness = yield* ReadinessChecks
    const gate = yield* ShutdownGate

    const consumerChecks = Effect.map(consumers.snapshot, (states) =>
      Object.fromEntries(CONSUMERS.map((name) => [name, states.get(name) ?? "not started"])))

    yield* router.add("GET", "/health/live", Effect.succeed(report(true, {})))
    yield* router.add(
      "GET",
      "/health/startup",
      Effect.map(consumerChecks, (checks) =>
        report(Object.values(checks).every((state) => state !== "not started" && state !== "starting"), checks))
    )
    let latest: { readonly atMillis: number; readonly answers: ReadonlyArray<readonly [string, string]> } | undefined
    const askDependencies = Effect.gen(function*() {
      const dependencies = yield* readiness.all
      const answers = yield* Effect.forEach(
        dependencies,
        ({ check, name }) =>
          // within a probe's usual 1 s timeout: a dependency slower than this is not ready
          check.pipe(
            Effect.timeout("800 millis"),
            Effect.as("ok"),
            Effect.catchAll(() => Effect.succeed("unavailable")),
            Effect.map((answer) => [name, answer] as const)
          ),
        { concurrency: "unbounded" }
      )
      latest = { atMillis: Date.now(), answers }
      return answers
    })
    yield* askDependencies.pipe(Effect.repeat(Schedule.spaced(CHECK_INTERVAL)), Effect.forkScoped)

    yield* router.add(
      "GET",
      "/health/ready",
      Effect.gen(function*() {
        const checks: Record<string, string> = yield* consumerChecks
        const answers = latest !== undefined && Date.now() - latest.atMillis <= MAX_ANSWER_AGE_MILLIS
          ? latest.answers
          : yield* askDependencies
        for (const [name, answer] of answers) checks[name] = answer
        checks["shutdown"] = (yield* gate.isDraining) ? "draining" : "no"
        const healthy = CONSUMERS.every((name) => checks[name] === "running") &&
          answers.every(([, answer]) => answer === "ok") && checks["shutdown"] === "no"
        return report(healthy, checks)
      })
    )
  })
)
