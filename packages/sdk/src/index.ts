// The transport-free client: its WebSocketConnector comes from `@chatify/sdk/node`, `@chatify/sdk/browser`
// or the caller (`WebSocketConnector.fromConstructor` over any runtime's standard WebSocket).
export * from "./ChatClient.js"
export * from "./Dedupe.js"
export * from "./Reconnect.js"
export * from "./WebSocketConnector.js"
