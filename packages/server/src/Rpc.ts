import { Cause, Effect, Stream } from "effect"
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
import { ChatRpcs, Unauthenticated, Unexpected } from "@chatify/domain"
import { Authenticator, bearerOfHeader } from "./Auth.js"
import { Identities, ShutdownGate } from "./Runtime.js"
import { acceptedCorrelationId, CORRELATION_HEADER } from "./Http.js"

/**
 * The client's address on every call of a WebSocket connection, for anonymous rate limits: set by
 * the socket protocol last, after removing any a client sent itself.
 */
export const CLIENT_ADDRESS_HEADER = "x-chatify-client-address"

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
 * Runs an RPC as its caller: the connection's identity from the Authorization header (the
 * WebSocket upgrade's headers come first in every call's headers; the access_token query
 * parameter arrives as its Authorization header, see RpcSocketProtocol), and the
 * call's correlation id.
 */
export const makeRpcCaller =
  (authenticator: Authenticator["Type"], identities: Identities["Type"]) =>
  (clientId: number, headers: Readonly<Record<string, string | undefined>>) => {
    const correlationId = acceptedCorrelationId(headers[CORRELATION_HEADER]) ?? crypto.randomUUID()
    const connectionId = identities.connectionIdForClient(clientId)
    const header = headers["authorization"]
    const bearer = header === undefined ? undefined : bearerOfHeader(header)
    return <A, E, R>(
      effect: Effect.Effect<A, E, R | CurrentUser>
    ): Effect.Effect<A, E | Unauthenticated, Exclude<R, CurrentUser>> =>
      // the logger reads the caller and the correlation id from the context (see Logging.ts)
      authenticator.authenticate(bearer, connectionId, headers[CLIENT_ADDRESS_HEADER]).pipe(
        Effect.flatMap((principal) => Effect.provideService(effect, CurrentUser, principal)),
        Effect.provideService(CorrelationId, correlationId)
      )
  }

/**
 * /rpc handlers: the same use cases as REST, on one connection identity per WebSocket. Over the
 * WebSocket, `Subscribe` is served by RpcSocketProtocol's fast path; this handler serves it for
 * any other protocol.
 */
export const ChatRpcHandlers = ChatRpcs.toLayer(
  Effect.gen(function*() {
    const asCaller = makeRpcCaller(yield* Authenticator, yield* Identities)
    const gate = yield* ShutdownGate
    return {
      Send: (payload, { clientId, headers }) =>
        gate.track(sendMessage(payload)).pipe(hideDefects, asCaller(clientId, headers)),
      Subscribe: ({ after, scopeId, scopeType }, { clientId, headers }) =>
        subscribe({ scopeType, scopeId }, after).pipe(hideDefects, asCaller(clientId, headers)),
      History: ({ before, limit, scopeId, scopeType }, { clientId, headers }) =>
        readHistory({ scopeType, scopeId }, { limit, before }).pipe(hideDefects, asCaller(clientId, headers)),
      Presence: ({ scopeId, scopeType }, { clientId, headers }) =>
        readPresence({ scopeType, scopeId }).pipe(hideDefects, asCaller(clientId, headers)),
      Stats: (query, { clientId, headers }) => readStats(query).pipe(hideDefects, asCaller(clientId, headers)),
      RateLimitViolations: (_, { clientId, headers }) =>
        Stream.unwrap(watchRateLimitViolations.pipe(hideDefects, asCaller(clientId, headers)))
    }
  })
)
