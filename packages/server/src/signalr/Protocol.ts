/**
 * The SignalR JSON hub protocol as pure functions: record framing (0x1E separators), the handshake
 * and the hub messages. No I/O and no exceptions: every failure is a typed value, so the connection
 * decides what a bad frame costs (the connection, never the process).
 */
import { Data, Either, ParseResult, Schema } from "effect"

export const RECORD_SEPARATOR = "\u001e"

/** The message types of the hub protocol (HubProtocol.md). */
export const MessageType = {
  Invocation: 1,
  StreamItem: 2,
  Completion: 3,
  StreamInvocation: 4,
  CancelInvocation: 5,
  Ping: 6,
  Close: 7,
  Ack: 8,
  Sequence: 9
} as const

/** A record that grew past the configured maximum before its separator arrived. */
export class RecordTooLarge extends Data.TaggedError("RecordTooLarge")<{ readonly maxBytes: number }> {
  override get message() {
    return `a message exceeded the maximum size of ${this.maxBytes} bytes`
  }
}

/** A record that is not a valid handshake or hub message. `reason` describes the input, never internals. */
export class MalformedMessage extends Data.TaggedError("MalformedMessage")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

/** An outgoing message that cannot be written as JSON (e.g. a result holding a BigInt). */
export class UnencodableMessage extends Data.TaggedError("UnencodableMessage")<{ readonly reason: string }> {}

// ---------------------------------------------------------------------------------------------
// Framing

/** The partial record carried between frames, with its size in UTF-8 bytes. */
export interface Framer {
  readonly pending: string
  readonly pendingBytes: number
}

export const emptyFramer: Framer = { pending: "", pendingBytes: 0 }

export interface Framed {
  readonly framer: Framer
  /** Complete records, in order, without their separators. */
  readonly records: ReadonlyArray<string>
}

const isHigh = (code: number) => code >= 0xd800 && code <= 0xdbff
const isLow = (code: number) => code >= 0xdc00 && code <= 0xdfff

/** UTF-8 length without allocating; a surrogate pair is 4 bytes, a lone surrogate 3 (U+FFFD). */
export const utf8Length = (text: string): number => {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x80) bytes += 1
    else if (code < 0x800) bytes += 2
    else if (isHigh(code) && i + 1 < text.length) {
      if (isLow(text.charCodeAt(i + 1))) {
        bytes += 4
        i++
      } else bytes += 3
    } else bytes += 3
  }
  return bytes
}

/** The bytes `piece` adds after `pending`: a surrogate pair split between them is 4 bytes, not 3 + 3. */
const addedBytes = (pending: string, piece: string): number =>
  utf8Length(piece) -
  (pending.length > 0 && piece.length > 0 && isHigh(pending.charCodeAt(pending.length - 1)) &&
      isLow(piece.charCodeAt(0))
    ? 2
    : 0)

/**
 * Adds a frame's text to the partial record: returns the records it completes and the new partial
 * record. Several records per frame and records split across frames are both normal; a record
 * (complete or still pending) larger than `maxRecordBytes` is refused as soon as it is seen.
 */
export const pushText = (
  framer: Framer,
  chunk: string,
  maxRecordBytes: number
): Either.Either<Framed, RecordTooLarge> => {
  const records: Array<string> = []
  let pending = framer.pending
  let pendingBytes = framer.pendingBytes
  let start = 0
  let separator = chunk.indexOf(RECORD_SEPARATOR, start)
  while (separator >= 0) {
    const piece = chunk.slice(start, separator)
    const bytes = pendingBytes + addedBytes(pending, piece)
    if (bytes > maxRecordBytes) return Either.left(new RecordTooLarge({ maxBytes: maxRecordBytes }))
    records.push(pending + piece)
    pending = ""
    pendingBytes = 0
    start = separator + 1
    separator = chunk.indexOf(RECORD_SEPARATOR, start)
  }
  const rest = chunk.slice(start)
  const restBytes = pendingBytes + addedBytes(pending, rest)
  if (restBytes > maxRecordBytes) return Either.left(new RecordTooLarge({ maxBytes: maxRecordBytes }))
  return Either.right({ framer: { pending: pending + rest, pendingBytes: restBytes }, records })
}

// ---------------------------------------------------------------------------------------------
// Messages

const optional = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

const Headers = Schema.Record({ key: Schema.String, value: Schema.String })

export const InvocationMessage = Schema.Struct({
  type: Schema.Literal(MessageType.Invocation),
  invocationId: optional(Schema.NonEmptyString),
  target: Schema.NonEmptyString,
  arguments: Schema.Array(Schema.Unknown),
  streamIds: optional(Schema.Array(Schema.String)),
  headers: optional(Headers)
})
export type InvocationMessage = typeof InvocationMessage.Type

export const StreamItemMessage = Schema.Struct({
  type: Schema.Literal(MessageType.StreamItem),
  invocationId: Schema.String,
  item: optional(Schema.Unknown),
  headers: optional(Headers)
})

export const CompletionMessage = Schema.Struct({
  type: Schema.Literal(MessageType.Completion),
  invocationId: Schema.String,
  result: optional(Schema.Unknown),
  error: optional(Schema.String),
  headers: optional(Headers)
})
export type CompletionMessage = typeof CompletionMessage.Type

export const StreamInvocationMessage = Schema.Struct({
  type: Schema.Literal(MessageType.StreamInvocation),
  invocationId: Schema.NonEmptyString,
  target: Schema.NonEmptyString,
  arguments: Schema.Array(Schema.Unknown),
  streamIds: optional(Schema.Array(Schema.String)),
  headers: optional(Headers)
})

export const CancelInvocationMessage = Schema.Struct({
  type: Schema.Literal(MessageType.CancelInvocation),
  invocationId: Schema.String,
  headers: optional(Headers)
})

export const PingMessage = Schema.Struct({ type: Schema.Literal(MessageType.Ping) })

export const CloseMessage = Schema.Struct({
  type: Schema.Literal(MessageType.Close),
  error: optional(Schema.String),
  allowReconnect: optional(Schema.Boolean)
})
export type CloseMessage = typeof CloseMessage.Type

// Ack and Sequence belong to stateful reconnect, which negotiate never offers; parsed to be ignored.
export const AckMessage = Schema.Struct({ type: Schema.Literal(MessageType.Ack), sequenceId: Schema.Number })
export const SequenceMessage = Schema.Struct({ type: Schema.Literal(MessageType.Sequence), sequenceId: Schema.Number })

export const HubMessage = Schema.Union(
  InvocationMessage,
  StreamItemMessage,
  CompletionMessage,
  StreamInvocationMessage,
  CancelInvocationMessage,
  PingMessage,
  CloseMessage,
  AckMessage,
  SequenceMessage
)
export type HubMessage = typeof HubMessage.Type

/** What a client sends first: `{"protocol":"json","version":1}`. */
export const HandshakeRequest = Schema.Struct({ protocol: Schema.String, version: Schema.Number })
export type HandshakeRequest = typeof HandshakeRequest.Type

const decodeTyped = Schema.decodeUnknownEither(Schema.Struct({ type: Schema.Number }))
const decodeHubMessage = Schema.decodeUnknownEither(HubMessage)
const decodeHandshake = Schema.decodeUnknownEither(HandshakeRequest)
const knownTypes: ReadonlySet<number> = new Set(Object.values(MessageType))

/** The first issue of a decode failure as `path: message`, short enough to send to a client. */
const describe = (error: ParseResult.ParseError): string => {
  const [first] = ParseResult.ArrayFormatter.formatErrorSync(error)
  if (first === undefined) return "does not match the expected shape"
  return first.path.length === 0 ? first.message : `${first.path.map(String).join(".")}: ${first.message}`
}

// JSON.parse itself: the schema's parseJson wraps the same call in several layers of ParseResult.
const parseJson = (record: string): Either.Either<unknown, MalformedMessage> =>
  Either.try({
    try: (): unknown => JSON.parse(record),
    catch: () => new MalformedMessage({ reason: "the message is not valid JSON" })
  })

// eslint-disable-next-line @typescript-eslint/unbound-method -- only ever called as hasOwn.call(object, key)
const hasOwn = Object.prototype.hasOwnProperty

/**
 * The common case, an Invocation with no streams and no headers, checked by hand: what the schema
 * would decode it to, or undefined to let the schema decide (and explain any problem). A send is
 * one of these; the schema's decode costs several times the rest of its parsing.
 */
const plainInvocation = (json: unknown): InvocationMessage | undefined => {
  if (typeof json !== "object" || json === null) return undefined
  const { arguments: args, invocationId, target, type } = json as Record<string, unknown>
  if (type !== MessageType.Invocation || typeof target !== "string" || target === "" || !Array.isArray(args)) {
    return undefined
  }
  if (hasOwn.call(json, "streamIds") || hasOwn.call(json, "headers")) return undefined
  if (invocationId === undefined) {
    return hasOwn.call(json, "invocationId")
      ? undefined
      : { type, target, arguments: args }
  }
  return typeof invocationId === "string" && invocationId !== ""
    ? { type, invocationId, target, arguments: args }
    : undefined
}

/** Parses one record (without its separator) into a hub message. */
export const parseMessage = (record: string): Either.Either<HubMessage, MalformedMessage> =>
  Either.flatMap(parseJson(record), (json) => {
    const invocation = plainInvocation(json)
    return invocation !== undefined ? Either.right(invocation) : decodeMessage(json)
  })

/** Every message the fast path leaves, through the schema, which names what is wrong. */
const decodeMessage = (json: unknown): Either.Either<HubMessage, MalformedMessage> =>
  Either.gen(function*() {
    const typed = yield* Either.mapLeft(
      decodeTyped(json),
      () => new MalformedMessage({ reason: "the message is not an object with a numeric 'type'" })
    )
    if (!knownTypes.has(typed.type)) {
      return yield* Either.left(new MalformedMessage({ reason: `unknown message type ${typed.type}` }))
    }
    return yield* Either.mapLeft(
      decodeHubMessage(json),
      (error) => new MalformedMessage({ reason: `invalid message of type ${typed.type}: ${describe(error)}` })
    )
  })

/** Parses the handshake request record; whether its protocol and version are supported is the caller's call. */
export const parseHandshake = (record: string): Either.Either<HandshakeRequest, MalformedMessage> =>
  Either.flatMap(parseJson(record), (json) =>
    Either.mapLeft(
      decodeHandshake(json),
      (error) => new MalformedMessage({ reason: `invalid handshake request: ${describe(error)}` })
    ))

/** Parses every record of a frame: the first malformed one stops the lot (the connection closes). */
export const parseMessages = (
  records: ReadonlyArray<string>
): Either.Either<ReadonlyArray<HubMessage>, MalformedMessage> => Either.all(records.map(parseMessage))

// ---------------------------------------------------------------------------------------------
// Writing

const stringify = (value: unknown): Either.Either<string, UnencodableMessage> =>
  Either.try({
    try: () => JSON.stringify(value) + RECORD_SEPARATOR,
    catch: (error) => new UnencodableMessage({ reason: error instanceof Error ? error.message : String(error) })
  })

/** One message as a record (JSON + 0x1E). */
export const writeMessage = (message: HubMessage): Either.Either<string, UnencodableMessage> => stringify(message)

/** The handshake response: `{}` when accepted, `{"error": …}` when refused. */
export const writeHandshakeResponse = (error: string | undefined): string =>
  JSON.stringify(error === undefined ? {} : { error }) + RECORD_SEPARATOR

/** A successful Completion whose result is JSON text already (spliced in as it is). */
export const completionJsonRecord = (invocationId: string, resultJson: string): string =>
  `{"type":${MessageType.Completion},"invocationId":${
    JSON.stringify(invocationId)
  },"result":${resultJson}}${RECORD_SEPARATOR}`

/** A client-method Invocation whose single argument is JSON text already. */
export const invocationJsonRecord = (target: string, argumentJson: string): string =>
  `{"type":${MessageType.Invocation},"target":${
    JSON.stringify(target)
  },"arguments":[${argumentJson}]}${RECORD_SEPARATOR}`

/** A failed Completion; strings always serialize, so this needs no Either. */
export const completionErrorRecord = (invocationId: string, error: string): string =>
  JSON.stringify({ type: MessageType.Completion, invocationId, error }) + RECORD_SEPARATOR

export const pingRecord: string = JSON.stringify({ type: MessageType.Ping }) + RECORD_SEPARATOR

export const closeRecord = (
  options: { readonly error?: string | undefined; readonly allowReconnect?: boolean }
): string =>
  JSON.stringify({
    type: MessageType.Close,
    ...(options.error === undefined ? {} : { error: options.error }),
    ...(options.allowReconnect === true ? { allowReconnect: true } : {})
  }) + RECORD_SEPARATOR

/** The protocols and versions this server speaks: JSON, versions up to 2 (the JS client asks for 2). */
export const checkHandshake = (request: HandshakeRequest): string | undefined => {
  if (request.protocol !== "json") return `The protocol '${request.protocol}' is not supported.`
  if (!Number.isInteger(request.version) || request.version < 0 || request.version > 2) {
    return `The server does not support version ${request.version} of the 'json' protocol.`
  }
  return undefined
}
