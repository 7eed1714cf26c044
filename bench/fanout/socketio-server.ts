// The reference for `pnpm bench:fanout`: the plain Socket.IO 4.8 chat server a Node team writes
// first. "join" puts the socket in a room, "send" broadcasts to the room and acknowledges the
// sender. No validation, storage or auth: the floor a chat backend is measured against.
//
//   PORT=0 node bench/fanout/socketio-server.js   (run.ts transpiles this file first)
import { createServer } from "node:http"
import { Server } from "socket.io"

interface SendRequest {
  readonly room: string
  readonly text: string
}

type Ack = (response: { readonly ok: boolean }) => void

const isSendRequest = (value: unknown): value is SendRequest =>
  typeof value === "object" && value !== null &&
  typeof (value as Record<string, unknown>)["room"] === "string" &&
  typeof (value as Record<string, unknown>)["text"] === "string"

const http = createServer()
// websocket only: the bench clients never long-poll, and polling would add an upgrade round trip
const io = new Server(http, { transports: ["websocket"], serveClient: false })

io.on("connection", (socket) => {
  socket.on("join", (room: unknown, ack?: Ack) => {
    if (typeof room === "string") void socket.join(room)
    ack?.({ ok: typeof room === "string" })
  })
  socket.on("send", (request: unknown, ack?: Ack) => {
    if (!isSendRequest(request)) return ack?.({ ok: false })
    io.to(request.room).emit("message", { room: request.room, text: request.text, from: socket.id, at: Date.now() })
    ack?.({ ok: true })
  })
})

http.listen(Number(process.env["PORT"] ?? 0), process.env["HOST"] ?? "127.0.0.1", () => {
  const address = http.address()
  if (address !== null && typeof address === "object") console.log(`Listening on ws://127.0.0.1:${address.port}`)
})
process.on("SIGTERM", () => {
  void io.close()
  process.exit(0)
})
