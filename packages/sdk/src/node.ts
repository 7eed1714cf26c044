/**
 * The client for Node: `@chatify/sdk` with Node's WebSocket (the `ws` package), which sends the
 * access token in the upgrade's `Authorization` header.
 */
import { Effect, Layer, type Scope } from "effect"
import { WebSocket } from "ws"
import * as Core from "./ChatClient.js"
import { WebSocketConnector } from "./WebSocketConnector.js"

export * from "./index.js"

/** Opens sockets with `ws`, which Node ≥ 20 has no global WebSocket to replace and which can send upgrade headers. */
export const NodeWebSocketConnector: Layer.Layer<WebSocketConnector> = Layer.succeed(WebSocketConnector, {
  upgradeHeaders: true,
  open: (url, headers, onRefused) => {
    const ws = new WebSocket(url, { headers })
    // `ws` reports a refused upgrade as an error whose message holds the status
    if (onRefused !== undefined) {
      ws.once("error", (error) => {
        const status = /^Unexpected server response: (\d{3})$/u.exec(error.message)?.[1]
        if (status !== undefined) onRefused(Number(status))
      })
    }
    // `ws` implements the browser's WebSocket interface, which is all the client uses of it
    return ws as unknown as globalThis.WebSocket
  }
})

/** A ChatClient over one WebSocket, closed with the scope. */
export const makeChatClient = (
  options: Core.ChatClientOptions
): Effect.Effect<Core.ChatClientService, never, Scope.Scope> =>
  Core.makeChatClient(options).pipe(Effect.provide(NodeWebSocketConnector))

/** The Chatify client as a service: `ChatClient.layer({ url })`, then `yield* ChatClient`. */
export class ChatClient extends Core.ChatClient {
  static override readonly layer = (options: Core.ChatClientOptions): Layer.Layer<Core.ChatClient> =>
    Core.ChatClient.layer(options).pipe(Layer.provide(NodeWebSocketConnector))
}
