// The TypeScript SDK: subscribe, wait until the subscription is live, send, print what arrives.
//   pnpm --filter @chatify/examples sdk
//   (CHATIFY_URL, default http://localhost:8080; CHATIFY_TOKEN when the server requires authentication)
import { ChatClient } from "@chatify/sdk/node"
import { NodeRuntime } from "@effect/platform-node"
import { Console, Deferred, Effect, Fiber, Stream } from "effect"

const server = process.env.CHATIFY_URL ?? "http://localhost:8080"
const general = { scopeType: 0, scopeId: "general" } as const

const program = Effect.gen(function*() {
  const chat = yield* ChatClient
  const live = yield* Deferred.make<void>()
  const sent = yield* Deferred.make<string>() // the id of our message, once sent

  // 1. Subscribe, printing every event until our own message comes back.
  const subscription = yield* chat.subscribe(general, { onLive: live }).pipe(
    Stream.tap(({ chatEvent }) =>
      Console.log(`received [${chatEvent.scopeId}] ${chatEvent.senderId}: ${chatEvent.text}`)
    ),
    Stream.takeUntilEffect(({ chatEvent }) => Effect.map(Deferred.await(sent), (mine) => mine === chatEvent.messageId)),
    Stream.runDrain,
    Effect.fork
  )

  // 2. Wait until the server has registered the subscription: every later message reaches it
  //    (or for the subscription's failure, e.g. a refused token).
  yield* Deferred.await(live).pipe(Effect.raceFirst(Fiber.join(subscription)))

  // 3. Send.
  const event = yield* chat.send({ ...general, text: "Hello from the SDK!" })
  yield* Console.log(`sent ${event.chatEvent.messageId} (partition ${event.partition}, offset ${event.offset})`)
  yield* Deferred.succeed(sent, event.chatEvent.messageId)

  // 4. Wait for it to arrive, then end (which closes the connection).
  yield* Fiber.join(subscription)
})

program.pipe(
  // a server that requires authentication and got no token, or one it refuses
  Effect.catchTag(
    "Unauthenticated",
    (error) => Effect.fail(`${server} refused the connection (${error.message}): is CHATIFY_TOKEN a valid token?`)
  ),
  // the SDK reconnects until it gets through, so a server that is down shows as no answer
  Effect.timeoutFail({
    duration: "10 seconds",
    onTimeout: () => `no answer from ${server} within 10 s: is the server running there?`
  }),
  Effect.provide(ChatClient.layer({
    url: `${server.replace(/^http/u, "ws")}/rpc`,
    accessToken: process.env.CHATIFY_TOKEN // undefined: no authentication
  })),
  NodeRuntime.runMain // if it fails: exit code 1, the cause logged (Effect's pretty logger, on stdout)
)
