import { Effect } from "effect"
import { ChatPolicy, CurrentUser, ScopeAuthorizer, type ScopeAction } from "./Ports.js"
import { Forbidden, type ScopeRef, validateScopeId } from "@chatify/domain"

/** Checks a scope reference and the caller's right to act on it; shared by every use case. */
export const authorizeScope = (scope: ScopeRef, action: ScopeAction) =>
  Effect.gen(function*() {
    const limits = yield* ChatPolicy
    yield* validateScopeId(limits, scope.scopeId)
    const identity = yield* CurrentUser
    const authorizer = yield* ScopeAuthorizer
    const allowed = yield* authorizer.authorize(identity, scope, action)
    if (!allowed) {
      return yield* new Forbidden({ message: `${identity.userId} may not ${action} in this scope` })
    }
    return identity
  })
