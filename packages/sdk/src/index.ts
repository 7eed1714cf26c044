export * from "./ChatClient.js"
export * from "./Dedupe.js"
export * from "./Reconnect.js"
