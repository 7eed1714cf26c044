import { describe, expect, it } from "@effect/vitest"
import { Rpc } from "@effect/rpc"
import { Arbitrary, Either, Exit, FastCheck as fc, Schema } from "effect"
import { ChatRpcs, EnrichedChatEvent, SendError, SendPayload } from "@chatify/domain"
import { enrichedChatEventJson } from "../src/realtime/EventJson.js"
import { ackedRequestId, plainSendPayload, sendExitLine } from "../src/realtime/RpcSocketProtocol.js"

// what RpcServer writes for a Send: the contract's exit schema, encoded, in an Exit message
const encodeSendExit = Schema.encodeSync(
  Rpc.exitSchema(ChatRpcs.requests.get("Send")!) as unknown as Schema.Schema<Exit.Exit<EnrichedChatEvent, SendError>, unknown>
)
const asRpcServerWrites = (requestId: string, exit: Exit.Exit<EnrichedChatEvent, SendError>) =>
  JSON.stringify({ _tag: "Exit", requestId, exit: encodeSendExit(exit) }) + "\n"

describe("the /rpc fast paths write what RpcServer would", () => {
  it.prop("an event's spliced JSON is its schema encoding", { event: EnrichedChatEvent }, ({ event }) => {
    expect(enrichedChatEventJson(event)).toEqual(
      expect.objectContaining({ right: JSON.stringify(Schema.encodeSync(EnrichedChatEvent)(event)) })
    )
  })

  it.prop(
    "a Send's Exit line, succeeded or failed",
    { requestId: Schema.String, event: EnrichedChatEvent, error: SendError },
    ({ error, event, requestId }) => {
      expect(sendExitLine(requestId, Exit.succeed(event))).toBe(asRpcServerWrites(requestId, Exit.succeed(event)))
      expect(sendExitLine(requestId, Exit.fail(error))).toBe(asRpcServerWrites(requestId, Exit.fail(error)))
    }
  )

  const decodeSendPayload = Schema.decodeUnknownEither(SendPayload)
  /** Payloads as they arrive: the contract's own (with or without clientMessageId), near misses, anything. */
  const sendPayloads = fc.oneof(
    Arbitrary.make(SendPayload).map((payload) => JSON.parse(JSON.stringify(payload)) as unknown),
    // a valid payload but for its clientMessageId, which may be any JSON value
    fc.record({ scopeType: fc.constantFrom(0, 1), scopeId: fc.string(), text: fc.string(), clientMessageId: fc.jsonValue() }),
    fc.record(
      {
        scopeType: fc.oneof(fc.constantFrom(0, 1, 2, -1, 0.5), fc.string()),
        scopeId: fc.oneof(fc.string(), fc.integer(), fc.constant(null)),
        text: fc.oneof(fc.string(), fc.integer(), fc.constant(null)),
        clientMessageId: fc.oneof(fc.string(), fc.uuid(), fc.integer(), fc.constant(null), fc.boolean()),
        extra: fc.jsonValue()
      },
      { requiredKeys: [] }
    ),
    fc.jsonValue()
  )

  it.prop(
    "the Send fast path takes a payload only as the contract decodes it (clientMessageId included), and takes every plain one",
    { payload: sendPayloads },
    ({ payload }) => {
      const fast = plainSendPayload(payload)
      const decoded = decodeSendPayload(payload)
      // what it takes, the contract takes, as the same value
      if (fast !== undefined) expect(decoded).toEqual(Either.right(fast))
      // what the contract takes without dropping anything, it takes too (the rest goes to RpcServer)
      if (Either.isRight(decoded) && typeof payload === "object" && payload !== null &&
        Object.keys(payload).length === Object.keys(decoded.right).length) {
        expect(fast).toEqual(decoded.right)
      }
    },
    { fastCheck: { numRuns: 1000 } }
  )

  it.prop(
    "an Ack line as RpcClient writes it is read without the parser; whatever else is left to the parser",
    {
      id: fc.bigInt({ min: 0n, max: 2n ** 63n }).map(String),
      other: fc.oneof(
        fc.string(),
        fc.jsonValue().map((value) => JSON.stringify(value) + "\n"),
        fc.record({ _tag: fc.constantFrom("Ack", "Interrupt", "Ping"), requestId: fc.string({ maxLength: 22 }) }).map((m) => JSON.stringify(m) + "\n")
      )
    },
    ({ id, other }) => {
      expect(ackedRequestId(Buffer.from(JSON.stringify({ _tag: "Ack", requestId: id }) + "\n"))).toBe(id)
      // only ever an id of a frame that is exactly that Ack line
      const read = ackedRequestId(Buffer.from(other))
      if (read !== undefined) expect(other).toBe(JSON.stringify({ _tag: "Ack", requestId: read }) + "\n")
    }
  )
})
