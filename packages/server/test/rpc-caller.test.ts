/**
 * The caller of a general-path RPC: the correlation id is taken only when it is valid (as on REST
 * and SignalR), and an anonymous caller's rate limit counts its client address. ChatRpcs' middleware
 * gives it to every handler, and the hub's invocation services to every hub method.
 */
import * as RpcTest from "@effect/rpc/RpcTest"
import { describe, expect, it, layer } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Logger, LogLevel, Stream } from "effect"
import { SignJWT } from "jose"
import { CorrelationId, CurrentUser } from "@chatify/core"
import { ChatRpcs, ScopePresence, Unexpected } from "@chatify/domain"
import { ANONYMOUS_USER_ID, AnonymousAuthenticator, Authenticator, makeJwtAuthenticator } from "../src/Auth.js"
import { LogFields } from "../src/Logging.js"
import { CLIENT_ADDRESS_HEADER, makeRpcCaller, RpcAuthenticationLive, RpcCallLive } from "../src/Rpc.js"
import { Identities } from "../src/Runtime.js"
import { type ChatHubServices, ChatHubSession, HubSession, makeInvocationServices } from "../src/signalr/ChatHub.js"
import { hs256TestAuth } from "../src/testing.js"
import { discardingHubClient } from "./support/hubClient.js"

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/u

const callAs = (headers: Record<string, string>) =>
  Effect.gen(function*() {
    const asCaller = makeRpcCaller(yield* Authenticator, yield* Identities)
    return yield* Effect.all({ correlationId: CorrelationId, caller: CurrentUser }).pipe(asCaller(7, headers))
  }).pipe(Effect.provide(AnonymousAuthenticator), Effect.provide(Identities.layer))

describe("RPC caller", () => {
  it.effect("keeps a valid correlation id and replaces one that is not", () =>
    Effect.gen(function*() {
      expect((yield* callAs({ "x-correlation-id": "req-42.a_b" })).correlationId).toBe("req-42.a_b")
      for (const bad of ["two words", "x".repeat(500), "line\nbreak", ""]) {
        const { correlationId } = yield* callAs({ "x-correlation-id": bad })
        expect(correlationId, JSON.stringify(bad)).toMatch(uuid)
      }
    }))

  it.effect("an anonymous caller is rate-limited by the client address the socket protocol gives", () =>
    Effect.gen(function*() {
      const { caller } = yield* callAs({ [CLIENT_ADDRESS_HEADER]: "203.0.113.5" })
      expect(caller.rateLimitKey).toBe("address:203.0.113.5")
      expect(caller.userId).toMatch(/^anon_/u)
    }))
})

/**
 * ChatRpcs' middleware as RpcServer runs it, around handlers that show what they were given: the
 * caller (RpcAuthentication) and the correlation id and hidden defects (RpcCall).
 */
const SECRET = "an-rpc-middleware-test-secret-32b!"
const ProbeHandlers = ChatRpcs.toLayer({
  // the caller and the correlation id the handler runs with, as a ScopePresence
  Presence: ({ scopeId, scopeType }) =>
    Effect.map(Effect.all([CurrentUser, CorrelationId]), ([caller, correlationId]) =>
      new ScopePresence({
        scopeType,
        scopeId: `${scopeId}:${correlationId ?? "none"}`,
        users: [{ userId: caller.userId, connections: 1 }]
      })),
  Send: () => Effect.dieMessage("a bug with internals in its message"),
  Subscribe: () => Effect.dieMessage("not called"),
  History: () => Effect.dieMessage("not called"),
  Stats: () => Effect.dieMessage("not called"),
  RateLimitViolations: () => Stream.dieMessage("not called")
})

const withMiddleware = <E>(authenticator: Layer.Layer<Authenticator, E>) =>
  Layer.mergeAll(ProbeHandlers, RpcAuthenticationLive, RpcCallLive).pipe(
    Layer.provide(Layer.merge(authenticator, Identities.layer))
  )

const token = (sub: string) =>
  Effect.promise(() =>
    new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setExpirationTime("5 minutes")
      .sign(new TextEncoder().encode(SECRET))
  )

const room = { scopeType: 0 as const, scopeId: "room" }

describe("ChatRpcs' middleware", () => {
  layer(withMiddleware(AnonymousAuthenticator))("anonymous", (it) => {
    it.scoped("gives every handler its caller and its call's correlation id", () =>
      Effect.gen(function*() {
        const client = yield* RpcTest.makeClient(ChatRpcs)
        const correlated = yield* client.Presence(room, { headers: { "x-correlation-id": "rpc-mw-1" } })
        expect(correlated.scopeId).toBe("room:rpc-mw-1")
        expect(correlated.users[0]?.userId).toMatch(ANONYMOUS_USER_ID)
        const fresh = yield* client.Presence(room, { headers: { "x-correlation-id": "not valid" } })
        expect(fresh.scopeId.slice("room:".length)).toMatch(uuid)
      }))

    it.scoped("answers a defect as Unexpected, without its message", () =>
      Effect.gen(function*() {
        const client = yield* RpcTest.makeClient(ChatRpcs)
        const exit = yield* Effect.exit(client.Send({ ...room, text: "hi" }))
        expect(exit).toStrictEqual(Exit.fail(new Unexpected({ message: "unexpected" })))
      }).pipe(Logger.withMinimumLogLevel(LogLevel.None)))
  })

  layer(withMiddleware(Layer.effect(Authenticator, makeJwtAuthenticator(hs256TestAuth(SECRET)))))("with JWTs", (it) => {
    it.scoped("the caller is the token's subject; without a valid token the call is Unauthenticated", () =>
      Effect.gen(function*() {
        const client = yield* RpcTest.makeClient(ChatRpcs)
        const alice = yield* client.Presence(room, { headers: { authorization: `Bearer ${yield* token("alice")}` } })
        expect(alice.users[0]?.userId).toBe("alice")
        for (const headers of [{}, { authorization: "Bearer not-a-token" }]) {
          const refused = yield* Effect.flip(client.Presence(room, { headers }))
          expect(refused._tag, JSON.stringify(headers)).toBe("Unauthenticated")
        }
      }))
  })
})

describe("the hub's invocation services", () => {
  const principal = { userId: "alice", connectionId: "c-1", expiresAtMs: undefined }
  const session = new HubSession(discardingHubClient("c-1"))
  const servicesFor = makeInvocationServices(Context.empty() as Context.Context<ChatHubServices>, principal, session)
  const invocation = (headers: Record<string, string>) => ({
    connectionId: "c-1",
    target: "SendAsync",
    invocationId: "7",
    headers
  })

  it("are the connection's caller and each invocation's correlation id", () => {
    const first = servicesFor(invocation({ "x-correlation-id": "hub-1" }))
    expect(Context.get(first, CurrentUser)).toBe(principal)
    expect(Context.get(first, ChatHubSession)).toBe(session)
    expect(Context.get(first, CorrelationId)).toBe("hub-1")
    expect(Context.get(first, LogFields)).toStrictEqual({ target: "SendAsync", invocationId: "7" })
    const second = servicesFor(invocation({ "x-correlation-id": "two words" }))
    expect(Context.get(second, CorrelationId)).toMatch(uuid)
    expect(Context.get(servicesFor(invocation({})), CorrelationId)).not.toBe(Context.get(second, CorrelationId))
  })
})
