import { Effect, Layer, Option } from "effect"
import { ChatPolicy, CurrentUser, ScopeAuthorizer, type ScopeAction } from "./Ports.js"
import { directMessageMembers, Forbidden, type ScopeRef, ScopeTypes, validateScopeId } from "@chatify/domain"

/**
 * The default rule: every identity may use a channel; a direct-message scope only its two members,
 * and only under its canonical id (see directMessageScopeId).
 */
export const DefaultScopePolicy = Layer.succeed(ScopeAuthorizer, {
  authorize: (identity, scope) =>
    Effect.succeed(
      scope.scopeType === ScopeTypes.Channel ||
        Option.match(directMessageMembers(scope.scopeId), {
          onNone: () => false,
          onSome: ([a, b]) => identity.userId === a || identity.userId === b
        })
    )
})

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
