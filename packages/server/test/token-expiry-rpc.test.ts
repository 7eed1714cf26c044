/**
 * What the README promises of an expiring token on /rpc: the connection's subscriptions end with a
 * typed Unauthenticated ("the access token expired"), later calls on the same connection fail the
 * same way (every method, on the Send fast path and on RpcServer's path), and the server closes the
 * socket a second later. (The end of the subscription and the close alone are in
 * auth-interfaces.test.ts; the later calls were untested.)
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Logger, LogLevel, Option, Stream } from "effect"
import { SignJWT } from "jose"
import { partitionForScope } from "@chatify/domain"
import { hs256TestAuth, startTestServer } from "../src/testing.js"
import { rpcClient } from "./support/rpcClient.js"

const SECRET = "a-token-expiry-test-secret-of-32b!"
const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Error)

const tokenExpiringAt = (sub: string, expSeconds: number) =>
  Effect.promise(() =>
    new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setExpirationTime(expSeconds)
      .sign(new TextEncoder().encode(SECRET))
  )

/** How a call ended: its error's tag and message, or "succeeded" (a call must not hang either). */
const outcome = <A, E extends { readonly _tag: string }, R>(call: Effect.Effect<A, E, R>) =>
  call.pipe(
    Effect.timeout("3 seconds"),
    Effect.either,
    Effect.map(Either.match({
      onLeft: (error) => `${error._tag}: ${"message" in error ? error.message : ""}`,
      onRight: () => "succeeded"
    }))
  )

describe("an expired token on /rpc", () => {
  it.scopedLive("ends the subscription, then every later call on the connection fails with the same Unauthenticated", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(hs256TestAuth(SECRET)) } })
      const scope = { scopeType: 0 as const, scopeId: `room-${crypto.randomUUID()}` }
      const expSeconds = Math.floor(Date.now() / 1000) + 3
      const client = yield* rpcClient(server.wsUrl, yield* tokenExpiringAt("alice", expSeconds))

      // while the token is valid, every method works on this connection
      const subscription = yield* client.Subscribe(scope).pipe(Stream.runDrain, Effect.either, Effect.fork)
      expect((yield* client.Send({ ...scope, text: "before" })).chatEvent.senderId).toBe("alice")
      expect((yield* client.History(scope)).items).toBeDefined()
      expect((yield* client.Presence(scope)).scopeId).toBe(scope.scopeId)
      expect(Date.now()).toBeLessThan(expSeconds * 1000)

      const ended = yield* Fiber.join(subscription).pipe(
        Effect.timeoutFail({
          duration: "10 seconds",
          onTimeout: () => new Error("the subscription outlived its token")
        }),
        Effect.orDie
      )
      const endedAt = Date.now()
      expect(endedAt).toBeGreaterThanOrEqual(expSeconds * 1000)
      const expired = Either.match(ended, {
        onLeft: (e) => `${e._tag}: ${"message" in e ? e.message : ""}`,
        onRight: () => "ended without error"
      })
      expect(expired).toBe("Unauthenticated: the access token expired")

      // the socket stays open for a second: every call made meanwhile is refused as the subscription was
      const later = yield* Effect.all({
        send: outcome(client.Send({ ...scope, text: "after" })),
        sendWithKey: outcome(client.Send({ ...scope, text: "after, keyed", clientMessageId: crypto.randomUUID() })),
        sendWithCorrelation: outcome(
          client.Send({ ...scope, text: "after, correlated" }, { headers: { "x-correlation-id": "c-late" } })
        ),
        history: outcome(client.History(scope)),
        presence: outcome(client.Presence(scope)),
        subscribe: outcome(Stream.runDrain(client.Subscribe(scope))),
        resume: outcome(
          Stream.runDrain(client.Subscribe({ ...scope, after: { partition: partitionForScope(scope, 3), offset: 0 } }))
        )
      }, { concurrency: "unbounded" })
      // all answered before the server closed the socket (a second after the expiry)
      expect(Date.now() - endedAt).toBeLessThan(1_000)
      expect(later).toEqual({
        send: expired,
        sendWithKey: expired,
        sendWithCorrelation: expired,
        history: expired,
        presence: expired,
        subscribe: expired,
        resume: expired
      })
    }).pipe(quiet))
})
