/**
 * The client for browsers: `@chatify/sdk` with the browser's WebSocket, which cannot send upgrade
 * headers, so the access token travels as `?access_token=` in the URL. Imports no Node module.
 */
import * as BrowserSocket from "@effect/platform-browser/BrowserSocket"
import { Effect, Layer, type Scope } from "effect"
import * as Core from "./ChatClient.js"
import { WebSocketConnector } from "./WebSocketConnector.js"

export * from "./index.js"

/** Opens sockets with the browser's global WebSocket. */
export const BrowserWebSocketConnector: Layer.Layer<WebSocketConnector> = WebSocketConnector.fromConstructor.pipe(
  Layer.provide(BrowserSocket.layerWebSocketConstructor)
)

/** A ChatClient over one WebSocket, closed with the scope. */
export const makeChatClient = (
  options: Core.ChatClientOptions
): Effect.Effect<Core.ChatClientService, never, Scope.Scope> =>
  Core.makeChatClient(options).pipe(Effect.provide(BrowserWebSocketConnector))

/** The Chatify client as a service: `ChatClient.layer({ url })`, then `yield* ChatClient`. */
export class ChatClient extends Core.ChatClient {
  static override readonly layer = (options: Core.ChatClientOptions): Layer.Layer<Core.ChatClient> =>
    Core.ChatClient.layer(options).pipe(Layer.provide(BrowserWebSocketConnector))
}
