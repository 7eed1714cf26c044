/**
 * Releases added to the scope as they are. `Effect.addFinalizer` and `Effect.acquireRelease` run a
 * release with the FiberRefs of the fiber that acquired: around each one they diff and patch every
 * FiberRef, the whole context (every service of the server) included, which costs ~65 µs per
 * release with 20 services against ~10 µs as it is. Per connection and per subscription, that made
 * closing a connection cost more than opening it. For releases that need nothing of the acquiring
 * fiber (the type allows them no requirement: they close over the services they use).
 */
import { Effect, Scope } from "effect"

/** `Effect.addFinalizer` for a release that needs nothing of the fiber that added it. */
export const addPlainFinalizer = (release: Effect.Effect<unknown>): Effect.Effect<void, never, Scope.Scope> =>
  Effect.flatMap(Effect.scope, (scope) => Scope.addFinalizer(scope, release))

/** `Effect.acquireRelease` for a release that needs nothing of the fiber that acquired. */
export const acquirePlainRelease = <A, E, R>(
  acquire: Effect.Effect<A, E, R>,
  release: (acquired: A) => Effect.Effect<unknown>
): Effect.Effect<A, E, R | Scope.Scope> =>
  Effect.uninterruptible(Effect.tap(acquire, (acquired) => addPlainFinalizer(release(acquired))))
