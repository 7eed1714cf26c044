import { Either, ParseResult, Schema } from "effect"

/** What a request with another scopeType is told. */
export const SCOPE_TYPE_MESSAGE = "must be 0 (channel) or 1 (direct message)"

/** 0 = Channel, 1 = DirectMessage — the numeric wire values of the original ChatScopeTypeEnum. */
export const ChatScopeType = Schema.Literal(0, 1).annotations({
  identifier: "ChatScopeType",
  description: "0 = Channel, 1 = DirectMessage",
  // one message for the union, instead of one "Expected 0 … Expected 1 …" per member
  message: () => ({ message: SCOPE_TYPE_MESSAGE, override: true })
})
export type ChatScopeType = typeof ChatScopeType.Type

export const ScopeTypes = { Channel: 0, DirectMessage: 1 } as const satisfies Record<string, ChatScopeType>

/** A scope as clients name it: its type and its id. */
export const ScopeRef = Schema.Struct({
  scopeType: ChatScopeType,
  scopeId: Schema.String
})
export type ScopeRef = typeof ScopeRef.Type

/** The broker key and the history partition key of a scope: `{scopeType}:{scopeId}`. */
export const scopeKey = (scope: ScopeRef): string => `${scope.scopeType}:${scope.scopeId}`

const skipsValidation = (options: Schema.MakeOptions | undefined): boolean =>
  typeof options === "boolean" ? options : options?.disableValidation ?? false

/**
 * The validation a Schema.Class constructor runs, compiled once. Effect's own constructor derives
 * the fields' type-side AST on every call, and when a field is a transformation (Schema.Date, or a
 * class) that AST is a new object each time, so the validator is recompiled per instance (~60 µs).
 * The title keeps the constructor's error messages as they were.
 */
const constructorValidator = <Fields extends Schema.Struct.Fields>(identifier: string, fields: Fields) =>
  ParseResult.validateSync(Schema.Struct(fields).annotations({ title: `${identifier} (Constructor)` }))

const chatEventFields = {
  messageId: Schema.UUID,
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  senderId: Schema.String,
  text: Schema.String,
  createdAtUtc: Schema.Date,
  originPodId: Schema.String
}
const validateChatEvent = constructorValidator("ChatEvent", chatEventFields)

// ChatEvent's private JSON, for encodeChatEventJson (set once, by the class's static block)
let jsonOf: (event: ChatEvent) => string | undefined
let keepJson: (event: ChatEvent, json: string) => void

/**
 * A chat message as it travels through the broker, wire-compatible with the original
 * design's ChatEventDto (camelCase JSON, scopeType as a number, createdAtUtc as ISO-8601).
 */
export class ChatEvent extends Schema.Class<ChatEvent>("ChatEvent")(chatEventFields) {
  /**
   * The event's JSON once encodeChatEventJson has made it: a send's event is encoded for the log,
   * for the send's answer and for its fan-out, the same text each time. Private, so not one of
   * the fields (equality, hashing and encoding never see it); the fields never change.
   */
  #json: string | undefined = undefined

  static {
    jsonOf = (event) => event.#json
    keepJson = (event, json) => {
      event.#json = json
    }
  }

  constructor(props: Schema.Struct.Constructor<typeof chatEventFields>, options?: Schema.MakeOptions) {
    super(skipsValidation(options) ? props : validateChatEvent(props), true)
  }
}

/** The JSON text of a ChatEvent, as produced to and consumed from the broker. */
export const ChatEventJson = Schema.parseJson(ChatEvent)

const encodeChatEventJsonWithSchema = Schema.encodeEither(ChatEventJson)

// Schema.UUID's pattern.
const uuidPattern = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/i

/**
 * `Schema.encodeEither(ChatEventJson)`, written out for the send path: the same text, field for field
 * in the schema's order (a property test holds the two equal), at a fraction of the cost. Anything
 * the fast path cannot vouch for (an instance made without validation) goes through the schema.
 */
export const encodeChatEventJson = (event: ChatEvent): Either.Either<string, ParseResult.ParseError> => {
  const known = jsonOf(event)
  if (known !== undefined) return Either.right(known)
  if (
    Number.isNaN(event.createdAtUtc.getTime()) || !uuidPattern.test(event.messageId) ||
    // an instance made without validation may hold anything
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
    (event.scopeType !== 0 && event.scopeType !== 1)
  ) return encodeChatEventJsonWithSchema(event)
  // A UUID, a number and an ISO date need no escaping; the free-form strings go through JSON.stringify.
  const json =
    `{"messageId":"${event.messageId}","scopeType":${event.scopeType},"scopeId":${JSON.stringify(event.scopeId)},` +
    `"senderId":${JSON.stringify(event.senderId)},"text":${JSON.stringify(event.text)},` +
    `"createdAtUtc":"${event.createdAtUtc.toISOString()}","originPodId":${JSON.stringify(event.originPodId)}}`
  keepJson(event, json)
  return Either.right(json)
}

const decodeChatEventJsonWithSchema = Schema.decodeEither(ChatEventJson)

const isString = (value: unknown): value is string => typeof value === "string"

/**
 * `Schema.decodeEither(ChatEventJson)` for the consumers: a record of the log is parsed once and, when
 * every field has the type the schema wants (the common case: our own producers wrote it), made into
 * a ChatEvent without running the schema; anything else goes through the schema, which then decides
 * (and names what is wrong). Extra fields are ignored, as the schema does.
 */
export const decodeChatEventJson = (text: string): Either.Either<ChatEvent, ParseResult.ParseError> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return decodeChatEventJsonWithSchema(text)
  }
  if (typeof json !== "object" || json === null) return decodeChatEventJsonWithSchema(text)
  const { createdAtUtc, messageId, originPodId, scopeId, scopeType, senderId, text: body } = json as Record<
    string,
    unknown
  >
  if (
    !isString(messageId) || !uuidPattern.test(messageId) || (scopeType !== 0 && scopeType !== 1) ||
    !isString(scopeId) ||
    !isString(senderId) || !isString(body) || !isString(createdAtUtc) || !isString(originPodId)
  ) return decodeChatEventJsonWithSchema(text)
  const createdAt = new Date(createdAtUtc)
  if (Number.isNaN(createdAt.getTime())) return decodeChatEventJsonWithSchema(text)
  return Either.right(
    new ChatEvent({ messageId, scopeType, scopeId, senderId, text: body, createdAtUtc: createdAt, originPodId }, true)
  )
}

/**
 * A send's idempotency key, chosen by the client (the SDK sends a UUID): a repeat of it by the same
 * sender within the idempotency window returns the first send's EnrichedChatEvent and writes nothing.
 * Checked by ChatDomainPolicy with the send (1..128 characters, no control or format characters).
 */
export const ClientMessageId = Schema.String.annotations({
  identifier: "ClientMessageId",
  description: "Idempotency key of the send, chosen by the client (e.g. a UUID): 1..128 characters, no control " +
    "or invisible format characters. A repeat by the same sender within the idempotency window " +
    "(CHATIFY__CHAT__IDEMPOTENCYWINDOWSECONDS, default 300 s) returns the original EnrichedChatEvent and " +
    "writes nothing; reused for a different message it is a 409 Conflict."
})

/**
 * What a client sends: the sender comes from its identity, never from the payload. A payload wrong
 * in several fields is refused naming each of them (parseOptions), not only the first.
 */
export class ChatSendRequest extends Schema.Class<ChatSendRequest>("ChatSendRequest")(
  Schema.Struct({
    scopeType: ChatScopeType,
    scopeId: Schema.String,
    text: Schema.String,
    clientMessageId: Schema.optional(ClientMessageId)
  }).annotations({ parseOptions: { errors: "all" } })
) {}

/** Where an event sits in the log. A scope lives on one partition, so offsets order a scope. */
export const StreamPosition = Schema.Struct({
  partition: Schema.NonNegativeInt,
  offset: Schema.NonNegativeInt
}).annotations({ identifier: "StreamPosition" })
export type StreamPosition = typeof StreamPosition.Type

const enrichedChatEventFields = {
  chatEvent: ChatEvent,
  partition: Schema.NonNegativeInt,
  offset: Schema.NonNegativeInt
}
const validateEnrichedChatEvent = constructorValidator("EnrichedChatEvent", enrichedChatEventFields)

/** A ChatEvent together with its place in the log: the result of a send and the unit of delivery. */
export class EnrichedChatEvent extends Schema.Class<EnrichedChatEvent>("EnrichedChatEvent")(enrichedChatEventFields) {
  constructor(props: Schema.Struct.Constructor<typeof enrichedChatEventFields>, options?: Schema.MakeOptions) {
    super(skipsValidation(options) ? props : validateEnrichedChatEvent(props), true)
  }
}

export const positionOf = (event: EnrichedChatEvent): StreamPosition => ({
  partition: event.partition,
  offset: event.offset
})
