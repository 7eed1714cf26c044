/**
 * The caller of a general-path RPC: the correlation id is taken only when it is valid (as on REST
 * and SignalR), and an anonymous caller's rate limit counts its client address.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { CorrelationId, CurrentUser } from "@chatify/core"
import { Authenticator, AnonymousAuthenticator } from "../src/Auth.js"
import { CLIENT_ADDRESS_HEADER, makeRpcCaller } from "../src/Rpc.js"
import { Identities } from "../src/Runtime.js"

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
