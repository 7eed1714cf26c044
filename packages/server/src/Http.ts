import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiError from "@effect/platform/HttpApiError"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Cause, Effect, Option, Schema } from "effect"
import { CorrelationId, CurrentUser, readHistory, readPresence, sendMessage } from "@chatify/core"
import {
  ChatApi,
  type ChatError,
  NotFound,
  PROBLEM_CONTENT_TYPE,
  problemOf,
  Unexpected,
  ValidationError
} from "@chatify/domain"
import { Authenticator, bearerOf, pathOf } from "./Auth.js"
import { Identities, ShutdownGate } from "./Runtime.js"

export const CORRELATION_HEADER = "x-correlation-id"

/** What a client-chosen correlation id may look like; anything else is replaced by a fresh one. */
export const validCorrelationId = /^[A-Za-z0-9._:-]{1,128}$/u

/** The ProblemDetails response of a typed error, with Retry-After for rate limits. */
export const problemResponse = (error: ChatError, instance: string, correlationId: string | undefined) => {
  const problem = problemOf(error, { instance, correlationId })
  return HttpServerResponse.unsafeJson(problem, {
    status: problem.status,
    contentType: PROBLEM_CONTENT_TYPE,
    headers: error._tag === "RateLimited"
      ? { "retry-after": String(error.retryAfterSeconds) }
      : error._tag === "Unauthenticated"
      ? { "www-authenticate": `Bearer error="invalid_token"` }
      : {}
  })
}

const decodeErrorToValidation = (error: HttpApiError.HttpApiDecodeError): ValidationError => {
  const errors = error.issues.map((issue) => ({
    field: issue.path.length === 0 ? "body" : issue.path.map(String).join("."),
    message: issue.message
  }))
  const [first, ...rest] = errors
  return new ValidationError({
    errors: first === undefined ? [{ field: "body", message: error.message }] : [first, ...rest]
  })
}

const decodeApiDecodeError = Schema.decodeUnknownOption(Schema.parseJson(HttpApiError.HttpApiDecodeError))
const textDecoder = new TextDecoder()

/** HttpApi answers a request that does not match its schema with its own body; ours is ProblemDetails. */
const asDecodeError = (response: HttpServerResponse.HttpServerResponse): Option.Option<HttpApiError.HttpApiDecodeError> =>
  response.status === 400 && response.body._tag === "Uint8Array"
    ? decodeApiDecodeError(textDecoder.decode(response.body.body))
    : Option.none()

/**
 * The outermost middleware: reads or mints X-Correlation-ID, echoes it, attaches it to every log
 * line of the request, and turns whatever escaped a route (decode failures, unknown routes,
 * defects) into ProblemDetails without internals.
 */
export const ProblemAndCorrelationMiddleware = HttpLayerRouter.middleware(
  (httpEffect) =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const gate = yield* ShutdownGate
      const incoming = request.headers[CORRELATION_HEADER]
      const correlationId = incoming !== undefined && validCorrelationId.test(incoming)
        ? incoming
        : crypto.randomUUID()
      const instance = pathOf(request.url)
      const response = yield* httpEffect.pipe(
        Effect.map((response) =>
          Option.match(asDecodeError(response), {
            onNone: () => response,
            onSome: (error) => problemResponse(decodeErrorToValidation(error), instance, correlationId)
          })
        ),
        Effect.catchAllCause((cause) => {
          const failure = Cause.failureOption(cause)
          if (Option.isSome(failure) && failure.value instanceof HttpServerError.RouteNotFound) {
            return Effect.succeed(
              problemResponse(new NotFound({ message: `No route for ${request.method} ${instance}` }), instance, correlationId)
            )
          }
          // a request the server could not read (bad JSON) is the client's error
          const unreadable = Cause.find(cause, (reason) => {
            const error = reason._tag === "Fail" ? reason.error : reason._tag === "Die" ? reason.defect : undefined
            return error instanceof HttpServerError.RequestError ? Option.some(error) : Option.none()
          })
          if (Option.isSome(unreadable)) {
            return Effect.succeed(
              problemResponse(
                new ValidationError({ errors: [{ field: "body", message: "the request body could not be read" }] }),
                instance,
                correlationId
              )
            )
          }
          if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
          return Effect.as(
            Effect.logError("Unhandled error in HTTP request", cause).pipe(
              Effect.annotateLogs({ path: instance, method: request.method })
            ),
            problemResponse(new Unexpected({ message: "unhandled" }), instance, correlationId)
          )
        }),
        Effect.provideService(CorrelationId, correlationId),
        Effect.annotateLogs({ correlationId })
      )
      const withCorrelation = HttpServerResponse.setHeader(response, CORRELATION_HEADER, correlationId)
      // while draining, clients move to another pod instead of reusing this connection
      return (yield* gate.isDraining) ? HttpServerResponse.setHeader(withCorrelation, "connection", "close") : withCorrelation
    }),
  { global: true }
)

/** REST handlers of the HttpApi contract: the same use cases as /rpc, errors rendered as ProblemDetails. */
export const ChatApiHandlers = HttpApiBuilder.group(ChatApi, "chat", (handlers) =>
  Effect.gen(function*() {
    const identities = yield* Identities
    const authenticator = yield* Authenticator
    const gate = yield* ShutdownGate
    const respond = <A, R>(effect: Effect.Effect<A, ChatError, R | CurrentUser>) =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const correlationId = yield* CorrelationId
        const instance = pathOf(request.url)
        return yield* authenticator.authenticate(bearerOf(request), yield* identities.newConnectionId).pipe(
          Effect.flatMap((principal) => Effect.provideService(effect, CurrentUser, principal)),
          Effect.catchAll((error) => Effect.succeed(problemResponse(error, instance, correlationId)))
        )
      })
    return handlers
      .handle("send", ({ payload }) => respond(gate.track(sendMessage(payload))))
      .handle("history", ({ path, urlParams }) => respond(readHistory(path, urlParams)))
      .handle("presence", ({ path }) => respond(readPresence(path)))
  }))
