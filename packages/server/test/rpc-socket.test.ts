import { describe, expect, it } from "@effect/vitest"
import { Rpc } from "@effect/rpc"
import { Exit, FastCheck as fc, Schema } from "effect"
import { ChatRpcs, EnrichedChatEvent, SendError } from "@chatify/domain"
import { enrichedChatEventJson } from "../src/realtime/EventJson.js"
import { ackedRequestId, sendExitLine } from "../src/realtime/RpcSocketProtocol.js"

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
