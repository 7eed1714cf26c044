import { describe, expect, it } from "@effect/vitest"
import { Rpc } from "@effect/rpc"
import { Arbitrary, Either, Exit, FastCheck as fc, Schema } from "effect"
import { ChatRpcs, EnrichedChatEvent, SendError, SendPayload } from "@chatify/domain"
import { enrichedChatEventJson } from "../src/realtime/EventJson.js"
import {
  ackedRequestId,
  ackFrameRequestIds,
  plainSendPayload,
  sendExitLine
} from "../src/realtime/RpcSocketProtocol.js"

// what RpcServer writes for a Send: the contract's exit schema, encoded, in an Exit message
const encodeSendExit = Schema.encodeSync(
  Rpc.exitSchema(ChatRpcs.requests.get("Send")!) as unknown as Schema.Schema<
    Exit.Exit<EnrichedChatEvent, SendError>,
    unknown
  >
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
    fc.record({
      scopeType: fc.constantFrom(0, 1),
      scopeId: fc.string(),
      text: fc.string(),
      clientMessageId: fc.jsonValue()
    }),
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
      if (
        Either.isRight(decoded) && typeof payload === "object" && payload !== null &&
        Object.keys(payload).length === Object.keys(decoded.right).length
      ) {
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
        fc.record({ _tag: fc.constantFrom("Ack", "Interrupt", "Ping"), requestId: fc.string({ maxLength: 22 }) }).map((
          m
        ) => JSON.stringify(m) + "\n")
      )
    },
    ({ id, other }) => {
      expect(ackedRequestId(Buffer.from(JSON.stringify({ _tag: "Ack", requestId: id }) + "\n"))).toBe(id)
      // only ever an id of a frame that is exactly that Ack line
      const read = ackedRequestId(Buffer.from(other))
      if (read !== undefined) expect(other).toBe(JSON.stringify({ _tag: "Ack", requestId: read }) + "\n")
    }
  )

  /** A client's WebSocket frame (masked, as every client frame is) around `payload`. */
  const clientFrame = (payload: Buffer, mask: ReadonlyArray<number>, opcode: number, fin: boolean) => {
    const length = payload.length
    const header = length < 126 ? [0x80 | length] : [0x80 | 126, length >> 8, length & 0xff]
    const masked = payload.map((byte, i) => byte ^ mask[i & 3]!)
    return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, ...header, ...mask]), masked])
  }
  const ackLine = (id: string) => Buffer.from(JSON.stringify({ _tag: "Ack", requestId: id }) + "\n")
  const frames = fc.array(
    fc.record({
      ack: fc.boolean(),
      id: fc.bigInt({ min: 0n, max: 2n ** 63n }).map(String),
      other: fc.oneof(
        fc.string({ maxLength: 200 }),
        fc.constant("{\"_tag\":\"Ping\"}\n"),
        fc.constant("{\"_tag\":\"Ack\",\"requestId\":\"x\"}\n")
      ),
      mask: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }),
      opcode: fc.constantFrom(1, 1, 1, 2, 9),
      fin: fc.constantFrom(true, true, true, false)
    }),
    { minLength: 1, maxLength: 5 }
  )

  it.prop(
    "a socket read of whole Ack frames gives their ids, in order; any other read (another message, a control frame, a fragment, a cut frame) is left to ws",
    { frames, cut: fc.nat() },
    ({ cut, frames }) => {
      const encoded = frames.map((f) =>
        clientFrame(f.ack ? ackLine(f.id) : Buffer.from(f.other), f.mask, f.opcode, f.fin)
      )
      const chunk = Buffer.concat(encoded)
      const allAcks = frames.every((f) => f.ack && f.opcode === 1 && f.fin)
      const scratch = Buffer.alloc(125)
      expect(ackFrameRequestIds(chunk, scratch)).toEqual(allAcks ? frames.map((f) => f.id) : undefined)
      // a read that ends inside a frame is never taken
      const boundaries = new Set(
        encoded.map((_, i) => encoded.slice(0, i + 1).reduce((sum, frame) => sum + frame.length, 0))
      )
      const end = cut % chunk.length
      if (end > 0 && !boundaries.has(end)) expect(ackFrameRequestIds(chunk.subarray(0, end), scratch)).toBeUndefined()
    },
    { fastCheck: { numRuns: 1000 } }
  )
})
