export * from "./ChatHub.js"
export * from "./Connection.js"
export * as Protocol from "./Protocol.js"
export * from "./Routes.js"
