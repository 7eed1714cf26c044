import { type Context, Effect, type Exit, type Fiber, FiberSet, Runtime, type Scope } from "effect"

/**
 * Starts the fibers of a layer's requests: each gets the services it is given as its whole context,
 * keeps the layer's logger, tracer and other fiber refs, and is interrupted when the layer closes.
 *
 * A request's caller is what differs between its fibers. Starting the fiber with its context costs
 * nothing more than starting it; `Effect.provide` inside it would copy the fiber's context map
 * (every service of the server) once more per request, which on a send was a tenth of its cost.
 */
export interface FiberStarter<R = never> {
  /** Runs an effect on the layer's own services. */
  readonly run: <A, E>(effect: Effect.Effect<A, E, R>) => Fiber.RuntimeFiber<A, E>
  /** Runs an effect with `services` as its context. */
  readonly start: <A, E, S>(effect: Effect.Effect<A, E, S>, services: Context.Context<S>) => Fiber.RuntimeFiber<A, E>
}

export const makeFiberStarter = <R = never>(): Effect.Effect<FiberStarter<R>, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    const fibers = yield* FiberSet.make()
    const layerRuntime = yield* Effect.runtime<R>()
    const { fiberRefs, runtimeFlags } = layerRuntime
    // runs before the set interrupts its fibers (finalizers run last-added first): nothing starts after
    let open = true
    yield* Effect.addFinalizer(() => Effect.sync(() => (open = false)))
    const runWith = <A, E, S>(runtime: Runtime.Runtime<S>, effect: Effect.Effect<A, E, S>) => {
      const fiber = Runtime.runFork(runtime, open ? effect : Effect.interrupt)
      FiberSet.unsafeAdd(fibers, fiber)
      return fiber
    }
    const starter: FiberStarter<R> = {
      run: (effect) => runWith(layerRuntime, effect),
      start: (effect, services) => runWith(Runtime.make({ context: services, fiberRefs, runtimeFlags }), effect)
    }
    return starter
  })

/**
 * Calls `f` with a fiber's exit, at once when it is already done: a fiber that fails as it starts
 * (a request refused by its checks) has ended before `start` returns.
 */
export const onExit = <A, E>(fiber: Fiber.RuntimeFiber<A, E>, f: (exit: Exit.Exit<A, E>) => void) => {
  const done = fiber.unsafePoll()
  if (done !== null) f(done)
  else fiber.addObserver(f)
}
