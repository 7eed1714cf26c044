/**
 * How the client reads the server's frames without acknowledging each stream chunk (the server's
 * `/rpc?acks=none`): frames are handled one after another in the order they arrived, and each
 * stream holds a bounded number of items for its consumer.
 */
import type * as Socket from "@effect/platform/Socket"
import { Deferred, Effect, Exit, identity, Mailbox, Option, Queue, Schedule, Scope, Stream } from "effect"
import { SubscriptionLagged } from "@chatify/domain"

/**
 * The socket with its frames' effects run one after another, in arrival order. `Socket.runRaw`
 * forks a fiber per frame: once nothing waits for an Ack between two chunks of a stream, a fiber
 * that waits or yields could let a later chunk overtake it.
 */
export const inArrivalOrder = (socket: Socket.Socket): Socket.Socket => ({
  ...socket,
  runRaw: <_, E = never, R = never>(
    handler: (data: string | Uint8Array) => Effect.Effect<_, E, R> | void,
    options?: { readonly onOpen?: Effect.Effect<void> | undefined }
  ) =>
    Effect.gen(function*() {
      const frames = yield* Queue.unbounded<Effect.Effect<_, E, R>>()
      const handleInOrder = Queue.take(frames).pipe(Effect.flatMap(identity), Effect.forever)
      return yield* Effect.raceFirst(
        socket.runRaw((data) => {
          const handled = handler(data)
          if (Effect.isEffect(handled)) frames.unsafeOffer(handled)
        }, options),
        handleInOrder
      ).pipe(Effect.ensuring(Queue.shutdown(frames)))
    })
})

/** How often the client checks how many items wait for each stream's consumer. */
const LAG_CHECK_INTERVAL = "100 millis"

/** What a streaming RpcClient call is given to hand over its unbounded mailbox. */
export const UNBOUNDED_MAILBOX = { asMailbox: true, streamBufferSize: Number.POSITIVE_INFINITY } as const

/**
 * Bounds the streaming calls of one client to `bound` items each. `bounded(name, call)` runs
 * `call(UNBOUNDED_MAILBOX)` (a full mailbox would hold up every frame behind it on the socket) and
 * gives its items, with at most `bound` of them held for a consumer that has not taken them yet.
 * Past that, the call is let go (its request interrupted, its items dropped) and the stream fails
 * with SubscriptionLagged named `name` when the consumer next pulls: memory stays bounded however
 * far behind the consumer falls, and a subscription resumes from the history after the last item
 * taken. One fiber of the client checks every stream, rather than a timer per stream.
 */
export const makeBoundedStreams = (bound: number) =>
  Effect.gen(function*() {
    /** Each stream's check; true once it let its call go. */
    const watched = new Set<Effect.Effect<boolean>>()
    yield* Effect.suspend(() =>
      Effect.forEach(
        Array.from(watched),
        (check) =>
          Effect.map(check, (letGo) => {
            if (letGo) watched.delete(check)
          }),
        { discard: true }
      )
    ).pipe(Effect.repeat(Schedule.spaced(LAG_CHECK_INTERVAL)), Effect.forkScoped)

    return <A, E>(
      name: string,
      call: (options: typeof UNBOUNDED_MAILBOX) => Effect.Effect<Mailbox.ReadonlyMailbox<A, E>, never, Scope.Scope>
    ): Stream.Stream<A, E | SubscriptionLagged> =>
      Stream.unwrapScoped(Effect.gen(function*() {
        // the call's own scope, so that it can be let go while the stream waits for its consumer
        const callScope = yield* Scope.make()
        yield* Effect.addFinalizer((exit) => Scope.close(callScope, exit))
        const mailbox = yield* Scope.extend(call(UNBOUNDED_MAILBOX), callScope)
        const lag = yield* Deferred.make<never, SubscriptionLagged>()
        const check = Effect.suspend(() =>
          Option.getOrElse(mailbox.unsafeSize(), () => 0) <= bound
            ? Effect.succeed(false)
            : Scope.close(callScope, Exit.void).pipe(
              Effect.zipRight(Effect.ignore(mailbox.clear)),
              Effect.zipRight(Deferred.fail(lag, new SubscriptionLagged({ scopeId: name, bufferSize: bound }))),
              Effect.as(true)
            )
        )
        watched.add(check)
        yield* Effect.addFinalizer(() => Effect.sync(() => watched.delete(check)))
        return Mailbox.toStream(mailbox).pipe(Stream.interruptWhen(Deferred.await(lag)))
      }))
  })
