import { Effect, Layer, Option } from "effect"
import { ChatPolicy, CurrentUser, type Identity, ScopeAuthorizer, type ScopeAction } from "./Ports.js"
import { directMessageMembers, Forbidden, type ScopeRef, ScopeTypes, validateScope } from "@chatify/domain"

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

/** The caller's right to act on a scope whose id is known to be valid. */
export const checkScopeAccess = (
  authorizer: ScopeAuthorizer["Type"],
  identity: Identity,
  scope: ScopeRef,
  action: ScopeAction
): Effect.Effect<void, Forbidden> =>
  Effect.flatMap(authorizer.authorize(identity, scope, action), (allowed) =>
    allowed
      ? Effect.void
      : Effect.fail(new Forbidden({ message: `${identity.userId} may not ${action} in this scope` })))

/** Checks a scope reference and the caller's right to act on it; shared by every use case. */
export const authorizeScope = (scope: ScopeRef, action: ScopeAction) =>
  Effect.gen(function*() {
    const limits = yield* ChatPolicy
    yield* validateScope(limits, scope)
    const identity = yield* CurrentUser
    yield* checkScopeAccess(yield* ScopeAuthorizer, identity, scope, action)
    return identity
  })
