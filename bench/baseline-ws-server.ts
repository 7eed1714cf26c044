// The floor for W1: a bare `ws` server that relays every text frame it gets from a sender to
// every other connection, with no validation, broker, storage or RPC framing.
import { WebSocketServer, type WebSocket } from "ws"

const server = new WebSocketServer({ host: "127.0.0.1", port: 0 })
const subscribers = new Set<WebSocket>()
server.on("connection", (socket, request) => {
  if (request.url === "/send") {
    socket.on("message", (data) => {
      const text = (data as Buffer).toString() // ws hands a message over as one Buffer (binaryType nodebuffer)
      for (const subscriber of subscribers) subscriber.send(text)
      socket.send("ack")
    })
    return
  }
  subscribers.add(socket)
  socket.on("close", () => subscribers.delete(socket))
  socket.send("subscribed")
})
server.on("listening", () => {
  const address = server.address()
  if (address !== null && typeof address === "object") console.log(`Listening on ws://127.0.0.1:${address.port}`)
})
process.on("SIGTERM", () => server.close(() => process.exit(0)))
