import { Context, Deferred, Duration, Effect, Exit, Fiber, Layer } from "effect"
import { DependencyUnavailable } from "@chatify/domain"
import { makeUuidV4Source } from "@chatify/adapters/memory"

/**
 * Where a shutdown is: "serving" until it starts; "leaving" while /health/ready says 503 and
 * everything is still served (the load balancer stops routing here); "draining" once new sends are
 * refused and the ones in flight finish.
 */
export type ShutdownPhase = "serving" | "leaving" | "draining"

/**
 * Waits inside a finalizer. A finalizer runs uninterruptibly on a fiber that may be interrupted
 * already: there a timeout or a race waits for its loser (a timeout would never cut anything
 * short), and an `Effect.interruptible` region would end at once. A fiber of its own has neither
 * problem; the finalizer joins it.
 */
const waitOnItsOwnFiber = <A>(wait: Effect.Effect<A>): Effect.Effect<A> =>
  Effect.flatMap(Effect.forkDaemon(Effect.interruptible(wait)), Fiber.join)

/**
 * Counts the sends in flight on this pod, for two jobs. It bounds them: past `maxSendsInFlight` a
 * send is refused at once (503, DependencyUnavailable of "chat-api"; the client retries), so an
 * overloaded pod keeps its latency, memory and probes in bounds instead of queueing seconds of work
 * (W3 at 5,000 sends/s offered, unbounded: acks after 0.7–2.4 s, 424 MiB per pod). And it lets a
 * shutdown stop the traffic first and finish what was accepted: `leave` turns /health/ready to 503
 * while everything is still served, for as long as the load balancer needs to stop routing here;
 * `drain` then refuses new sends (503) and waits for the sends in flight before anything is closed.
 */
export class ShutdownGate extends Context.Tag("chatify/ShutdownGate")<ShutdownGate, {
  readonly track: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | DependencyUnavailable, R>
  readonly phase: Effect.Effect<ShutdownPhase>
  /** New sends are refused (the "draining" phase). */
  readonly isDraining: Effect.Effect<boolean>
  /** Readiness 503 at once, then `delay` of serving as usual (cut short by `skipDelay`). */
  readonly leave: (delay: Duration.DurationInput) => Effect.Effect<void>
  /** Ends the delay of `leave` now, or skips it if it has not begun: no load balancer to wait for (Ctrl-C). */
  readonly skipDelay: Effect.Effect<void>
  /** Refuses new sends and waits (at most `within`) until no send is in flight. */
  readonly drain: (within: Duration.DurationInput) => Effect.Effect<void>
}>() {
  /** A gate admitting at most `maxSendsInFlight` sends at once (CHATIFY__LIMITS__MAXSENDSINFLIGHT). */
  static readonly layerWith = (maxSendsInFlight: number) =>
    Layer.effect(
      ShutdownGate,
      Effect.gen(function*() {
        let inFlight = 0
        let phase: ShutdownPhase = "serving"
        const skipped = yield* Deferred.make<void>()
        const idle = yield* Deferred.make<void>()
        const refused = new DependencyUnavailable({ dependency: "chat-api", message: "the server is shutting down" })
        const overloaded = new DependencyUnavailable({
          dependency: "chat-api",
          message: `this server has ${maxSendsInFlight} sends in progress (CHATIFY__LIMITS__MAXSENDSINFLIGHT); ` +
            "retry shortly"
        })
        return {
          track: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
            Effect.suspend((): Effect.Effect<A, E | DependencyUnavailable, R> => {
              if (phase === "draining") return Effect.fail(refused)
              if (inFlight >= maxSendsInFlight) return Effect.fail(overloaded)
              inFlight++
              return Effect.ensuring(
                effect,
                Effect.sync(() => {
                  inFlight--
                  if (inFlight === 0 && phase === "draining") Deferred.unsafeDone(idle, Exit.void)
                })
              )
            }),
          phase: Effect.sync(() => phase),
          isDraining: Effect.sync(() => phase === "draining"),
          leave: (delay) =>
            Effect.suspend(() => {
              if (phase !== "serving") return Effect.void
              phase = "leaving"
              return waitOnItsOwnFiber(Effect.raceFirst(Effect.sleep(delay), Deferred.await(skipped)))
            }),
          skipDelay: Effect.asVoid(Deferred.succeed(skipped, undefined)),
          drain: (within) =>
            Effect.suspend(() => {
              phase = "draining"
              if (inFlight === 0) Deferred.unsafeDone(idle, Exit.void)
              return waitOnItsOwnFiber(Effect.ignore(Effect.timeout(Deferred.await(idle), within)))
            })
        }
      })
    )

  /** A gate without a bound on sends in flight (tests). */
  static readonly layer = ShutdownGate.layerWith(Number.POSITIVE_INFINITY)
}

/**
 * `text` (ASCII) as one flat string. V8 keeps a string made by concatenation as a tree of its
 * pieces, and a slice as a view of its whole original: crypto.randomUUID() joins some twenty
 * pieces, which a heap snapshot shows as ~600 bytes for a UUID that takes 56 flat. The names a
 * connection keeps for its lifetime (Auth's anonymous ids) are flattened once.
 */
export const flatAscii = (text: string): string => Buffer.from(text, "latin1").toString("latin1")

/**
 * A random UUID as one flat string (see flatAscii for why), written flat from the start:
 * connection ids, and the correlation ids of requests, which every record a send produces keeps
 * for as long as the log holds it. (One source for the process: its only state is its pool of
 * random bytes.)
 */
export const newUuid: () => string = makeUuidV4Source()

/** Connection ids, unique across restarts and pods (anonymous users are named after them). */
export class Identities extends Context.Tag("chatify/Identities")<Identities, {
  readonly newConnectionId: () => string
  readonly connectionIdForClient: (clientId: number) => string
}>() {
  static readonly layer = Layer.sync(Identities, () => {
    const boot = crypto.randomUUID().slice(0, 8)
    return {
      newConnectionId: newUuid,
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

/**
 * What a failing check does to /health/ready: "unready" for what a send needs (the log), 503;
 * "degraded" for what a send can do without for a while (Redis: rate limits fail open; the history
 * store: the history writer retries), still 200 with the dependency and the reason in the body.
 * Redis or Cassandra trouble is shared by every pod: were it "unready", every pod would leave the
 * load balancer at once.
 */
export type ReadinessImpact = "unready" | "degraded"

/** A dependency /health/ready asks before it says the pod can take traffic. */
export interface ReadinessCheck {
  readonly name: string
  readonly impact: ReadinessImpact
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
