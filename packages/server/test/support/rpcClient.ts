import { NodeSocket } from "@effect/platform-node"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { Effect, Layer } from "effect"
import { ChatRpcs } from "@chatify/domain"

/** An `/rpc` client that presents `token` as `?access_token=` on the upgrade, scoped to the test. */
export const rpcClient = (wsUrl: string, token: string) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      RpcClient.layerProtocolSocket().pipe(
        Layer.provide(NodeSocket.layerWebSocket(`${wsUrl}?access_token=${encodeURIComponent(token)}`)),
        Layer.provide(RpcSerialization.layerNdjson)
      )
    )
    return yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))
  })
