import { Schema } from "effect"

/** 0 = Channel, 1 = DirectMessage — the numeric wire values of the original ChatScopeTypeEnum. */
export const ChatScopeType = Schema.Literal(0, 1).annotations({
  identifier: "ChatScopeType",
  description: "0 = Channel, 1 = DirectMessage"
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

/**
 * A chat message as it travels through the broker, wire-compatible with the original
 * design's ChatEventDto (camelCase JSON, scopeType as a number, createdAtUtc as ISO-8601).
 */
export class ChatEvent extends Schema.Class<ChatEvent>("ChatEvent")({
  messageId: Schema.UUID,
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  senderId: Schema.String,
  text: Schema.String,
  createdAtUtc: Schema.Date,
  originPodId: Schema.String
}) {}

/** The JSON text of a ChatEvent, as produced to and consumed from the broker. */
export const ChatEventJson = Schema.parseJson(ChatEvent)

/** What a client sends: the sender comes from its identity, never from the payload. */
export class ChatSendRequest extends Schema.Class<ChatSendRequest>("ChatSendRequest")({
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  text: Schema.String
}) {}

/** Where an event sits in the log. A scope lives on one partition, so offsets order a scope. */
export const StreamPosition = Schema.Struct({
  partition: Schema.NonNegativeInt,
  offset: Schema.NonNegativeInt
}).annotations({ identifier: "StreamPosition" })
export type StreamPosition = typeof StreamPosition.Type

/** A ChatEvent together with its place in the log: the result of a send and the unit of delivery. */
export class EnrichedChatEvent extends Schema.Class<EnrichedChatEvent>("EnrichedChatEvent")({
  chatEvent: ChatEvent,
  partition: Schema.NonNegativeInt,
  offset: Schema.NonNegativeInt
}) {}

export const positionOf = (event: EnrichedChatEvent): StreamPosition => ({
  partition: event.partition,
  offset: event.offset
})
