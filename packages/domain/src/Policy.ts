import { Either, Option, Schema } from "effect"
import { type ChatScopeType, type ScopeRef, ScopeTypes } from "./ChatEvent.js"
import {
  canonicalDirectMessageScopeId,
  DIRECT_MESSAGE_PREFIX,
  looksLikeDirectMessageScopeId
} from "./DirectMessages.js"
import { type FieldError, ValidationError } from "./Errors.js"

/** The limits of the original ChatDomainPolicy; configuration with these defaults. */
export const PolicyLimits = Schema.Struct({
  maxIdLength: Schema.Int.pipe(Schema.positive()),
  maxTextLength: Schema.Int.pipe(Schema.positive())
})
export type PolicyLimits = typeof PolicyLimits.Type

export const defaultPolicyLimits: PolicyLimits = { maxIdLength: 256, maxTextLength: 4096 }

/** Lengths are counted in Unicode code points, so an emoji is one character, as a person counts. */
export const codePointLength = (s: string): number => {
  let n = 0
  for (const _ of s) n++
  return n
}

/** "U+202E": how a message names a character that cannot be shown. */
const codePointName = (character: string): string =>
  `U+${(character.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}`

// Cc (C0, DEL, C1) and lone surrogates: neither has a place in an identifier or survives storage as UTF-8.
const controlCharacter = /[\u0000-\u001F\u007F-\u009F]/u
const textControlCharacter = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/u
const loneSurrogate = /\p{Cs}/u
// Cf (format): invisible characters that change how the characters around them are shown — bidi
// controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C), zero-width characters
// (U+200B–U+200D, U+2060, U+FEFF), the soft hyphen, tags — so that two ids that look the same would
// name two scopes, or one id would show as another. Refused in ids; text keeps them (emoji sequences
// join with U+200D).
const formatCharacter = /\p{Cf}/u
const onlyWhitespace = /^\s*$/u

const checkId = (field: string, value: string, maxLength: number): ReadonlyArray<FieldError> => {
  if (value.length === 0) return [{ field, message: "must not be empty" }]
  if (onlyWhitespace.test(value)) return [{ field, message: "must not be whitespace only" }]
  if (loneSurrogate.test(value)) return [{ field, message: "must be well-formed Unicode" }]
  if (controlCharacter.test(value)) return [{ field, message: "must not contain control characters" }]
  const format = formatCharacter.exec(value)
  if (format !== null) {
    return [{
      field,
      message: "must not contain invisible format characters such as bidi controls or zero-width characters " +
        `(found ${codePointName(format[0])})`
    }]
  }
  if (codePointLength(value) > maxLength) {
    return [{ field, message: `must be at most ${maxLength} characters` }]
  }
  return []
}

/**
 * What the scope type says of the id: a channel id never starts with `dm:` (in any case), so no
 * channel can pass for a direct message; a direct-message id that starts with `dm:` is the
 * canonical one (directMessageScopeId), or the caller is told which one that is. Other ids of
 * scopeType 1 are left to the ScopeAuthorizer (the default one admits only canonical DM ids).
 */
const checkScopeKind = (scopeType: ChatScopeType, scopeId: string): ReadonlyArray<FieldError> => {
  const field = "scopeId"
  if (scopeType === ScopeTypes.Channel) {
    return looksLikeDirectMessageScopeId(scopeId)
      ? [{
        field,
        message: `must not start with "${DIRECT_MESSAGE_PREFIX}" for a channel (scopeType 0): ` +
          "that prefix is reserved for direct messages (scopeType 1)"
      }]
      : []
  }
  if (!scopeId.startsWith(DIRECT_MESSAGE_PREFIX)) return []
  return Option.match(canonicalDirectMessageScopeId(scopeId), {
    onNone: () => [{
      field,
      message: `must be a direct-message id "${DIRECT_MESSAGE_PREFIX}{member}:{member}" (each member percent-encoded)`
    }],
    onSome: (canonical) =>
      canonical === scopeId ? [] : [{
        field,
        message: `must be the canonical direct-message id ${JSON.stringify(canonical)} ` +
          "(the two members sorted, each percent-encoded; see directMessageScopeId)"
      }]
  })
}

/** A scope id and what its type says of it (checkScopeKind). */
const checkScope = (scopeType: ChatScopeType, scopeId: string, maxLength: number): ReadonlyArray<FieldError> => {
  const id = checkId("scopeId", scopeId, maxLength)
  return id.length > 0 ? id : checkScopeKind(scopeType, scopeId)
}

const checkText = (value: string, limits: PolicyLimits): ReadonlyArray<FieldError> => {
  const field = "text"
  if (value.length === 0) return [{ field, message: "must not be empty" }]
  if (onlyWhitespace.test(value)) return [{ field, message: "must not be whitespace only" }]
  if (loneSurrogate.test(value)) return [{ field, message: "must be well-formed Unicode" }]
  if (textControlCharacter.test(value)) {
    return [{ field, message: "must not contain control characters other than tab and line breaks" }]
  }
  if (codePointLength(value) > limits.maxTextLength) {
    return [{ field, message: `must be at most ${limits.maxTextLength} characters` }]
  }
  return []
}

const collect = <A>(value: A, errors: ReadonlyArray<FieldError>): Either.Either<A, ValidationError> => {
  const [first, ...rest] = errors
  return first === undefined ? Either.right(value) : Either.left(new ValidationError({ errors: [first, ...rest] }))
}

/**
 * The longest `clientMessageId` a send may carry, in code points: a UUID (what the SDK sends) is 36;
 * this leaves room for any client's own scheme while keeping every idempotency key small.
 */
export const MAX_CLIENT_MESSAGE_ID_LENGTH = 128

export interface SendCandidate {
  readonly senderId: string
  readonly scopeType: ChatScopeType
  readonly scopeId: string
  readonly text: string
  readonly originPodId: string
  /** The client's idempotency key: an id (1..MAX_CLIENT_MESSAGE_ID_LENGTH code points) when given. */
  readonly clientMessageId?: string | undefined
}

/** ChatDomainPolicy: every violation of a send, listed by field. */
export const validateSend = <A extends SendCandidate>(
  limits: PolicyLimits,
  candidate: A
): Either.Either<A, ValidationError> =>
  collect(candidate, [
    ...checkId("senderId", candidate.senderId, limits.maxIdLength),
    ...checkScope(candidate.scopeType, candidate.scopeId, limits.maxIdLength),
    ...checkText(candidate.text, limits),
    ...checkId("originPodId", candidate.originPodId, limits.maxIdLength),
    ...(candidate.clientMessageId === undefined
      ? []
      : checkId("clientMessageId", candidate.clientMessageId, MAX_CLIENT_MESSAGE_ID_LENGTH))
  ])

/** Scope ids on their own (subscribe, history, presence) follow the same rule as in a send. */
export const validateScopeId = (limits: PolicyLimits, scopeId: string): Either.Either<string, ValidationError> =>
  collect(scopeId, checkId("scopeId", scopeId, limits.maxIdLength))

/** A scope on its own (subscribe, history, presence): its id, and what its type says of it, as in a send. */
export const validateScope = <A extends ScopeRef>(limits: PolicyLimits, scope: A): Either.Either<A, ValidationError> =>
  collect(scope, checkScope(scope.scopeType, scope.scopeId, limits.maxIdLength))

export const isValidId = (limits: PolicyLimits, value: string): boolean =>
  checkId("id", value, limits.maxIdLength).length === 0
export const isValidText = (limits: PolicyLimits, value: string): boolean => checkText(value, limits).length === 0
