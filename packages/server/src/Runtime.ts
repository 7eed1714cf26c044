import { Context, Duration, Effect, Layer, Schedule } from "effect"
import { DependencyUnavailable } from "@chatify/domain"

/**
 * Lets a shutdown finish what was accepted: once draining, new sends are refused (503, and
 * /health/ready says so), and shutdown waits for the sends in flight before closing anything.
 */
export class ShutdownGate extends Context.Tag("chatify/ShutdownGate")<ShutdownGate, {
  readonly track: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | DependencyUnavailable, R>
  readonly isDraining: Effect.Effect<boolean>
  readonly drain: (within: Duration.DurationInput) => Effect.Effect<void>
}>() {
  static readonly layer = Layer.sync(ShutdownGate, () => {
    let inFlight = 0
    let draining = false
    const refused = new DependencyUnavailable({ dependency: "chat-api", message: "the server is shutting down" })
    return {
      track: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.suspend((): Effect.Effect<A, E | DependencyUnavailable, R> => {
          if (draining) return Effect.fail(refused)
          inFlight++
          return Effect.ensuring(effect, Effect.sync(() => inFlight--))
        }),
      isDraining: Effect.sync(() => draining),
      drain: (within) =>
        Effect.sync(() => {
          draining = true
        }).pipe(
          Effect.zipRight(
            Effect.sync(() => inFlight === 0).pipe(
              Effect.repeat({ schedule: Schedule.spaced("10 millis"), until: (idle) => idle }),
              Effect.timeout(Duration.decode(within)),
              Effect.ignore
            )
          )
        )
    }
  })
}

/** Connection ids, unique across restarts and pods (anonymous users are named after them). */
export class Identities extends Context.Tag("chatify/Identities")<Identities, {
  readonly newConnectionId: Effect.Effect<string>
  readonly connectionIdForClient: (clientId: number) => string
}>() {
  static readonly layer = Layer.sync(Identities, () => {
    const boot = crypto.randomUUID().slice(0, 8)
    return {
      newConnectionId: Effect.sync(() => crypto.randomUUID()),
      connectionIdForClient: (clientId) => `${boot}-${clientId}`
    }
  })
}

/**
 * The HTTP server's connections, for shutdown: keep-alive connections would otherwise hold
 * `server.close()` open, and a request that reaches one after the handlers are gone gets no answer.
 */
export class HttpConnections extends Context.Tag("chatify/HttpConnections")<HttpConnections, {
  readonly closeIdle: Effect.Effect<void>
  /** Destroys every remaining connection after `delay`, without keeping the process alive. */
  readonly closeAllAfter: (delay: Duration.DurationInput) => Effect.Effect<void>
}>() {}

/** A dependency /health/ready asks before it says the pod can take traffic. */
export interface ReadinessCheck {
  readonly name: string
  readonly check: Effect.Effect<void, DependencyUnavailable>
}

/** Each infrastructure layer registers the checks of what it connects to. */
export class ReadinessChecks extends Context.Tag("chatify/ReadinessChecks")<ReadinessChecks, {
  readonly register: (check: ReadinessCheck) => Effect.Effect<void>
  readonly all: Effect.Effect<ReadonlyArray<ReadinessCheck>>
}>() {
  static readonly layer = Layer.sync(ReadinessChecks, () => {
    const checks: Array<ReadinessCheck> = []
    return {
      register: (check) => Effect.sync(() => void checks.push(check)),
      all: Effect.sync(() => [...checks])
    }
  })
}
