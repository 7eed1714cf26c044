import { Effect, Either, Schema } from "effect"
import {
  DEFAULT_HISTORY_PAGE,
  HistoryCursor,
  HistoryPage,
  type QueryError,
  type ScopeRef,
  scopeKey,
  ScopePresence,
  ValidationError
} from "@chatify/domain"
import { authorizeScope } from "./Access.js"
import { ChatHistory, ChatPolicy, CurrentUser, Presence, ReadRateLimiter, ScopeAuthorizer } from "./Ports.js"
import { checkReadRate } from "./ReadLimit.js"
import { traced } from "./Tracing.js"

const decodeCursor = Schema.decodeEither(HistoryCursor)
const encodeCursor = Schema.encodeSync(HistoryCursor)

/**
 * A page of a scope's history, newest first, continuing before the given opaque cursor. Counted in
 * the caller's read window (RateLimited past it), as every read.
 */
export const readHistory: (
  scope: ScopeRef,
  options: { readonly limit?: number | undefined; readonly before?: string | undefined }
) => Effect.Effect<
  HistoryPage,
  QueryError,
  ChatHistory | ChatPolicy | CurrentUser | ReadRateLimiter | ScopeAuthorizer
> = traced("Chat.readHistory")(function*(
  scope: ScopeRef,
  options: { readonly limit?: number | undefined; readonly before?: string | undefined }
) {
  yield* checkReadRate(yield* authorizeScope(scope, "read"))
  const before = options.before === undefined ? undefined : yield* decodeCursor(options.before).pipe(
    Either.mapLeft(() => new ValidationError({ errors: [{ field: "before", message: "is not a valid cursor" }] }))
  )
  const history = yield* ChatHistory
  const slice = yield* history.page(scope, { limit: options.limit ?? DEFAULT_HISTORY_PAGE, before })
  return new HistoryPage({
    items: slice.items,
    ...(slice.next === undefined ? {} : { nextCursor: encodeCursor(slice.next) })
  })
})

/** Who is online in a scope; counted in the caller's read window. */
export const readPresence: (
  scope: ScopeRef
) => Effect.Effect<ScopePresence, QueryError, ChatPolicy | CurrentUser | Presence | ReadRateLimiter | ScopeAuthorizer> =
  traced("Chat.readPresence")(function*(scope: ScopeRef) {
    yield* checkReadRate(yield* authorizeScope(scope, "read"))
    const users = yield* (yield* Presence).online(scopeKey(scope))
    return new ScopePresence({ scopeType: scope.scopeType, scopeId: scope.scopeId, users })
  })
