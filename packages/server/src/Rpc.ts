import { Cause, Effect, Layer, Stream } from "effect"
import {
  CorrelationId,
  CurrentUser,
  readHistory,
  readPresence,
  readStats,
  sendMessage,
  subscribe,
  watchRateLimitViolations
} from "@chatify/core"
import { ChatRpcs, RpcAuthentication, RpcCall, type Unauthenticated, Unexpected } from "@chatify/domain"
import { Authenticator, bearerOfHeader, type Principal } from "./Auth.js"
import { Identities, ShutdownGate } from "./Runtime.js"
import { correlationIdOf } from "./Http.js"

/**
 * The client's address on every call of a WebSocket connection, for anonymous rate limits: set by
 * the socket protocol last, after removing any a client sent itself.
 */
export const CLIENT_ADDRESS_HEADER = "x-chatify-client-address"

type CallHeaders = Readonly<Record<string, string | undefined>>

/** Defects never reach a client: they are logged and become a typed Unexpected. */
export const hideDefects = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchAllDefect(
    effect,
    (defect) =>
      Effect.zipRight(
        Effect.logError("Unexpected failure in an RPC", Cause.die(defect)),
        Effect.fail(new Unexpected({ message: "unexpected" }))
      )
  )

/**
 * The caller of an RPC: the connection's identity from the Authorization header (the WebSocket
 * upgrade's headers come first in every call's headers; the access_token query parameter arrives
 * as its Authorization header, see RpcSocketProtocol); an anonymous caller is counted by the
 * client address the socket protocol gives.
 */
const makeCallAuthenticator =
  (authenticator: Authenticator["Type"], identities: Identities["Type"]) =>
  (clientId: number, headers: CallHeaders): Effect.Effect<Principal, Unauthenticated> => {
    const header = headers["authorization"]
    return authenticator.authenticate(
      header === undefined ? undefined : bearerOfHeader(header),
      identities.connectionIdForClient(clientId),
      headers[CLIENT_ADDRESS_HEADER]
    )
  }

/**
 * RpcAuthentication and RpcCall as one wrapper, for what RpcSocketProtocol runs outside RpcServer
 * (a subscription of a caller it does not know yet): the call's caller and correlation id.
 */
export const makeRpcCaller = (authenticator: Authenticator["Type"], identities: Identities["Type"]) => {
  const authenticate = makeCallAuthenticator(authenticator, identities)
  return (clientId: number, headers: CallHeaders) =>
  <A, E, R>(
    effect: Effect.Effect<A, E, R | CurrentUser>
  ): Effect.Effect<A, E | Unauthenticated, Exclude<R, CurrentUser>> =>
    // the logger reads the caller and the correlation id from the context (see Logging.ts)
    authenticate(clientId, headers).pipe(
      Effect.flatMap((principal) => Effect.provideService(effect, CurrentUser, principal)),
      Effect.provideService(CorrelationId, correlationIdOf(headers))
    )
}

/** Every RPC's caller, from its headers (see ChatRpcs). */
export const RpcAuthenticationLive = Layer.effect(
  RpcAuthentication,
  Effect.gen(function*() {
    const authenticate = makeCallAuthenticator(yield* Authenticator, yield* Identities)
    return RpcAuthentication.of(({ clientId, headers }) => authenticate(clientId, headers))
  })
)

/** Every RPC's correlation id, and its defects hidden (see ChatRpcs). */
export const RpcCallLive = Layer.succeed(
  RpcCall,
  RpcCall.of(({ headers, next }) => Effect.provideService(hideDefects(next), CorrelationId, correlationIdOf(headers)))
)

/**
 * /rpc handlers: the same use cases as REST, each only its use case: the caller, the correlation id
 * and hiding defects are ChatRpcs' middleware, provided here too. Over the WebSocket, `Subscribe`
 * and most sends are served by RpcSocketProtocol's fast path; these handlers serve the rest.
 */
export const ChatRpcHandlers = ChatRpcs.toLayer(
  Effect.gen(function*() {
    const gate = yield* ShutdownGate
    return {
      Send: (payload) => gate.track(sendMessage(payload)),
      Subscribe: ({ after, scopeId, scopeType }) => subscribe({ scopeType, scopeId }, after),
      History: ({ before, limit, scopeId, scopeType }) => readHistory({ scopeType, scopeId }, { limit, before }),
      Presence: ({ scopeId, scopeType }) => readPresence({ scopeType, scopeId }),
      Stats: (query) => readStats(query),
      RateLimitViolations: () => Stream.unwrap(watchRateLimitViolations)
    }
  })
).pipe(Layer.merge(Layer.merge(RpcAuthenticationLive, RpcCallLive)))
