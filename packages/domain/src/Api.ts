import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { ScopeStats, UtcDateTime } from "./Analytics.js"
import { ChatSendRequest, EnrichedChatEvent, SCOPE_TYPE_MESSAGE } from "./ChatEvent.js"
import { HistoryLimitFromString, HistoryPage } from "./History.js"
import { CurrentUser } from "./Identity.js"
import { PROBLEM_CONTENT_TYPE, ProblemDetails } from "./ProblemDetails.js"
import { ScopePresence } from "./Presence.js"

/** ProblemDetails with a fixed status, so the contract documents each error response. */
const problem = <S extends number>(status: S) =>
  Schema.Struct({ ...ProblemDetails.fields, status: Schema.Literal(status) }).pipe(
    HttpApiSchema.withEncoding({ kind: "Json", contentType: PROBLEM_CONTENT_TYPE })
  ).annotations({ ...HttpApiSchema.annotations({ status }), identifier: `Problem${status}` })

export const Problem400 = problem(400)
export const Problem401 = problem(401)
export const Problem403 = problem(403)
export const Problem409 = problem(409)
export const Problem429 = problem(429)
export const Problem500 = problem(500)
export const Problem503 = problem(503)
export const Problem504 = problem(504)

/** scopeType as a path segment: "0" or "1" (so documented, as an enum), decoded to ChatScopeType. */
const ScopeTypeFromPath = Schema.transformLiterals(["0", 0], ["1", 1]).annotations({
  description: "0 = Channel, 1 = DirectMessage",
  message: () => ({ message: SCOPE_TYPE_MESSAGE, override: true })
})

/** The path parameters of the scope routes. */
export const ScopePath = Schema.Struct({
  scopeType: ScopeTypeFromPath,
  scopeId: Schema.String
})

/** `Authorization: Bearer <JWT>`, documented as the API's security scheme (Swagger UI's Authorize button). */
export const BearerAuthentication = HttpApiSecurity.bearer.pipe(
  HttpApiSecurity.annotate(OpenApi.Format, "JWT"),
  HttpApiSecurity.annotate(
    OpenApi.Description,
    "A JWT access token (its sub is the user). Required when the server is configured with CHATIFY__AUTH__*; " +
      "without that configuration every call is anonymous and the header is not needed."
  )
)

/**
 * Who calls: runs before anything of the request is decoded (a call without a valid token is a 401,
 * whatever its body or query holds), and provides the caller to the handlers. A refusal is the 401
 * ProblemDetails.
 */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("@chatify/domain/Authentication", {
  failure: Problem401,
  provides: CurrentUser,
  security: { bearer: BearerAuthentication }
}) {}

/** The query of GET …/history. */
export const HistoryUrlParams = Schema.Struct({
  limit: Schema.optionalWith(HistoryLimitFromString, { exact: true }),
  before: Schema.optional(Schema.String)
})

/** The query of GET …/stats: the windows that start in [from, to); to defaults to now, from to an hour before to. */
export const StatsUrlParams = Schema.Struct({
  from: Schema.optionalWith(UtcDateTime, { exact: true }),
  to: Schema.optionalWith(UtcDateTime, { exact: true })
})

export class ChatApiGroup extends HttpApiGroup.make("chat")
  .add(
    HttpApiEndpoint.post("send", "/api/chat/send")
      .setPayload(ChatSendRequest)
      .addSuccess(EnrichedChatEvent)
      .addError(Problem401)
      .addError(Problem403)
      .addError(Problem409)
      .addError(Problem429)
      .addError(Problem503)
      .addError(Problem504)
      .annotate(OpenApi.Summary, "Send a message to a scope")
  )
  .add(
    HttpApiEndpoint.get("history", "/api/chat/scopes/:scopeType/:scopeId/history")
      .setPath(ScopePath)
      .setUrlParams(HistoryUrlParams)
      .addSuccess(HistoryPage)
      .addError(Problem401)
      .addError(Problem403)
      .addError(Problem429)
      .addError(Problem503)
      .addError(Problem504)
      .annotate(OpenApi.Summary, "A page of a scope's history, newest first")
  )
  .add(
    HttpApiEndpoint.get("presence", "/api/chat/scopes/:scopeType/:scopeId/presence")
      .setPath(ScopePath)
      .addSuccess(ScopePresence)
      .addError(Problem401)
      .addError(Problem403)
      .addError(Problem429)
      .addError(Problem503)
      .annotate(OpenApi.Summary, "Who is online in a scope")
  )
  .add(
    HttpApiEndpoint.get("stats", "/api/chat/scopes/:scopeType/:scopeId/stats")
      .setPath(ScopePath)
      .setUrlParams(StatsUrlParams)
      .addSuccess(ScopeStats)
      .addError(Problem401)
      .addError(Problem403)
      .addError(Problem429)
      .addError(Problem503)
      .addError(Problem504)
      .annotate(
        OpenApi.Summary,
        "A scope's message statistics per window (from the analytics job), oldest first; at most 24 hours at once"
      )
  )
  .addError(Problem400)
  .addError(Problem500)
  .middleware(Authentication)
{}

/**
 * A report of /health/*, as ASP.NET Core's health checks wrote it: `checks` names each check and its
 * state; `unavailable` (503) and `degraded` (still 200) name each failing one and why.
 */
export const HealthReport = Schema.Struct({
  status: Schema.Literal("Healthy", "Degraded", "Unhealthy"),
  checks: Schema.Record({ key: Schema.String, value: Schema.String }),
  unavailable: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  degraded: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String }))
}).annotations({ identifier: "HealthReport" })

const UnhealthyReport = HealthReport.annotations({
  ...HttpApiSchema.annotations({ status: 503 }),
  identifier: "HealthReportUnhealthy",
  description: "Unhealthy: not ready (yet, or any more); with Retry-After while the server starts or stops"
})

/**
 * The probes, for the OpenAPI document only: the server serves them on its router (they answer
 * while the API is not attached yet), and ChatApi's document includes these paths.
 */
export class HealthApi extends HttpApi.make("health").add(
  HttpApiGroup.make("health")
    .add(
      HttpApiEndpoint.get("live", "/health/live").addSuccess(HealthReport)
        .annotate(OpenApi.Summary, "Liveness: 200 while the process serves")
    )
    .add(
      HttpApiEndpoint.get("startup", "/health/startup").addSuccess(HealthReport).addError(UnhealthyReport)
        .annotate(OpenApi.Summary, "Startup: 200 once the consumers have started, 503 before")
    )
    .add(
      HttpApiEndpoint.get("ready", "/health/ready").addSuccess(HealthReport).addError(UnhealthyReport)
        .annotate(
          OpenApi.Summary,
          "Readiness: 200 (Healthy or Degraded) when the pod can take a send; 503 otherwise and from SIGTERM on"
        )
    )
    .annotate(OpenApi.Description, "Kubernetes probes")
) {}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/**
 * HttpApi documents its built-in decode error for 400; the server answers every 400 with
 * ProblemDetails (it rewrites decode errors), so the document says exactly that.
 */
const documentValidationProblems = (spec: Record<string, unknown>): Record<string, unknown> => {
  const paths = spec["paths"]
  if (!isRecord(paths)) return spec
  for (const item of Object.values(paths)) {
    if (!isRecord(item)) continue
    for (const operation of Object.values(item)) {
      if (!isRecord(operation) || !isRecord(operation["responses"])) continue
      const badRequest = operation["responses"]["400"]
      if (!isRecord(badRequest)) continue
      badRequest["content"] = {
        [PROBLEM_CONTENT_TYPE]: { schema: { $ref: "#/components/schemas/Problem400" } }
      }
    }
  }
  documentHealthProbes(spec, paths)
  return spec
}

/** The probes of HealthApi, in the same document (no security: probes take no token). */
const documentHealthProbes = (spec: Record<string, unknown>, paths: Record<string, unknown>): void => {
  const health = OpenApi.fromApi(HealthApi)
  for (const [path, item] of Object.entries(health.paths)) {
    // a probe takes no input: HttpApi's generic 400 does not apply
    if (item.get !== undefined) delete item.get.responses[400]
    paths[path] = item
  }
  const components = spec["components"]
  if (isRecord(components) && isRecord(components["schemas"])) {
    Object.assign(components["schemas"], health.components.schemas)
  }
  if (Array.isArray(spec["tags"])) spec["tags"].push(...health.tags)
}

export class ChatApi extends HttpApi.make("chatify")
  .add(ChatApiGroup)
  .annotate(OpenApi.Title, "Chatify")
  .annotate(OpenApi.Transform, documentValidationProblems)
{}
