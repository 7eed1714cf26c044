// The SignalR hub with the official @microsoft/signalr client: join, send, print what arrives.
//   pnpm --filter @chatify/examples signalr
//   (CHATIFY_URL, default http://localhost:8080; CHATIFY_TOKEN when the server requires authentication)
import * as signalR from "@microsoft/signalr"

const server = process.env.CHATIFY_URL ?? "http://localhost:8080"
const token = process.env.CHATIFY_TOKEN

const connection = new signalR.HubConnectionBuilder()
  .withUrl(`${server}/hubs/chat`, {
    // only with authentication on: the Authorization header on negotiate (and on the WebSocket
    // from Node); ?access_token= on the WebSocket from a browser
    ...(token === undefined ? {} : { accessTokenFactory: () => token })
  })
  .withAutomaticReconnect()
  .configureLogging(signalR.LogLevel.Warning)
  .build()

const arrived = new Set() // the message ids received so far
let onArrival = () => {}
connection.on("ReceiveMessage", (event) => {
  console.log(`received [${event.scopeId}] ${event.senderId}: ${event.text}`)
  arrived.add(event.messageId)
  onArrival()
})

await connection.start()
try {
  // joined once this completes: every later message of the scope reaches the connection
  await connection.invoke("JoinScopeAsync", "general")
  const sent = await connection.invoke("SendAsync", { scopeType: 0, scopeId: "general", text: "Hello from SignalR!" })
  console.log(`sent ${sent.chatEvent.messageId} (partition ${sent.partition}, offset ${sent.offset})`)
  // wait (at most 10 s) for our own message to arrive
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the message did not arrive within 10 s")), 10_000)
    onArrival = () => {
      if (!arrived.has(sent.chatEvent.messageId)) return
      clearTimeout(timer)
      resolve()
    }
    onArrival()
  })
  await connection.invoke("LeaveScopeAsync", "general")
} finally {
  await connection.stop()
}
