/**
 * Look-alike scope ids (bidi controls, zero-width characters: Unicode Cf) are refused by every
 * operation of every interface, with the same ValidationError naming scopeId. The rule itself is
 * property-tested in packages/domain/test/policy.test.ts; this checks that REST, RPC and SignalR
 * all reach it (sends through validateSend, subscribe/history/presence through authorizeScope).
 */
import { NodeSocket } from "@effect/platform-node"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { HttpTransportType, HubConnectionBuilder, LogLevel } from "@microsoft/signalr"
import { Effect, Layer, Logger, LogLevel as EffectLogLevel, Schema, Stream } from "effect"
import { ChatRpcs, ProblemDetails } from "@chatify/domain"
import { startTestServer } from "../src/testing.js"

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, EffectLogLevel.Warning)

// each looks like "general" when shown
const LOOK_ALIKES = ["gen\u202eeral", "general\u200b", "\u2066general\u2069", "gen\u00aderal", "\ufeffgeneral"] as const
const MESSAGE = "must not contain invisible format characters"

const decodeProblem = Schema.decodeUnknownSync(ProblemDetails)

const rest = (url: string, init: RequestInit = {}) =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    return { status: response.status, body: await response.json() }
  })

/** A refused call: 400, and the one error names scopeId with the format-character message. */
const expectRefusedScopeId = (
  what: string,
  errors: ReadonlyArray<{ readonly field: string; readonly message: string }> | undefined
) => {
  expect(errors?.map((e) => e.field), what).toEqual(["scopeId"])
  expect(errors?.[0]?.message, what).toContain(MESSAGE)
}

describe("look-alike scope ids on every interface", () => {
  it.scopedLive(
    "REST, RPC and SignalR refuse them on send, subscribe, history and presence",
    () =>
      Effect.gen(function*() {
        const server = yield* startTestServer()

        // RPC over /rpc
        const context = yield* Layer.build(
          RpcClient.layerProtocolSocket().pipe(
            Layer.provide(NodeSocket.layerWebSocket(server.wsUrl)),
            Layer.provide(RpcSerialization.layerNdjson)
          )
        )
        const rpc = yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))

        // SignalR, with the official client
        const hub = new HubConnectionBuilder()
          .withUrl(`${server.httpUrl}/hubs/chat`, { transport: HttpTransportType.WebSockets })
          .configureLogging(LogLevel.None)
          .build()
        yield* Effect.acquireRelease(Effect.promise(() => hub.start()), () => Effect.promise(() => hub.stop()))
        const invoke = (method: string, ...args: ReadonlyArray<unknown>) =>
          Effect.promise(() =>
            hub.invoke<unknown>(method, ...args).then(() => "accepted", (error: unknown) => String(error))
          )

        // the plain id works everywhere
        const ok = yield* rest(`${server.httpUrl}/api/chat/send`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ scopeType: 0, scopeId: "general", text: "hi" })
        })
        expect(ok.status).toBe(200)
        expect(yield* invoke("JoinScopeAsync", "general")).toBe("accepted")

        for (const scopeId of LOOK_ALIKES) {
          const shown = JSON.stringify(scopeId)

          // REST
          const sent = yield* rest(`${server.httpUrl}/api/chat/send`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ scopeType: 0, scopeId, text: "hi" })
          })
          expect(sent.status, shown).toBe(400)
          expectRefusedScopeId(`REST send ${shown}`, decodeProblem(sent.body).errors)
          for (const path of ["history", "presence"]) {
            const read = yield* rest(`${server.httpUrl}/api/chat/scopes/0/${encodeURIComponent(scopeId)}/${path}`)
            expect(read.status, `${path} ${shown}`).toBe(400)
            expectRefusedScopeId(`REST ${path} ${shown}`, decodeProblem(read.body).errors)
          }

          // RPC
          const refusals = [
            ["Send", yield* Effect.flip(rpc.Send({ scopeType: 0, scopeId, text: "hi" }))],
            ["Subscribe", yield* Effect.flip(Stream.runHead(rpc.Subscribe({ scopeType: 0, scopeId })))],
            ["History", yield* Effect.flip(rpc.History({ scopeType: 0, scopeId }))],
            ["Presence", yield* Effect.flip(rpc.Presence({ scopeType: 0, scopeId }))]
          ] as const
          for (const [method, error] of refusals) {
            expect(error._tag, `${method} ${shown}`).toBe("ValidationError")
            if (error._tag === "ValidationError") expectRefusedScopeId(`RPC ${method} ${shown}`, error.errors)
          }

          // SignalR: the invocation is rejected with the ProblemDetails text, the connection stays
          for (
            const [method, argument] of [["JoinScopeAsync", scopeId], ["SendAsync", {
              scopeType: 0,
              scopeId,
              text: "hi"
            }]] as const
          ) {
            const answer = yield* invoke(method, argument)
            expect(answer, `${method} ${shown}`).toContain(`scopeId: ${MESSAGE}`)
          }
        }
        expect(yield* invoke("SendAsync", { scopeType: 0, scopeId: "general", text: "still connected" })).toBe(
          "accepted"
        )
      }).pipe(quiet),
    60_000
  )
})
