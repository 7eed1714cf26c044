/**
 * The page's pure parts: what a scope's timeline holds, how server errors read in words, and what
 * the page remembers between visits. No DOM and no I/O, so each is tested on its own.
 */
import { Duration, Either, Option, Schema } from "effect"
import {
  ChatScopeType,
  directMessageMembers,
  type EnrichedChatEvent,
  type ScopeRef,
  type SendError
} from "@chatify/domain"

/** The messages of one scope, each once, in log order (a scope lives on one partition: offsets order it). */
export interface Timeline {
  readonly byId: ReadonlyMap<string, EnrichedChatEvent>
  /** Message ids, oldest first. */
  readonly order: ReadonlyArray<string>
}

export const emptyTimeline: Timeline = { byId: new Map(), order: [] }

const byLogOrder = (a: EnrichedChatEvent, b: EnrichedChatEvent): number =>
  a.offset - b.offset || (a.chatEvent.messageId < b.chatEvent.messageId ? -1 : 1)

/**
 * The timeline with `events` merged in: a message already there (a live event that history also
 * returned, a redelivery after a reconnect) is kept once, whatever order they come in.
 */
export const mergeEvents = (timeline: Timeline, events: Iterable<EnrichedChatEvent>): Timeline => {
  const byId = new Map(timeline.byId)
  let added = false
  for (const event of events) {
    if (byId.has(event.chatEvent.messageId)) continue
    byId.set(event.chatEvent.messageId, event)
    added = true
  }
  if (!added) return timeline
  const order = Array.from(byId.values()).sort(byLogOrder).map((event) => event.chatEvent.messageId)
  return { byId, order }
}

/** A send the server refused, or one that never reached it, in words for the person who typed it. */
export const sendErrorText = (error: SendError | { readonly _tag: "RpcClientError" }): string => {
  switch (error._tag) {
    case "ValidationError":
      return `Not sent: ${error.errors.map(({ field, message }) => `${field} ${message}`).join("; ")}`
    case "RateLimited":
      return `Not sent: too many messages (at most ${error.limit} in ${error.windowSeconds} s). ` +
        `Try again in ${formatSeconds(error.retryAfterSeconds)}.`
    case "Forbidden":
      return `Not sent: you may not write here (${error.message})`
    case "Unauthenticated":
      return `Not sent: the access token was refused (${error.message})`
    case "Conflict":
      return `Not sent: ${error.message}`
    case "DependencyUnavailable":
    case "Timeout":
      return "Not sent: the server cannot take messages right now. Try again in a moment."
    case "Unexpected":
      return "Not sent: the server failed to take the message."
    case "RpcClientError":
      return "Not sent: no connection to the server. Try again once it says Connected."
  }
}

const formatSeconds = (seconds: number): string => seconds === 1 ? "1 second" : `${seconds} seconds`

/** Why a scope could not be joined (or its history read), in words. */
export const joinErrorText = (
  error: { readonly _tag: string; readonly message?: unknown },
  scopeName: string
): string => {
  if (error._tag === "ValidationError" && "errors" in error && Array.isArray(error.errors)) {
    const fields = (error.errors as ReadonlyArray<{ readonly field: string; readonly message: string }>)
      .map(({ field, message }) => `${field} ${message}`)
    return `Cannot join ${scopeName}: ${fields.join("; ")}`
  }
  if (error._tag === "RateLimited" && "retryAfterSeconds" in error && typeof error.retryAfterSeconds === "number") {
    return `Cannot join ${scopeName} yet: too many requests. Try again in ${formatSeconds(error.retryAfterSeconds)}.`
  }
  if (error._tag === "RpcClientError") return `Cannot join ${scopeName}: no connection to the server.`
  const detail = typeof error.message === "string" ? error.message : error._tag
  return error._tag === "Forbidden"
    ? `Cannot join ${scopeName}: not allowed (${detail})`
    : `Cannot join ${scopeName}: ${detail}`
}

/** How a scope is named in the list: a channel by its id, a DM by the other member. */
export const scopeTitle = (scope: ScopeRef, me: string | undefined): string => {
  if (scope.scopeType === 0) return `#${scope.scopeId}`
  return Option.match(directMessageMembers(scope.scopeId), {
    onNone: () => scope.scopeId,
    onSome: ([a, b]) => `@${a === me ? b : a}`
  })
}

/** The scopes the page rejoins on the next visit, in the order they were joined. */
export const StoredScopes = Schema.parseJson(
  Schema.Array(Schema.Struct({ scopeType: ChatScopeType, scopeId: Schema.String }))
)

/** What was stored, or nothing for a value this page cannot read (another version wrote it, or a person). */
export const readStoredScopes = (text: string | null): ReadonlyArray<ScopeRef> =>
  text === null ? [] : Either.getOrElse(Schema.decodeUnknownEither(StoredScopes)(text), () => [])

export const writeStoredScopes = (scopes: ReadonlyArray<ScopeRef>): string =>
  Schema.encodeSync(StoredScopes)(scopes.map(({ scopeType, scopeId }) => ({ scopeType, scopeId })))

const TokenClaims = Schema.Struct({ sub: Schema.optional(Schema.String), user_id: Schema.optional(Schema.String) })
const decodeClaims = Schema.decodeUnknownOption(Schema.parseJson(TokenClaims))

/**
 * The user a JWT names (`sub`, then `user_id`, as the server reads it), to name DMs and one's own
 * messages. Read without checking the signature: the server does that; this only labels the page.
 */
export const tokenUser = (token: string): Option.Option<string> => {
  const payload = token.trim().split(".")[1]
  if (payload === undefined || !/^[A-Za-z0-9_-]*$/u.test(payload)) return Option.none()
  const base64 = payload.replaceAll("-", "+").replaceAll("_", "/")
  const binary = Either.try(() => atob(base64.padEnd(base64.length + (4 - (base64.length % 4)) % 4, "=")))
  if (Either.isLeft(binary)) return Option.none()
  const bytes = Uint8Array.from(binary.right, (char) => char.charCodeAt(0))
  const json = Either.try(() => new TextDecoder("utf-8", { fatal: true }).decode(bytes))
  if (Either.isLeft(json)) return Option.none()
  return Option.flatMap(decodeClaims(json.right), (claims) => {
    const user = claims.sub ?? claims.user_id
    return user === undefined || user.length === 0 ? Option.none() : Option.some(user)
  })
}

/** A message's time as the log shows it (hours and minutes in the reader's zone), and in full for its title. */
export const messageTime = (createdAtUtc: Date): { readonly short: string; readonly full: string } => ({
  short: createdAtUtc.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
  full: createdAtUtc.toLocaleString()
})

/** How often the page asks who is online in the scope it shows. */
export const PRESENCE_REFRESH = Duration.seconds(3)

/** Messages per history page: the first view of a scope and each "Load older". */
export const HISTORY_PAGE_SIZE = 50
