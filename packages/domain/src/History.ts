import { Effect, Either, ParseResult, Schema } from "effect"
import { ChatScopeType, EnrichedChatEvent } from "./ChatEvent.js"

export const DEFAULT_HISTORY_PAGE = 50
export const MAX_HISTORY_PAGE = 500

/** Where a newest-first history page ends: the history's clustering key of its last (oldest) item. */
export const HistoryCursorPosition = Schema.Struct({
  createdAtMs: Schema.Int,
  messageId: Schema.UUID
})
export type HistoryCursorPosition = typeof HistoryCursorPosition.Type

const base64url = {
  encode: (text: string): string => btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/u, ""),
  decode: (text: string): Either.Either<string, string> => {
    if (!/^[A-Za-z0-9_-]*$/u.test(text)) return Either.left("is not base64url")
    try {
      return Either.right(atob(text.replaceAll("-", "+").replaceAll("_", "/")))
    } catch {
      return Either.left("is not base64url")
    }
  }
}

/** The opaque cursor clients pass back for the next page: base64url of the position's JSON. */
export const HistoryCursor = Schema.transformOrFail(Schema.String, HistoryCursorPosition, {
  strict: true,
  decode: (text, _, ast) =>
    Either.match(base64url.decode(text), {
      onLeft: (message) => ParseResult.fail(new ParseResult.Type(ast, text, `cursor ${message}`)),
      onRight: (json) =>
        Schema.decodeUnknown(Schema.parseJson(Schema.encodedSchema(HistoryCursorPosition)))(json).pipe(
          Effect.mapError(() => new ParseResult.Type(ast, text, "cursor is malformed"))
        )
    }),
  encode: (position) => ParseResult.succeed(base64url.encode(JSON.stringify(position)))
}).annotations({ identifier: "HistoryCursor", description: "opaque cursor returned as nextCursor" })

const historyLimitMessage = () => ({ message: `must be an integer between 1 and ${MAX_HISTORY_PAGE}`, override: true })

export const HistoryLimit = Schema.Int.pipe(Schema.between(1, MAX_HISTORY_PAGE)).annotations({
  identifier: "HistoryLimit",
  message: historyLimitMessage
})

/** A page size as a query string (`?limit=`): one message for text that is no number and for one out of range. */
export const HistoryLimitFromString = Schema.compose(Schema.NumberFromString, HistoryLimit).annotations({
  message: historyLimitMessage,
  description: `Page size: an integer from 1 to ${MAX_HISTORY_PAGE} (default ${DEFAULT_HISTORY_PAGE})`
})

/** A page of a scope's history, newest first; nextCursor is absent on the last page. */
export class HistoryPage extends Schema.Class<HistoryPage>("HistoryPage")({
  items: Schema.Array(EnrichedChatEvent),
  nextCursor: Schema.optional(Schema.String)
}) {}

export const HistoryQuery = Schema.Struct({
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  limit: Schema.optional(HistoryLimit),
  before: Schema.optional(Schema.String)
})
export type HistoryQuery = typeof HistoryQuery.Type
