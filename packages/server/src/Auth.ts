import type { HttpServerRequest } from "@effect/platform"
import { Context, Effect, Layer } from "effect"
import type { Identity } from "@chatify/core"
import type { Unauthenticated } from "@chatify/domain"

/** An authenticated caller: who, on which connection, and until when the credentials hold. */
export interface Principal extends Identity {
  /** When the token expires (epoch ms); undefined for anonymous identities. */
  readonly expiresAtMs: number | undefined
}

/**
 * Turns a connection's credentials into a Principal. With authentication configured a valid bearer
 * token is required and the user is its subject; without it every connection is anonymous.
 */
export class Authenticator extends Context.Tag("chatify/Authenticator")<Authenticator, {
  readonly enabled: boolean
  /** `bearer` is the raw token from `Authorization: Bearer …` or the `access_token` query parameter. */
  readonly authenticate: (bearer: string | undefined, connectionId: string) => Effect.Effect<Principal, Unauthenticated>
}>() {}

/** The original design's behaviour without authentication: `anon_{connectionId}`. */
export const AnonymousAuthenticator = Layer.succeed(Authenticator, {
  enabled: false,
  authenticate: (_bearer, connectionId) =>
    Effect.succeed({ userId: `anon_${connectionId}`, connectionId, expiresAtMs: undefined })
})

/** The bearer token of a request: the Authorization header, else `access_token` (browsers' WebSockets). */
export const bearerOf = (request: HttpServerRequest.HttpServerRequest): string | undefined => {
  const header = request.headers["authorization"]
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/iu.exec(header)
    return match?.[1] ?? ""
  }
  const query = request.url.indexOf("?")
  if (query < 0) return undefined
  return new URLSearchParams(request.url.slice(query + 1)).get("access_token") ?? undefined
}
