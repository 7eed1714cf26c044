import { describe, expect, it } from "@effect/vitest"
import { Either, Equal, FastCheck, Hash, Schema } from "effect"
import {
  ChatError,
  ChatEvent,
  ChatEventJson,
  ChatSendRequest,
  Conflict,
  DependencyUnavailable,
  EnrichedChatEvent,
  decodeChatEventJson,
  encodeChatEventJson,
  FieldError,
  Forbidden,
  HistoryCursor,
  HistoryCursorPosition,
  HistoryPage,
  HistoryQuery,
  NotFound,
  PolicyLimits,
  PresentUser,
  ProblemDetails,
  QueryError,
  RateLimited,
  ScopePresence,
  ScopeRef,
  ScopeTypes,
  SendError,
  SendPayload,
  StreamPosition,
  SubscribeError,
  Subscribed,
  SubscriptionItem,
  SubscriptionLagged,
  Timeout,
  Unauthenticated,
  Unexpected,
  ValidationError
} from "../src/index.js"

const numRuns = 150

/** Parses JSON text back into a plain value: the encoded side as it arrives from the wire. */
const viaJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value))

/**
 * For a schema whose encoded side is JSON: decode(encode(x)) equals x, and encoding what was decoded from
 * the wire JSON of x gives back exactly that JSON (the encoded form is a fixed point).
 */
const roundTrips = <A, I>(name: string, schema: Schema.Schema<A, I, never>) => {
  const encode = Schema.encodeSync(schema)
  const decode = Schema.decodeUnknownSync(schema)
  it.prop(`${name}: decode(encode(x)) equals x`, { x: schema }, ({ x }) => {
    const encoded = encode(x)
    const decoded = decode(encoded)
    expect(decoded).toEqual(x)
    expect(Schema.is(schema)(decoded)).toBe(true)
    // Also compare field by field through the encoded form: Effect's structural equality ignores an
    // error's `message`, which is a non-enumerable own property of every Schema.TaggedError.
    expect(encode(decoded)).toEqual(encoded)
  }, { fastCheck: { numRuns } })
  it.prop(`${name}: encode(decode(json)) is stable`, { x: schema }, ({ x }) => {
    const json = viaJson(encode(x))
    const once = encode(decode(json))
    expect(viaJson(once)).toEqual(json)
    expect(encode(decode(viaJson(once)))).toEqual(once)
  }, { fastCheck: { numRuns } })
}

const kcatJson =
  `{"messageId":"123e4567-e89b-12d3-a456-426614174000","scopeType":0,"scopeId":"general","senderId":"test-user",` +
  `"text":"Hello from kcat","createdAtUtc":"2026-01-15T10:30:00Z","originPodId":"test-pod"}`

describe("ChatEvent wire compatibility", () => {
  it("decodes the exact kcat example", () => {
    const event = Schema.decodeUnknownSync(ChatEventJson)(kcatJson)
    expect(event).toBeInstanceOf(ChatEvent)
    expect(event.messageId).toBe("123e4567-e89b-12d3-a456-426614174000")
    expect(event.scopeType).toBe(ScopeTypes.Channel)
    expect(event.scopeType).toBe(0)
    expect(event.scopeId).toBe("general")
    expect(event.senderId).toBe("test-user")
    expect(event.text).toBe("Hello from kcat")
    expect(event.createdAtUtc).toBeInstanceOf(Date)
    expect(event.createdAtUtc.getTime()).toBe(Date.UTC(2026, 0, 15, 10, 30, 0))
    expect(event.originPodId).toBe("test-pod")
  })

  it("encodes back to the original's camelCase keys, in order, with createdAtUtc as an ISO-8601 string", () => {
    const original = JSON.parse(kcatJson) as Record<string, unknown>
    const event = Schema.decodeUnknownSync(ChatEventJson)(kcatJson)
    const encodedText = Schema.encodeSync(ChatEventJson)(event)
    const encoded = JSON.parse(encodedText) as Record<string, unknown>
    expect(Object.keys(encoded)).toEqual(Object.keys(original))
    expect(encoded["createdAtUtc"]).toBe("2026-01-15T10:30:00.000Z")
    expect(Date.parse(String(encoded["createdAtUtc"]))).toBe(Date.parse(String(original["createdAtUtc"])))
    expect({ ...encoded, createdAtUtc: original["createdAtUtc"] }).toEqual(original)
    // and the normalised form is a fixed point
    expect(Schema.encodeSync(ChatEventJson)(Schema.decodeUnknownSync(ChatEventJson)(encodedText))).toBe(encodedText)
  })

  it("the encoded ChatEvent (not the JSON string) is a plain object with the original's fields", () => {
    const event = Schema.decodeUnknownSync(ChatEventJson)(kcatJson)
    expect(Schema.encodeSync(ChatEvent)(event)).toStrictEqual({
      messageId: "123e4567-e89b-12d3-a456-426614174000",
      scopeType: 0,
      scopeId: "general",
      senderId: "test-user",
      text: "Hello from kcat",
      createdAtUtc: "2026-01-15T10:30:00.000Z",
      originPodId: "test-pod"
    })
  })

  it("scopeType 1 is DirectMessage", () => {
    const event = Schema.decodeUnknownSync(ChatEventJson)(kcatJson.replace(`"scopeType":0`, `"scopeType":1`))
    expect(event.scopeType).toBe(ScopeTypes.DirectMessage)
  })

  it("rejects what the original would not produce", () => {
    const decode = Schema.decodeUnknownEither(ChatEventJson)
    expect(Either.isLeft(decode(kcatJson.replace(`"scopeType":0`, `"scopeType":2`)))).toBe(true)
    expect(Either.isLeft(decode(kcatJson.replace(`"scopeType":0`, `"scopeType":"Channel"`)))).toBe(true)
    expect(Either.isLeft(decode(kcatJson.replace("123e4567-e89b-12d3-a456-426614174000", "not-a-uuid")))).toBe(true)
    expect(Either.isLeft(decode(kcatJson.replace("2026-01-15T10:30:00Z", "not a date")))).toBe(true)
    expect(Either.isLeft(decode(kcatJson.replace(`,"originPodId":"test-pod"`, "")))).toBe(true)
    expect(Either.isLeft(decode(kcatJson.slice(0, -1)))).toBe(true)
  })

  it.prop("ChatEventJson: decode(encode(x)) equals x (same instant)", { x: ChatEventJson }, ({ x }) => {
    const text = Schema.encodeSync(ChatEventJson)(x)
    const decoded = Schema.decodeUnknownSync(ChatEventJson)(text)
    expect(decoded).toBeInstanceOf(ChatEvent)
    expect(decoded).toEqual(x)
    expect(decoded.createdAtUtc.getTime()).toBe(x.createdAtUtc.getTime())
  }, { fastCheck: { numRuns } })

  it.prop("ChatEventJson: encode(decode(text)) is the same text", { x: ChatEventJson }, ({ x }) => {
    const text = Schema.encodeSync(ChatEventJson)(x)
    expect(Schema.encodeSync(ChatEventJson)(Schema.decodeUnknownSync(ChatEventJson)(text))).toBe(text)
    const parsed = JSON.parse(text) as Record<string, unknown>
    expect(Object.keys(parsed)).toEqual([
      "messageId",
      "scopeType",
      "scopeId",
      "senderId",
      "text",
      "createdAtUtc",
      "originPodId"
    ])
    expect(typeof parsed["createdAtUtc"]).toBe("string")
  }, { fastCheck: { numRuns } })
})

describe("ChatEvent fast paths", () => {
  it.prop("encodeChatEventJson writes exactly the text ChatEventJson encodes", { x: ChatEvent }, ({ x }) => {
    expect(encodeChatEventJson(x)).toEqual(Either.right(Schema.encodeSync(ChatEventJson)(x)))
  }, { fastCheck: { numRuns: 500 } })

  it.prop(
    "an event encoded once is the same value: equal to, hashed and encoded as one never encoded",
    { x: ChatEvent },
    ({ x }) => {
      const fresh = new ChatEvent({ ...x })
      const first = encodeChatEventJson(x)
      expect(encodeChatEventJson(x)).toEqual(first)
      expect(first).toEqual(Either.right(Schema.encodeSync(ChatEventJson)(fresh)))
      expect(Equal.equals(x, fresh)).toBe(true)
      expect(Hash.hash(x)).toBe(Hash.hash(fresh))
      expect(x).toStrictEqual(fresh)
      expect(Object.keys(x)).toEqual(Object.keys(fresh))
    },
    { fastCheck: { numRuns: 200 } }
  )

  it("each event keeps its own JSON", () => {
    const a = Schema.decodeUnknownSync(ChatEventJson)(kcatJson)
    const b = new ChatEvent({ ...a, text: `${a.text}!` })
    const textOf = (event: ChatEvent) =>
      (JSON.parse(Either.getOrThrow(encodeChatEventJson(event))) as { readonly text: string }).text
    expect(textOf(a)).toBe(a.text)
    expect(textOf(b)).toBe(`${a.text}!`)
    expect(textOf(a)).toBe(a.text)
  })

  it.prop("decodeChatEventJson reads exactly what ChatEventJson decodes", { x: ChatEvent }, ({ x }) => {
    const text = Schema.encodeSync(ChatEventJson)(x)
    expect(decodeChatEventJson(text)).toEqual(Schema.decodeEither(ChatEventJson)(text))
  }, { fastCheck: { numRuns: 500 } })

  it("decodeChatEventJson refuses what the schema refuses, with the schema's message", () => {
    const valid = JSON.parse(kcatJson) as Record<string, unknown>
    for (
      const text of [
        "not json",
        "[]",
        "null",
        JSON.stringify({ ...valid, messageId: "not-a-uuid" }),
        JSON.stringify({ ...valid, scopeType: 7 }),
        JSON.stringify({ ...valid, createdAtUtc: "yesterday" }),
        JSON.stringify({ ...valid, text: 42 }),
        JSON.stringify({ ...valid, originPodId: undefined })
      ]
    ) {
      const decoded = decodeChatEventJson(text)
      expect(Either.isLeft(decoded)).toBe(true)
      expect(decoded).toEqual(Schema.decodeEither(ChatEventJson)(text))
    }
    // extra fields are ignored, as the schema ignores them
    expect(decodeChatEventJson(JSON.stringify({ ...valid, extra: 1 }))).toEqual(
      Schema.decodeEither(ChatEventJson)(JSON.stringify({ ...valid, extra: 1 }))
    )
  })

  it("encodeChatEventJson refuses what the schema refuses (an instance made without validation)", () => {
    const valid = Schema.decodeUnknownSync(ChatEventJson)(kcatJson)
    for (
      const invalid of [
        new ChatEvent({ ...valid, createdAtUtc: new Date(Number.NaN) }, true),
        new ChatEvent({ ...valid, messageId: `"},"injected":"` }, true),
        new ChatEvent({ ...valid, scopeType: 7 as ChatEvent["scopeType"] }, true)
      ]
    ) {
      expect(Either.isLeft(encodeChatEventJson(invalid))).toBe(true)
      expect(encodeChatEventJson(invalid)).toEqual(Schema.encodeEither(ChatEventJson)(invalid))
    }
  })

  it("the constructors still validate, with Effect's messages, unless told not to", () => {
    const valid = Schema.decodeUnknownSync(ChatEventJson)(kcatJson)
    expect(() => new ChatEvent({ ...valid, messageId: "not-a-uuid" })).toThrow(
      /ChatEvent \(Constructor\)[\s\S]*messageId/u
    )
    expect(() => new ChatEvent({ ...valid, createdAtUtc: new Date(Number.NaN) })).toThrow(/createdAtUtc/u)
    expect(() => new EnrichedChatEvent({ chatEvent: valid, partition: -1, offset: 0 })).toThrow(
      /EnrichedChatEvent \(Constructor\)[\s\S]*partition/u
    )
    // a plain object passed off as a ChatEvent is what the constructor must refuse
    // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment
    expect(() => new EnrichedChatEvent({ chatEvent: { ...valid } as ChatEvent, partition: 0, offset: 0 })).toThrow(
      /Expected ChatEvent/u
    )
    expect(new ChatEvent({ ...valid, messageId: "unchecked" }, true).messageId).toBe("unchecked")
    expect(new ChatEvent({ ...valid, text: "again" })).toEqual(
      new ChatEvent({ ...valid, text: "again" }, { disableValidation: true })
    )
  })
})

describe("wire schemas round-trip", () => {
  roundTrips("ChatEvent", ChatEvent)
  roundTrips("ChatSendRequest", ChatSendRequest)
  roundTrips("EnrichedChatEvent", EnrichedChatEvent)
  roundTrips("StreamPosition", StreamPosition)
  roundTrips("HistoryPage", HistoryPage)
  roundTrips("HistoryQuery", HistoryQuery)
  roundTrips("ScopeRef", ScopeRef)
  roundTrips("ScopePresence", ScopePresence)
  roundTrips("PresentUser", PresentUser)
  roundTrips("ProblemDetails", ProblemDetails)
  roundTrips("FieldError", FieldError)
  roundTrips("PolicyLimits", PolicyLimits)
  roundTrips("Subscribed", Subscribed)
  roundTrips("SubscriptionItem", SubscriptionItem)
})

describe("clientMessageId on the send payloads", () => {
  const rpcSendPayload = SendPayload
  roundTrips("Send RPC payload", rpcSendPayload)

  it.prop(
    "REST (ChatSendRequest) and RPC decode the same JSON to the same fields, with or without clientMessageId",
    { x: ChatSendRequest },
    ({ x }) => {
      const json = viaJson(Schema.encodeSync(ChatSendRequest)(x))
      const rest = Schema.decodeUnknownSync(ChatSendRequest)(json)
      const rpc = Schema.decodeUnknownSync(rpcSendPayload)(json)
      expect({ ...rpc }).toEqual({ ...rest })
      expect(Object.hasOwn(rpc, "clientMessageId")).toBe(x.clientMessageId !== undefined)
    },
    { fastCheck: { numRuns } }
  )

  it("is optional, and a string when given", () => {
    const base = { scopeType: 0, scopeId: "general", text: "hi" }
    for (const decode of [Schema.decodeUnknownEither(ChatSendRequest), Schema.decodeUnknownEither(rpcSendPayload)]) {
      expect(Either.isRight(decode(base))).toBe(true)
      expect(decode({ ...base, clientMessageId: "0b6f0c64-5d55-4b2e-9f0e-2f0d3c1c9a11" })).toEqual(
        Either.right(expect.objectContaining({ clientMessageId: "0b6f0c64-5d55-4b2e-9f0e-2f0d3c1c9a11" }))
      )
      for (const bad of [42, null, true, { id: "x" }]) {
        expect(Either.isLeft(decode({ ...base, clientMessageId: bad }))).toBe(true)
      }
    }
  })
})

describe("errors round-trip through their schemas", () => {
  roundTrips("ValidationError", ValidationError)
  roundTrips("Unauthenticated", Unauthenticated)
  roundTrips("Forbidden", Forbidden)
  roundTrips("NotFound", NotFound)
  roundTrips("Conflict", Conflict)
  roundTrips("SubscriptionLagged", SubscriptionLagged)
  roundTrips("RateLimited", RateLimited)
  roundTrips("DependencyUnavailable", DependencyUnavailable)
  roundTrips("Timeout", Timeout)
  roundTrips("Unexpected", Unexpected)
  roundTrips("ChatError", ChatError)
  roundTrips("SendError", SendError)
  roundTrips("SubscribeError", SubscribeError)
  roundTrips("QueryError", QueryError)

  it.prop("a decoded error keeps its class and tag", { e: ChatError }, ({ e }) => {
    const encoded = Schema.encodeSync(ChatError)(e)
    expect(encoded._tag).toBe(e._tag)
    const decoded = Schema.decodeUnknownSync(ChatError)(viaJson(encoded))
    expect(decoded._tag).toBe(e._tag)
    expect(Object.getPrototypeOf(decoded)).toBe(Object.getPrototypeOf(e))
    expect(decoded).toBeInstanceOf(Error)
    expect(decoded.message).toBe(e.message)
  }, { fastCheck: { numRuns } })

  it("a ValidationError needs at least one field error", () => {
    expect(Either.isLeft(Schema.decodeUnknownEither(ValidationError)({ _tag: "ValidationError", errors: [] }))).toBe(
      true
    )
  })
})

describe("SubscriptionItem", () => {
  it.prop("decodes back to the same member of the union", { item: SubscriptionItem }, ({ item }) => {
    const decoded = Schema.decodeUnknownSync(SubscriptionItem)(viaJson(Schema.encodeSync(SubscriptionItem)(item)))
    if (item instanceof Subscribed) {
      expect(decoded).toBeInstanceOf(Subscribed)
    } else {
      expect(decoded).toBeInstanceOf(EnrichedChatEvent)
    }
    expect(decoded).toEqual(item)
  }, { fastCheck: { numRuns } })

  it("Subscribed is tagged on the wire", () => {
    expect(Schema.encodeSync(SubscriptionItem)(new Subscribed({ scopeType: 1, scopeId: "dm" }))).toStrictEqual({
      _tag: "Subscribed",
      scopeType: 1,
      scopeId: "dm"
    })
  })
})

describe("HistoryCursor", () => {
  const encode = Schema.encodeSync(HistoryCursor)
  const decode = Schema.decodeUnknownEither(HistoryCursor)

  it.prop("arbitrary positions survive encode → decode", { position: HistoryCursorPosition }, ({ position }) => {
    const cursor = encode(position)
    expect(typeof cursor).toBe("string")
    expect(cursor).toMatch(/^[A-Za-z0-9_-]*$/u) // opaque and URL-safe
    expect(decode(cursor)).toEqual(Either.right(position))
    // encode(decode(cursor)) is stable
    expect(Either.map(decode(cursor), encode)).toEqual(Either.right(cursor))
  }, { fastCheck: { numRuns: 300 } })

  it.prop(
    "arbitrary garbage never throws: decode gives Left",
    {
      garbage: FastCheck.oneof(
        FastCheck.string(),
        FastCheck.string({ unit: "binary" }),
        FastCheck.base64String(),
        FastCheck.string({ unit: FastCheck.constantFrom("A", "z", "0", "-", "_", "=", "+", "/", " ", "é") }),
        FastCheck.json().map((json) => Buffer.from(json, "utf8").toString("base64url")),
        FastCheck.string().map((s) => Buffer.from(s, "utf8").toString("base64url"))
      )
    },
    ({ garbage }) => {
      const result = decode(garbage)
      expect(Either.isLeft(result)).toBe(true)
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "JSON that is not a position, however well encoded, is rejected without throwing; a position is read back exactly",
    {
      value: FastCheck.oneof(
        FastCheck.jsonValue(),
        FastCheck.record({ createdAtMs: FastCheck.double(), messageId: FastCheck.string() }),
        FastCheck.record({ createdAtMs: FastCheck.integer(), messageId: FastCheck.integer() }),
        FastCheck.record({ createdAtMs: FastCheck.string(), messageId: FastCheck.uuid() }),
        // positions too, so both outcomes are seen
        FastCheck.record({
          createdAtMs: FastCheck.oneof(FastCheck.integer(), FastCheck.maxSafeInteger(), FastCheck.double()),
          messageId: FastCheck.oneof(
            FastCheck.uuid(),
            FastCheck.uuid().map((id) => id.toUpperCase()),
            FastCheck.string()
          )
        })
      )
    },
    ({ value }) => {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- JSON.stringify(undefined) is undefined
      const json = JSON.stringify(value) ?? "null"
      const cursor = Buffer.from(json, "utf8").toString("base64url")
      const result = decode(cursor)
      // what the JSON holds, judged without the schema: an object with an integer createdAtMs and a UUID messageId
      const parsed: unknown = JSON.parse(json)
      const isPosition = typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) &&
        "createdAtMs" in parsed && Number.isSafeInteger(parsed.createdAtMs) &&
        "messageId" in parsed && typeof parsed.messageId === "string" &&
        /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/iu.test(parsed.messageId)
      expect(result).toEqual(
        isPosition
          ? Either.right({ createdAtMs: parsed.createdAtMs, messageId: parsed.messageId })
          : Either.left(expect.anything())
      )
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("specific malformed cursors are Left", () => {
    const position = { createdAtMs: 1_768_473_000_000, messageId: "123e4567-e89b-12d3-a456-426614174000" }
    const good = encode(position)
    expect(decode(good)).toEqual(Either.right(position))
    for (
      const bad of [
        "",
        "!",
        "a",
        "====",
        good + "!",
        good.slice(0, -3),
        "bnVsbA", // null
        "e30", // {}
        Buffer.from(JSON.stringify({ ...position, createdAtMs: 1.5 })).toString("base64url"),
        Buffer.from(JSON.stringify({ ...position, messageId: "nope" })).toString("base64url")
      ]
    ) {
      expect(Either.isLeft(decode(bad))).toBe(true)
    }
  })
})
