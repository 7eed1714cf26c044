import { WebSocket as NodeWebSocket, WebSocketServer } from "ws"
import * as Socket from "@effect/platform/Socket"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { inArrivalOrder } from "../src/Frames.js"

/** A loopback WebSocket server that sends `frames` to every client once it connects, and keeps the socket open. */
const serverSending = (frames: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.async<WebSocketServer>((resume) => {
      const server: WebSocketServer = new WebSocketServer(
        { host: "127.0.0.1", port: 0 },
        () => resume(Effect.succeed(server))
      )
      server.on("connection", (socket: NodeWebSocket) => {
        for (const frame of frames) socket.send(frame)
      })
    }),
    (server) => Effect.async<void>((resume) => server.close(() => resume(Effect.void)))
  ).pipe(Effect.map((server) => {
    const address = server.address()
    return `ws://127.0.0.1:${address !== null && typeof address === "object" ? address.port : 0}`
  }))

const socketTo = (url: string) =>
  Socket.fromWebSocket(
    Effect.acquireRelease(
      Effect.sync(() => new NodeWebSocket(url) as unknown as globalThis.WebSocket),
      (ws) => Effect.sync(() => ws.close(1000))
    )
  )

/**
 * Runs the socket with a handler whose effect for the first frame takes longer than the one for the
 * second, until both are handled, and returns the order they finished in.
 */
const handledOrder = (socket: Socket.Socket) =>
  Effect.gen(function*() {
    const handled: Array<string> = []
    const handler = (data: string | Uint8Array) => {
      const frame = typeof data === "string" ? data : new TextDecoder().decode(data)
      const record = Effect.sync(() => void handled.push(frame))
      return frame === "first" ? Effect.zipRight(Effect.sleep("50 millis"), record) : record
    }
    const bothHandled = Effect.sleep("5 millis").pipe(Effect.repeat({ until: () => handled.length === 2 }))
    yield* Effect.raceFirst(Effect.zipRight(socket.runRaw(handler), Effect.never), bothHandled).pipe(
      Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the frames were not handled") })
    )
    return handled
  })

describe("inArrivalOrder", () => {
  it.scopedLive("handles each frame after the one before it, where runRaw alone lets a quick one overtake a slow one", () =>
    Effect.gen(function*() {
      const url = yield* serverSending(["first", "second"])
      // the hazard it guards against: runRaw forks a fiber per frame
      expect(yield* handledOrder(yield* socketTo(url))).toEqual(["second", "first"])
      expect(yield* handledOrder(inArrivalOrder(yield* socketTo(url)))).toEqual(["first", "second"])
    }))
})
