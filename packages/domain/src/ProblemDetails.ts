import { Match, Schema } from "effect"
import { type ChatError, FieldError } from "./Errors.js"

/** RFC 7807 problem details, as every HTTP error body of Chatify. */
export const ProblemDetails = Schema.Struct({
  type: Schema.String,
  title: Schema.String,
  status: Schema.Int,
  detail: Schema.String,
  instance: Schema.optional(Schema.String),
  correlationId: Schema.optional(Schema.String),
  errors: Schema.optional(Schema.Array(FieldError)),
  retryAfterSeconds: Schema.optional(Schema.NonNegativeInt)
}).annotations({ identifier: "ProblemDetails" })
export type ProblemDetails = typeof ProblemDetails.Type

export const PROBLEM_CONTENT_TYPE = "application/problem+json"

/** The context a problem is reported in: the request path and the correlation id. */
export interface ProblemContext {
  readonly instance?: string | undefined
  readonly correlationId?: string | undefined
}

const problem = (slug: string, title: string, status: number, detail: string): ProblemDetails => ({
  type: `urn:chatify:problem:${slug}`,
  title,
  status,
  detail
})

/** The one mapping from every typed error to its ProblemDetails: total by construction (Match.exhaustive). */
export const problemOf = (error: ChatError, context: ProblemContext = {}): ProblemDetails => {
  const base = Match.value(error).pipe(
    Match.tagsExhaustive({
      ValidationError: (e): ProblemDetails => ({
        ...problem("validation", "Validation failed", 400, e.errors.map((f) => `${f.field}: ${f.message}`).join("; ")),
        errors: e.errors
      }),
      Unauthenticated: (e) => problem("unauthenticated", "Unauthenticated", 401, e.message),
      Forbidden: (e) => problem("forbidden", "Forbidden", 403, e.message),
      NotFound: (e) => problem("not-found", "Not found", 404, e.message),
      Conflict: (e) => problem("conflict", "Conflict", 409, e.message),
      SubscriptionLagged: (e) =>
        problem(
          "subscription-lagged",
          "Subscription lagged",
          409,
          `The subscriber to ${e.scopeId} fell more than ${e.bufferSize} events behind; resume from the last position`
        ),
      RateLimited: (e): ProblemDetails => ({
        ...problem(
          "rate-limited",
          "Too many requests",
          429,
          `At most ${e.limit} ${
            e.kind === "read" ? "reads (subscribe, history, presence)" : "messages"
          } per ${e.windowSeconds} s; retry after ${e.retryAfterSeconds} s`
        ),
        retryAfterSeconds: e.retryAfterSeconds
      }),
      // 413 for a body, the one limit a request exceeds by its size; 429 for the rest (too many of something)
      LimitExceeded: (e) =>
        problem("limit-exceeded", "Limit exceeded", e.limit === "MaxBodyBytes" ? 413 : 429, e.message),
      DependencyUnavailable: (e) =>
        problem("dependency-unavailable", "Service unavailable", 503, `${e.dependency} is unavailable`),
      Timeout: (e) => problem("timeout", "Timeout", 504, `${e.operation} timed out`),
      Unexpected: () => problem("unexpected", "Internal server error", 500, "An unexpected error occurred")
    })
  )
  return {
    ...base,
    ...(context.instance === undefined ? {} : { instance: context.instance }),
    ...(context.correlationId === undefined ? {} : { correlationId: context.correlationId })
  }
}
