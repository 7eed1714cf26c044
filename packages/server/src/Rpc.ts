import { Cause, Effect } from "effect"
import { CorrelationId, CurrentUser, readHistory, readPresence, sendMessage, subscribe } from "@chatify/core"
import { ChatRpcs, Unexpected } from "@chatify/domain"
import { Authenticator, bearerOfHeader } from "./Auth.js"
import { Identities, ShutdownGate } from "./Runtime.js"

const CORRELATION_HEADER = "x-correlation-id"

/** Defects never reach a client: they are logged and become a typed Unexpected. */
const hideDefects = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchAllDefect(effect, (defect) =>
    Effect.zipRight(Effect.logError("Unexpected failure in an RPC", Cause.die(defect)), Effect.fail(new Unexpected({ message: "unexpected" }))))

/** /rpc handlers: the same use cases as REST, on one connection identity per WebSocket. */
export const ChatRpcHandlers = ChatRpcs.toLayer(
  Effect.gen(function*() {
    const identities = yield* Identities
    const authenticator = yield* Authenticator
    const gate = yield* ShutdownGate
    // The WebSocket upgrade's headers come first in every call's headers; the access_token query
    // parameter arrives as its Authorization header (see ProblemAndCorrelationMiddleware).
    const context = (clientId: number, headers: Record<string, string | undefined>) => {
      const correlationId = headers[CORRELATION_HEADER] ?? crypto.randomUUID()
      const connectionId = identities.connectionIdForClient(clientId)
      const header = headers["authorization"]
      const bearer = header === undefined ? undefined : bearerOfHeader(header)
      return <A, E, R>(effect: Effect.Effect<A, E, R | CurrentUser>) =>
        authenticator.authenticate(bearer, connectionId).pipe(
          Effect.flatMap((principal) => Effect.provideService(effect, CurrentUser, principal)),
          Effect.provideService(CorrelationId, correlationId),
          Effect.annotateLogs({ correlationId, connectionId })
        )
    }
    return {
      Send: (payload, { clientId, headers }) =>
        gate.track(sendMessage(payload)).pipe(hideDefects, context(clientId, headers)),
      Subscribe: ({ after, scopeId, scopeType }, { clientId, headers }) =>
        subscribe({ scopeType, scopeId }, after).pipe(hideDefects, context(clientId, headers)),
      History: ({ before, limit, scopeId, scopeType }, { clientId, headers }) =>
        readHistory({ scopeType, scopeId }, { limit, before }).pipe(hideDefects, context(clientId, headers)),
      Presence: ({ scopeId, scopeType }, { clientId, headers }) =>
        readPresence({ scopeType, scopeId }).pipe(hideDefects, context(clientId, headers))
    }
  })
)
