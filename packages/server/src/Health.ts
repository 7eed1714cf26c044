import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Duration, Effect, Layer, Schedule } from "effect"
import { ConsumerHealth, type ConsumerState } from "@chatify/core"
import { ReadinessChecks, type ReadinessImpact, ShutdownGate } from "./Runtime.js"

/** The consumers every pod runs: startup waits for them. */
const CONSUMERS = ["broadcast", "history-writer"] as const
type Consumer = typeof CONSUMERS[number]

/**
 * What a consumer that stopped running does to readiness once the pod has started. The broadcast
 * consumer brings this pod's subscribers their events: without it the pod is not ready. The history
 * writer stores what the log holds and catches up when it runs again: sends go on meanwhile.
 * Any other consumer (the analytics job's stats writer and violation relay, in Kafka mode) is
 * shown and judged like the history writer, but startup does not wait for it: a send needs
 * neither the job nor its topics.
 */
const CONSUMER_IMPACT: Record<Consumer, ReadinessImpact> = { broadcast: "unready", "history-writer": "degraded" }
const impactOf = (name: string): ReadinessImpact =>
  name === "broadcast" || name === "history-writer" ? CONSUMER_IMPACT[name] : "degraded"

/** ASP.NET Core's HealthStatus, as the original design reported it: Degraded still answers 200. */
type HealthStatus = "Healthy" | "Degraded" | "Unhealthy"

const report = (status: HealthStatus, body: Record<string, unknown>) =>
  HttpServerResponse.unsafeJson({ status, ...body }, { status: status === "Unhealthy" ? 503 : 200 })

/** How often the dependencies are asked in the background. */
const CHECK_INTERVAL = Duration.seconds(1)
/** Within a probe's usual 1 s timeout: a dependency slower than this counts as unavailable. */
const CHECK_TIMEOUT = Duration.millis(800)

interface Answer {
  readonly name: string
  readonly impact: ReadinessImpact
  /** Why the dependency is unavailable; undefined when it answered. */
  readonly failure: string | undefined
}

const hasStarted = (state: ConsumerState | "not started") => state !== "not started" && state !== "starting"

/**
 * /health/live, /health/startup and /health/ready, as the Kubernetes probes of the original design.
 * The dependencies are asked in the background once a second; /health/ready answers from the latest
 * answers, so a probe waits for no round trip to a busy dependency, even when the pod is too busy
 * to ask on time.
 *
 * /health/ready is 503 ("Unhealthy") only for what a send needs: before the consumers have
 * started, while the log or the broadcast consumer is unavailable, and from the start of a
 * shutdown. Redis, the history store, the history writer and the analytics consumers failing make
 * it "Degraded" (still 200), with `degraded` naming each one and why.
 */
export const HealthRoutes = Layer.scopedDiscard(
  Effect.gen(function*() {
    const router = yield* HttpLayerRouter.HttpRouter
    const consumers = yield* ConsumerHealth
    const readiness = yield* ReadinessChecks
    const gate = yield* ShutdownGate

    // the pod's consumers first, then the optional ones that were started, by name
    const consumerStates = Effect.map(
      consumers.snapshot,
      (states): Record<Consumer, ConsumerState | "not started"> & Record<string, ConsumerState | "not started"> => ({
        broadcast: states.get("broadcast") ?? "not started",
        "history-writer": states.get("history-writer") ?? "not started",
        ...Object.fromEntries(Array.from(states).sort(([a], [b]) => a.localeCompare(b)))
      })
    )
    // startup is once: a consumer restarting later is judged by its impact, not as "not started yet"
    let started = false
    const startupDone = Effect.map(consumerStates, (states) => {
      started = started || CONSUMERS.every((name) => hasStarted(states[name]))
      return { states, started }
    })

    yield* router.add("GET", "/health/live", Effect.succeed(report("Healthy", { checks: {} })))
    yield* router.add(
      "GET",
      "/health/startup",
      Effect.map(startupDone, ({ started, states }) => report(started ? "Healthy" : "Unhealthy", { checks: states }))
    )

    let latest: ReadonlyArray<Answer> | undefined
    const askDependencies = Effect.gen(function*() {
      const dependencies = yield* readiness.all
      const answers = yield* Effect.forEach(
        dependencies,
        ({ check, impact, name }) =>
          check.pipe(
            Effect.timeoutFail({
              duration: CHECK_TIMEOUT,
              onTimeout: () => ({ message: `no answer within ${Duration.format(CHECK_TIMEOUT)}` })
            }),
            Effect.as<string | undefined>(undefined),
            Effect.catchAll((error) => Effect.succeed(error.message)),
            Effect.catchAllDefect(() => Effect.succeed("the check failed unexpectedly")),
            Effect.map((failure): Answer => ({ name, impact, failure }))
          ),
        { concurrency: "unbounded" }
      )
      latest = answers
      return answers
    })
    yield* askDependencies.pipe(Effect.repeat(Schedule.spaced(CHECK_INTERVAL)), Effect.forkScoped)

    yield* router.add(
      "GET",
      "/health/ready",
      Effect.gen(function*() {
        const { started, states } = yield* startupDone
        // The latest answers, however old: they are late only when the pod is too busy to ask on
        // time, and asking here then made the probe wait up to CHECK_TIMEOUT on top (W3 at 5,000
        // sends/s: 1.15 s, past a probe's 1 s). Only a probe before the first answer asks itself.
        const answers = latest ?? (yield* askDependencies)
        const phase = yield* gate.phase

        const checks: Record<string, string> = { ...states }
        const unavailable: Record<string, string> = {}
        const degraded: Record<string, string> = {}
        const failed = (impact: ReadinessImpact, name: string, why: string) => {
          if (impact === "unready") unavailable[name] = why
          else degraded[name] = why
        }
        for (const [name, state] of Object.entries(states)) {
          const required = (CONSUMERS as ReadonlyArray<string>).includes(name)
          if (!started) {
            if (required && !hasStarted(state)) unavailable[name] = `the ${name} consumer is ${state}`
          } else if (state !== "running") {
            failed(impactOf(name), name, `the ${name} consumer is ${state}`)
          }
        }
        for (const { failure, impact, name } of answers) {
          checks[name] = failure === undefined ? "ok" : "unavailable"
          if (failure !== undefined) failed(impact, name, failure)
        }
        checks["shutdown"] = phase === "serving" ? "no" : "draining"
        if (phase === "leaving") unavailable["shutdown"] = "shutting down: stop routing here, the drain starts shortly"
        if (phase === "draining") {
          unavailable["shutdown"] = "shutting down: new sends are refused, the ones in flight finish"
        }

        const status: HealthStatus = Object.keys(unavailable).length > 0
          ? "Unhealthy"
          : Object.keys(degraded).length > 0
          ? "Degraded"
          : "Healthy"
        return report(status, {
          checks,
          ...(Object.keys(unavailable).length > 0 ? { unavailable } : {}),
          ...(Object.keys(degraded).length > 0 ? { degraded } : {})
        })
      })
    )
  })
)
