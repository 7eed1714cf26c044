import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { Schema } from "effect"
import { ChatScopeType, ChatSendRequest, EnrichedChatEvent } from "./ChatEvent.js"
import { HistoryLimit, HistoryPage } from "./History.js"
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

const ScopePath = Schema.Struct({
  scopeType: Schema.compose(Schema.NumberFromString, ChatScopeType),
  scopeId: Schema.String
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
      .setUrlParams(
        Schema.Struct({
          limit: Schema.optional(Schema.compose(Schema.NumberFromString, HistoryLimit)),
          before: Schema.optional(Schema.String)
        })
      )
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
  .addError(Problem400)
  .addError(Problem500) {}

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
  return spec
}

export class ChatApi extends HttpApi.make("chatify")
  .add(ChatApiGroup)
  .annotate(OpenApi.Title, "Chatify")
  .annotate(OpenApi.Transform, documentValidationProblems)
{}
