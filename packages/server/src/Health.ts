import { HttpLayerRouter, HttpServerResponse } from "@effect/platform"
import { Effect, Layer } from "effect"
import { ConsumerHealth } from "@chatify/core"
import { ReadinessChecks, ShutdownGate } from "./Runtime.js"

const CONSUMERS = ["broadcast", "history-writer"] as const

const report = (healthy: boolean, checks: Record<string, string>) =>
  HttpServerResponse.unsafeJson({ status: healthy ? "Healthy" : "Unhealthy", checks }, { status: healthy ? 200 : 503 })

/** /health/live, /health/startup and /health/ready, as the Kubernetes probes of the original design. */
export const HealthRoutes = Layer.effectDiscard(
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
    yield* router.add(
      "GET",
      "/health/ready",
      Effect.gen(function*() {
        const checks: Record<string, string> = yield* consumerChecks
        const dependencies = yield* readiness.all
        const answers = yield* Effect.forEach(
          dependencies,
          ({ check }) =>
            check.pipe(Effect.timeout("2 seconds"), Effect.as("ok"), Effect.catchAll(() => Effect.succeed("unavailable"))),
          { concurrency: "unbounded" }
        )
        dependencies.forEach(({ name }, i) => (checks[name] = answers[i] ?? "unavailable"))
        checks["shutdown"] = (yield* gate.isDraining) ? "draining" : "no"
        const healthy = CONSUMERS.every((name) => checks[name] === "running") &&
          dependencies.every(({ name }) => checks[name] === "ok") && checks["shutdown"] === "no"
        return report(healthy, checks)
      })
    )
  })
)
