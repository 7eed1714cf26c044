import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc, Schema } from "effect"
import { Protocol } from "../src/signalr/index.js"

const numRuns = 200
const MAX = 1024 * 1024

const jsonArgument = fc.jsonValue({ maxDepth: 3 })
const id = fc.string({ minLength: 1, maxLength: 12 })
const headers = fc.dictionary(
  fc.string({ maxLength: 8 }).filter((k) => k !== "__proto__"),
  fc.string({ maxLength: 8 }),
  { maxKeys: 3 }
)

/** Valid hub messages as a client could send them (JSON values only). */
const hubMessage: fc.Arbitrary<Protocol.HubMessage> = fc.oneof(
  fc.record(
    {
      type: fc.constant(Protocol.MessageType.Invocation),
      invocationId: id,
      target: id,
      arguments: fc.array(jsonArgument, { maxLength: 4 }),
      headers
    },
    { requiredKeys: ["type", "target", "arguments"] }
  ),
  fc.record({ type: fc.constant(Protocol.MessageType.StreamItem), invocationId: fc.string(), item: jsonArgument }),
  fc.record(
    {
      type: fc.constant(Protocol.MessageType.Completion),
      invocationId: fc.string(),
      result: jsonArgument,
      error: fc.string()
    },
    { requiredKeys: ["type", "invocationId"] }
  ),
  fc.record({
    type: fc.constant(Protocol.MessageType.StreamInvocation),
    invocationId: id,
    target: id,
    arguments: fc.array(jsonArgument, { maxLength: 3 })
  }),
  fc.record({ type: fc.constant(Protocol.MessageType.CancelInvocation), invocationId: fc.string() }),
  fc.constant({ type: Protocol.MessageType.Ping }),
  fc.record(
    { type: fc.constant(Protocol.MessageType.Close), error: fc.string(), allowReconnect: fc.boolean() },
    { requiredKeys: ["type"] }
  )
)

const withoutSeparator = (text: fc.Arbitrary<string>) => text.map((s) => s.replaceAll(Protocol.RECORD_SEPARATOR, ""))

/** Splits `text` at the given (arbitrary) offsets. */
const splitAt = (text: string, cuts: ReadonlyArray<number>): Array<string> => {
  const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b)
  const chunks: Array<string> = []
  let from = 0
  for (const point of points) {
    chunks.push(text.slice(from, point))
    from = point
  }
  chunks.push(text.slice(from))
  return chunks
}

/** Feeds chunks through the framer; the first failure stops it. */
const frameAll = (chunks: ReadonlyArray<string>, max: number) => {
  let framer = Protocol.emptyFramer
  const records: Array<string> = []
  for (const chunk of chunks) {
    const framed = Protocol.pushText(framer, chunk, max)
    if (Either.isLeft(framed)) return Either.left(framed.left)
    framer = framed.right.framer
    records.push(...framed.right.records)
  }
  return Either.right({ records, framer })
}

describe("SignalR framing and parsing (pure)", () => {
  it.prop(
    "any split of a stream of valid records reassembles to the same messages",
    { messages: fc.array(hubMessage, { minLength: 1, maxLength: 12 }), cuts: fc.array(fc.nat(), { maxLength: 20 }) },
    ({ cuts, messages }) => {
      const stream = messages.map((m) => Either.getOrThrow(Protocol.writeMessage(m))).join("")
      const framed = Either.getOrThrow(frameAll(splitAt(stream, cuts), MAX))
      expect(framed.framer.pending).toBe("")
      const parsed = framed.records.map((r) => Either.getOrThrow(Protocol.parseMessage(r)))
      // what the wire carries: JSON drops nothing these messages hold, but normalises -0 and the like
      expect(parsed).toEqual(messages.map((m): unknown => JSON.parse(JSON.stringify(m))))
      expect(parsed.every(Schema.is(Protocol.HubMessage))).toBe(true)
    },
    { fastCheck: { numRuns } }
  )

  it.prop(
    "the hand-checked fast path for plain invocations parses exactly as the schema does",
    {
      json: fc.oneof(
        hubMessage,
        // near misses: a plain invocation with one field wrong, missing or added
        fc.tuple(
          fc.record({
            type: fc.constant(1),
            invocationId: id,
            target: id,
            arguments: fc.array(jsonArgument, { maxLength: 3 })
          }),
          fc.constantFrom("type", "invocationId", "target", "arguments", "streamIds", "headers", "extra"),
          fc.constantFrom<unknown>(undefined, "", "1", 1, 4, null, [], {}, ["s"], { h: "v" }, { h: 5 })
        ).map(([invocation, field, value]) => {
          const mutated: Record<string, unknown> = { ...invocation }
          // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- the property removes the field it drew
          if (value === undefined) delete mutated[field]
          else mutated[field] = value
          return mutated
        }),
        fc.jsonValue({ maxDepth: 2 })
      )
    },
    ({ json }) => {
      const record = JSON.stringify(json)
      const viaSchema = Either.mapLeft(
        Schema.decodeUnknownEither(Schema.parseJson(Protocol.HubMessage))(record),
        () => "invalid"
      )
      const parsed = Either.mapLeft(Protocol.parseMessage(record), () => "invalid")
      expect(parsed).toEqual(viaSchema)
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "records spliced from JSON text are the records writeMessage writes for the same values",
    { invocationId: fc.string(), target: fc.string(), value: fc.jsonValue() },
    ({ invocationId, target, value }) => {
      const json = JSON.stringify(value)
      expect(Protocol.completionJsonRecord(invocationId, json)).toBe(
        Either.getOrThrow(Protocol.writeMessage({ type: Protocol.MessageType.Completion, invocationId, result: value }))
      )
      expect(Protocol.invocationJsonRecord(target, json)).toBe(
        Either.getOrThrow(Protocol.writeMessage({ type: Protocol.MessageType.Invocation, target, arguments: [value] }))
      )
    },
    { fastCheck: { numRuns } }
  )

  it.prop(
    "several records per frame and records split across frames come out in order, the tail kept pending",
    {
      records: fc.array(withoutSeparator(fc.string({ unit: "grapheme" })), { maxLength: 10 }),
      tail: withoutSeparator(fc.string({ unit: "grapheme", maxLength: 20 })),
      cuts: fc.array(fc.nat(), { maxLength: 10 })
    },
    ({ cuts, records, tail }) => {
      const stream = records.map((r) => r + Protocol.RECORD_SEPARATOR).join("") + tail
      const framed = Either.getOrThrow(frameAll(splitAt(stream, cuts), MAX))
      expect(framed.records).toEqual(records)
      expect(framed.framer.pending).toBe(tail)
      expect(framed.framer.pendingBytes).toBe(new TextEncoder().encode(tail).length)
    },
    { fastCheck: { numRuns } }
  )

  it.prop(
    "arbitrary garbage never throws: every record parses or fails with a typed MalformedMessage",
    {
      garbage: fc.oneof(
        fc.string({ unit: "binary" }),
        fc.string({ unit: "grapheme-ascii" }),
        fc.jsonValue().map((v) => JSON.stringify(v)),
        fc.constantFrom(
          "{\"type\":1}",
          "{\"type\":3,\"invocationId\":5}",
          "null",
          "[]",
          "{\"type\":\"1\"}",
          "{\"type\":99}"
        )
      ),
      cuts: fc.array(fc.nat(), { maxLength: 6 })
    },
    ({ cuts, garbage }) => {
      const framed = frameAll(splitAt(garbage + Protocol.RECORD_SEPARATOR, cuts), MAX)
      const records = Either.getOrThrow(framed).records
      for (const record of records) {
        const message = Protocol.parseMessage(record)
        if (Either.isLeft(message)) expect(message.left).toBeInstanceOf(Protocol.MalformedMessage)
        else expect(Schema.is(Protocol.HubMessage)(message.right)).toBe(true)
        const handshake = Protocol.parseHandshake(record)
        if (Either.isLeft(handshake)) expect(handshake.left).toBeInstanceOf(Protocol.MalformedMessage)
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "a record over the maximum is refused however it is split, one at the maximum is accepted",
    {
      size: fc.integer({ min: 1, max: 300 }),
      over: fc.integer({ min: 1, max: 50 }),
      wide: fc.boolean(),
      cuts: fc.array(fc.nat(), { maxLength: 8 })
    },
    ({ cuts, over, size, wide }) => {
      // "é" is 2 bytes in UTF-8: the limit counts bytes, not characters
      const unit = wide ? "é" : "a"
      const max = size * (wide ? 2 : 1)
      const atMax = unit.repeat(size)
      const ok = Either.getOrThrow(frameAll(splitAt(atMax + Protocol.RECORD_SEPARATOR, cuts), max))
      expect(ok.records).toEqual([atMax])
      const tooLarge = unit.repeat(size + over)
      const refused = frameAll(splitAt(tooLarge + Protocol.RECORD_SEPARATOR, cuts), max)
      expect(Either.isLeft(refused) && refused.left).toBeInstanceOf(Protocol.RecordTooLarge)
      // without its separator too: a pending record may not grow past the maximum either
      const pending = frameAll(splitAt(tooLarge, cuts), max)
      expect(Either.isLeft(pending)).toBe(true)
    },
    { fastCheck: { numRuns } }
  )

  it.prop("utf8Length agrees with TextEncoder", { text: fc.string({ unit: "grapheme" }) }, ({ text }) => {
    expect(Protocol.utf8Length(text)).toBe(new TextEncoder().encode(text).length)
  }, { fastCheck: { numRuns } })

  it("handshakes: json versions 0 to 2 accepted; other protocols and versions refused with a reason", () => {
    const check = (record: string) =>
      Either.match(Protocol.parseHandshake(record), { onLeft: (e) => e.message, onRight: Protocol.checkHandshake })
    expect(check("{\"protocol\":\"json\",\"version\":1}")).toBeUndefined()
    expect(check("{\"protocol\":\"json\",\"version\":2}")).toBeUndefined()
    expect(check("{\"protocol\":\"messagepack\",\"version\":1}")).toBe("The protocol 'messagepack' is not supported.")
    expect(check("{\"protocol\":\"json\",\"version\":3}")).toBe(
      "The server does not support version 3 of the 'json' protocol."
    )
    expect(check("{\"protocol\":\"json\"}")).toContain("version: is missing")
    expect(check("not json")).toBe("the message is not valid JSON")
    expect(Protocol.writeHandshakeResponse(undefined)).toBe("{}\u001e")
    expect(Protocol.writeHandshakeResponse("nope")).toBe("{\"error\":\"nope\"}\u001e")
  })

  it("malformed messages say what is wrong", () => {
    const reason = (record: string) =>
      Either.match(Protocol.parseMessage(record), { onLeft: (e) => e.reason, onRight: () => "ok" })
    expect(reason("{")).toBe("the message is not valid JSON")
    expect(reason("[1]")).toBe("the message is not an object with a numeric 'type'")
    expect(reason("{\"type\":42}")).toBe("unknown message type 42")
    expect(reason("{\"type\":1,\"target\":\"x\"}")).toBe("invalid message of type 1: arguments: is missing")
    expect(reason("{\"type\":6,\"extra\":true}")).toBe("ok")
  })

  it("results that are not JSON are a typed failure, not an exception", () => {
    const written = Protocol.writeMessage({ type: 3, invocationId: "1", result: 1n })
    expect(Either.isLeft(written) && written.left).toBeInstanceOf(Protocol.UnencodableMessage)
  })
})
