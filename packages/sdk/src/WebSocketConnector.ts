import * as Socket from "@effect/platform/Socket"
import { Context, Effect, Layer } from "effect"

/** How the client opens its WebSocket: the one part of the transport that depends on the runtime. */
export interface WebSocketConnectorService {
  /**
   * Whether the sockets it opens send headers on the upgrade request: Node's `ws` can, a browser's
   * WebSocket cannot. The access token then travels in the `Authorization` header, else in the URL.
   */
  readonly upgradeHeaders: boolean
  /**
   * A new WebSocket to `url`; `headers` go on its upgrade request when `upgradeHeaders` is true.
   * `onRefused` hears the HTTP status of an upgrade the server answered with something else than
   * 101, where the runtime tells it (Node's `ws` does; a browser's WebSocket does not).
   */
  readonly open: (
    url: string,
    headers: Readonly<Record<string, string>>,
    onRefused?: (status: number) => void
  ) => globalThis.WebSocket
}

/**
 * The runtime's WebSocket for the client. `@chatify/sdk/node` and `@chatify/sdk/browser` provide it;
 * for another runtime, provide `WebSocketConnector.fromConstructor` over its `Socket.WebSocketConstructor`.
 */
export class WebSocketConnector extends Context.Tag("@chatify/sdk/WebSocketConnector")<
  WebSocketConnector,
  WebSocketConnectorService
>() {
  /** A connector over a standard WebSocket constructor, which cannot send upgrade headers. */
  static readonly fromConstructor: Layer.Layer<WebSocketConnector, never, Socket.WebSocketConstructor> = Layer.effect(
    WebSocketConnector,
    Effect.map(Socket.WebSocketConstructor, (construct) => ({
      upgradeHeaders: false,
      open: (url) => construct(url)
    }))
  )
}
