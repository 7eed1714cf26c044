import { Cause, Effect } from "effect"
import { CorrelationId, CurrentUser, readHistory, readPresence, sendMessage, subscribe } from "@chatify/core"
import { ChatRpcs, Unexpected } from "@chatify/domain"
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
    const gate = yield* ShutdownGate
    const context = (clientId: number, headers: Record<string, string | undefined>) => {
      const correlationId = headers[CORRELATION_HEADER] ?? crypto.randomUUID()
      const identity = identities.anonymous(identities.connectionIdForClient(clientId))
      return <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        effect.pipe(
          Effect.provideService(CurrentUser, identity),
          Effect.provideService(CorrelationId, correlationId),
          Effect.annotateLogs({ correlationId, connectionId: identity.connectionId })
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
