import { Schema } from "effect"

/** One offending field of a request, as listed in a validation ProblemDetails. */
export const FieldError = Schema.Struct({
  field: Schema.String,
  message: Schema.String
}).annotations({ identifier: "FieldError" })
export type FieldError = typeof FieldError.Type

export class ValidationError extends Schema.TaggedError<ValidationError>()("ValidationError", {
  errors: Schema.NonEmptyArray(FieldError)
}) {}

export class Unauthenticated extends Schema.TaggedError<Unauthenticated>()("Unauthenticated", {
  message: Schema.String
}) {}

export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", {
  message: Schema.String
}) {}

export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  message: Schema.String
}) {}

/** The request conflicts with the current state (e.g. a resume position from another partition). */
export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", {
  message: Schema.String
}) {}

/** A subscriber fell so far behind that its buffer overflowed; it must resume from its last position. */
export class SubscriptionLagged extends Schema.TaggedError<SubscriptionLagged>()("SubscriptionLagged", {
  scopeId: Schema.String,
  bufferSize: Schema.NonNegativeInt
}) {}

/**
 * A caller's rate limit refused the request; it may be retried after `retryAfterSeconds`. Sends and
 * reads (Subscribe, History, Presence) are counted in separate windows: `kind` says which one refused
 * (absent: a send, as before reads were limited).
 */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  limit: Schema.NonNegativeInt,
  windowSeconds: Schema.NonNegativeInt,
  retryAfterSeconds: Schema.NonNegativeInt,
  kind: Schema.optional(Schema.Literal("send", "read"))
}) {}

/**
 * A limit of the server's (CHATIFY__LIMITS__*) would be exceeded: more subscriptions on one
 * connection, more connections from one address, a larger request body. Retrying the same thing
 * does not help; doing less does.
 */
export class LimitExceeded extends Schema.TaggedError<LimitExceeded>()("LimitExceeded", {
  /** The limit's setting, e.g. "MaxSubscriptionsPerConnection". */
  limit: Schema.String,
  maximum: Schema.NonNegativeInt,
  message: Schema.String
}) {}

/** A dependency (broker, history store, cache) could not do its part. */
export class DependencyUnavailable extends Schema.TaggedError<DependencyUnavailable>()("DependencyUnavailable", {
  dependency: Schema.String,
  message: Schema.String
}) {}

export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", {
  operation: Schema.String
}) {}

/** Anything else. Carries no internals: details go to the log, not to the client. */
export class Unexpected extends Schema.TaggedError<Unexpected>()("Unexpected", {
  message: Schema.String
}) {}

/** Every error a client of Chatify can see, on every interface. */
export const ChatError = Schema.Union(
  ValidationError,
  Unauthenticated,
  Forbidden,
  NotFound,
  Conflict,
  SubscriptionLagged,
  RateLimited,
  LimitExceeded,
  DependencyUnavailable,
  Timeout,
  Unexpected
)
export type ChatError = typeof ChatError.Type

/** Conflict: the send's clientMessageId was already used, within the idempotency window, for another message. */
export type SendError =
  | ValidationError
  | Unauthenticated
  | Forbidden
  | Conflict
  | RateLimited
  | DependencyUnavailable
  | Timeout
  | Unexpected
export const SendError = Schema.Union(
  ValidationError,
  Unauthenticated,
  Forbidden,
  Conflict,
  RateLimited,
  DependencyUnavailable,
  Timeout,
  Unexpected
)

export type SubscribeError =
  | ValidationError
  | Unauthenticated
  | Forbidden
  | Conflict
  | SubscriptionLagged
  | RateLimited
  | LimitExceeded
  | DependencyUnavailable
  | Timeout
  | Unexpected
export const SubscribeError = Schema.Union(
  ValidationError,
  Unauthenticated,
  Forbidden,
  Conflict,
  SubscriptionLagged,
  RateLimited,
  LimitExceeded,
  DependencyUnavailable,
  Timeout,
  Unexpected
)

export type QueryError =
  | ValidationError
  | Unauthenticated
  | Forbidden
  | RateLimited
  | DependencyUnavailable
  | Timeout
  | Unexpected
export const QueryError = Schema.Union(
  ValidationError,
  Unauthenticated,
  Forbidden,
  RateLimited,
  DependencyUnavailable,
  Timeout,
  Unexpected
)

/** How an operator's stream (RateLimitViolations) can fail: not an operator is Forbidden. */
export type OperatorStreamError = Unauthenticated | Forbidden | RateLimited | DependencyUnavailable | Unexpected
export const OperatorStreamError = Schema.Union(
  Unauthenticated,
  Forbidden,
  RateLimited,
  DependencyUnavailable,
  Unexpected
)
