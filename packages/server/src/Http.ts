import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiError from "@effect/platform/HttpApiError"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Multipart from "@effect/platform/Multipart"
import { Cause, Clock, Effect, Layer, LogLevel, Option, Schema } from "effect"
import { CorrelationId, readHistory, readPresence, readStats, sendMessage } from "@chatify/core"
import {
  Authentication,
  ChatApi,
  type ChatError,
  NotFound,
  PROBLEM_CONTENT_TYPE,
  problemOf,
  Unauthenticated,
  Unexpected,
  ValidationError
} from "@chatify/domain"
import {
  Authenticator,
  bearerChallenge,
  bearerOf,
  hasQueryAccessToken,
  pathOf,
  withoutQueryAccessToken
} from "./Auth.js"
import { ClientAddresses } from "./ClientAddress.js"
import { bodyTooLarge, Limits } from "./Limits.js"
import { Identities, newUuid, ShutdownGate } from "./Runtime.js"

export const CORRELATION_HEADER = "x-correlation-id"

/** What a client-chosen correlation id may look like; anything else is replaced by a fresh one. */
const validCorrelationId = /^[A-Za-z0-9._:-]{1,128}$/u

/** A client's correlation id when it looks like one (every interface takes the same), else undefined. */
export const acceptedCorrelationId = (value: string | undefined): string | undefined =>
  value !== undefined && validCorrelationId.test(value) ? value : undefined

/** A request's correlation id, on every interface: its X-Correlation-ID when accepted, else a fresh one. */
export const correlationIdOf = (headers: Readonly<Record<string, string | undefined>>): string =>
  acceptedCorrelationId(headers[CORRELATION_HEADER]) ?? newUuid()

/**
 * The ProblemDetails response of a typed error, with Retry-After for rate limits and the plain
 * `WWW-Authenticate: Bearer` challenge for a 401 (ProblemAndCorrelationMiddleware makes it
 * `error="invalid_token"` when the request sent a token).
 */
export const problemResponse = (error: ChatError, instance: string, correlationId: string | undefined) => {
  const problem = problemOf(error, { instance, correlationId })
  return HttpServerResponse.unsafeJson(problem, {
    status: problem.status,
    contentType: PROBLEM_CONTENT_TYPE,
    headers: error._tag === "RateLimited"
      ? { "retry-after": String(error.retryAfterSeconds) }
      : error._tag === "Unauthenticated"
      ? { "www-authenticate": bearerChallenge(undefined) }
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
const asDecodeError = (
  response: HttpServerResponse.HttpServerResponse
): Option.Option<HttpApiError.HttpApiDecodeError> =>
  response.status === 400 && response.body._tag === "Uint8Array"
    ? decodeApiDecodeError(textDecoder.decode(response.body.body))
    : Option.none()

/**
 * The outermost middleware: reads or mints X-Correlation-ID, echoes it, attaches it to every log
 * line of the request, and turns whatever escaped a route (decode failures, unknown routes,
 * defects) into ProblemDetails without internals. Routes see the URL without `access_token` (a
 * token is taken from the query only on WebSocket upgrades), so nothing a route or the platform's
 * errors (whose messages name the URL) may log can hold one.
 */
export const ProblemAndCorrelationMiddleware = HttpLayerRouter.middleware(
  (httpEffect) =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const gate = yield* ShutdownGate
      const correlationId = correlationIdOf(request.headers)
      const instance = pathOf(request.url)
      const startedAt = yield* Clock.currentTimeMillis
      const { maxBodyBytes } = yield* Limits
      // A body announced larger than the limit is refused unread, and the connection closes (the
      // rest of the body is not read only to be thrown away). One that grows past the limit as it
      // arrives (chunked, no Content-Length) is cut off: the platform destroys the connection
      // as its read fails, before anything more is buffered, so no answer can follow.
      const announced = Number(request.headers["content-length"] ?? 0)
      // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400 (Node's own check, which answers
      // without a body, is off in NodeServer so that this one answers with a ProblemDetails)
      if (request.headers.host === undefined && httpVersionOf(request) === "1.1") {
        const missingHost = new ValidationError({
          errors: [{ field: "host", message: "an HTTP/1.1 request needs a Host header" }]
        })
        return HttpServerResponse.setHeaders(problemResponse(missingHost, instance, correlationId), {
          [CORRELATION_HEADER]: correlationId,
          connection: "close"
        })
      }
      // No route takes a multipart body, and the platform's multipart reader waits forever on an
      // empty one (and fails with a defect without a boundary): refused unread, as the size limit.
      if (/^\s*multipart\//iu.test(request.headers["content-type"] ?? "")) {
        const multipart = new ValidationError({
          errors: [{ field: "content-type", message: "multipart bodies are not accepted; send application/json" }]
        })
        return HttpServerResponse.setHeaders(problemResponse(multipart, instance, correlationId), {
          [CORRELATION_HEADER]: correlationId,
          connection: "close"
        })
      }
      if (announced > maxBodyBytes) {
        return HttpServerResponse.setHeaders(problemResponse(bodyTooLarge(maxBodyBytes), instance, correlationId), {
          [CORRELATION_HEADER]: correlationId,
          connection: "close"
        })
      }
      const response = yield* httpEffect.pipe(
        HttpIncomingMessage.withMaxBodySize(Option.some(maxBodyBytes)),
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
              problemResponse(
                new NotFound({ message: `No route for ${request.method} ${instance}` }),
                instance,
                correlationId
              )
            )
          }
          // a request the server could not read (bad JSON, a body that is not the multipart its
          // content-type says) is the client's error
          const unreadable = Cause.find(cause, (reason) => {
            const error = reason._tag === "Fail" ? reason.error : reason._tag === "Die" ? reason.defect : undefined
            return error instanceof HttpServerError.RequestError ||
                (error instanceof Multipart.MultipartError && error.reason !== "InternalError")
              ? Option.some(error)
              : Option.none()
          })
          if (Option.isSome(unreadable)) {
            const message = unreadable.value instanceof HttpServerError.RequestError &&
                unreadable.value.description === JSON_TOO_DEEP
              ? JSON_TOO_DEEP
              : "the request body could not be read"
            return Effect.succeed(
              problemResponse(
                new ValidationError({ errors: [{ field: "body", message }] }),
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
        Effect.provideService(HttpServerRequest.HttpServerRequest, withJsonDepthLimit(withoutTokenInUrl(request))),
        Effect.annotateLogs({ correlationId })
      )
      // RFC 6750 §3: every 401 challenges; error="invalid_token" only for a token that was sent (§3.1)
      const challenged = response.status === 401
        ? HttpServerResponse.setHeader(response, "www-authenticate", bearerChallenge(bearerOf(request)))
        : response
      const withCorrelation = HttpServerResponse.setHeader(challenged, CORRELATION_HEADER, correlationId)
      // one line per request, as the original's request logging (probes only at debug level)
      const durationMs = (yield* Clock.currentTimeMillis) - startedAt
      yield* Effect.logWithLevel(
        instance.startsWith("/health/") || instance === "/metrics" ? LogLevel.Debug : LogLevel.Info,
        `HTTP ${request.method} ${instance} responded ${response.status} in ${durationMs} ms`
      ).pipe(
        Effect.annotateLogs({
          correlationId,
          method: request.method,
          path: instance,
          status: response.status,
          durationMs
        })
      )
      // once the pod is leaving (SIGTERM), clients move to another pod instead of reusing this connection
      return (yield* gate.phase) !== "serving"
        ? HttpServerResponse.setHeader(withCorrelation, "connection", "close")
        : withCorrelation
    }),
  { global: true }
)

/** The request's HTTP version as Node parsed it ("1.1", "1.0"), when it came through Node's server. */
const httpVersionOf = (request: HttpServerRequest.HttpServerRequest): string | undefined => {
  const source: unknown = request.source
  return typeof source === "object" && source !== null && "httpVersion" in source &&
      typeof source.httpVersion === "string"
    ? source.httpVersion
    : undefined
}

const withoutTokenInUrl = (request: HttpServerRequest.HttpServerRequest): HttpServerRequest.HttpServerRequest => {
  const url = withoutQueryAccessToken(request.url)
  return url === request.url ? request : request.modify({ url })
}

/** How deep a JSON body may nest: the contract's bodies are flat objects. */
export const MAX_JSON_BODY_DEPTH = 32

const JSON_TOO_DEEP = `JSON nested deeper than ${MAX_JSON_BODY_DEPTH} levels`

/** Whether a parsed JSON value nests deeper than `maximum` (a loop, not recursion: it reads any depth). */
export const jsonNestsDeeperThan = (value: unknown, maximum: number): boolean => {
  const pending: Array<readonly [unknown, number]> = [[value, 1]]
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [current, depth] = next
    if (typeof current !== "object" || current === null) continue
    if (depth > maximum) return true
    for (const child of Array.isArray(current) ? current : Object.values(current)) pending.push([child, depth + 1])
  }
  return false
}

/**
 * The request with its JSON body refused past MAX_JSON_BODY_DEPTH levels, as unreadable (400): a body
 * nested thousands deep is within the size limit, but the schema's error message, which shows the
 * value it got, would overflow the stack describing it.
 */
const withJsonDepthLimit = (request: HttpServerRequest.HttpServerRequest): HttpServerRequest.HttpServerRequest => {
  const json = () =>
    Effect.flatMap(request.json, (value) =>
      jsonNestsDeeperThan(value, MAX_JSON_BODY_DEPTH)
        ? Effect.fail(
          new HttpServerError.RequestError({
            request,
            reason: "Decode",
            description: JSON_TOO_DEEP
          })
        )
        : Effect.succeed(value))
  // every other member is the request's own (the platform reads the body through `json`)
  return Object.create(request, { json: { get: json } }) as HttpServerRequest.HttpServerRequest
}

/**
 * A REST request's bearer token: the Authorization header only. An `access_token` in the query is
 * ignored (anonymous without authentication); with authentication on, the 401 says where the token goes.
 */
const restBearerOf = (
  request: HttpServerRequest.HttpServerRequest,
  authenticationOn: boolean
): Effect.Effect<string | undefined, Unauthenticated> => {
  const bearer = bearerOf(request)
  return bearer === undefined && authenticationOn && hasQueryAccessToken(request.originalUrl)
    ? Effect.fail(
      new Unauthenticated({
        message: "a bearer access token is required in the Authorization header (access_token in the query is " +
          "accepted only on the WebSocket routes /rpc and /hubs/chat)"
      })
    )
    : Effect.succeed(bearer)
}

/**
 * The REST caller, before anything of the request is decoded (HttpApi runs the middleware first):
 * with authentication on, a request without a valid token is a 401 whatever its body or query.
 * Anonymous callers are one identity per client address (see AnonymousAuthenticator).
 */
export const AuthenticationLive = Layer.effect(
  Authentication,
  Effect.gen(function*() {
    const identities = yield* Identities
    const authenticator = yield* Authenticator
    const clientAddresses = yield* ClientAddresses
    return Authentication.of({
      // the token as HttpApiSecurity reads it cannot tell a missing header from another scheme, nor
      // see a misplaced access_token: the request says
      bearer: (_token) =>
        Effect.gen(function*() {
          const request = yield* HttpServerRequest.HttpServerRequest
          const clientAddress = clientAddresses.of(
            Option.getOrUndefined(request.remoteAddress),
            request.headers["x-forwarded-for"]
          )
          const bearer = yield* restBearerOf(request, authenticator.enabled)
          const requestId = identities.newConnectionId()
          return yield* authenticator.authenticate(
            bearer,
            requestId,
            clientAddress,
            `address:${clientAddress}`
          )
        }).pipe(
          Effect.catchAll((error) =>
            Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
              Effect.flatMap(CorrelationId, (correlationId) =>
                Effect.fail({
                  ...problemOf(error, { instance: pathOf(request.url), correlationId }),
                  status: 401 as const
                })))
          )
        )
    })
  })
)

/** REST handlers of the HttpApi contract: the same use cases as /rpc, errors rendered as ProblemDetails. */
export const ChatApiHandlers = HttpApiBuilder.group(ChatApi, "chat", (handlers) =>
  Effect.gen(function*() {
    const gate = yield* ShutdownGate
    const respond = <A, R>(effect: Effect.Effect<A, ChatError, R>) =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const correlationId = yield* CorrelationId
        const instance = pathOf(request.url)
        return yield* Effect.catchAll(
          effect,
          (error) => Effect.succeed(problemResponse(error, instance, correlationId))
        )
      })
    return handlers
      .handle("send", ({ payload }) => respond(gate.track(sendMessage(payload))))
      .handle("history", ({ path, urlParams }) => respond(readHistory(path, urlParams)))
      .handle("presence", ({ path }) => respond(readPresence(path)))
      .handle("stats", ({ path, urlParams }) => respond(readStats({ ...path, ...urlParams })))
  }))
