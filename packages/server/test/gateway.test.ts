/**
 * The WebSocket gateway bounds what a client can make the server buffer: a frame over the limit
 * closes that socket with 1009 before it is read whole, and the server goes on serving others.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Logger, LogLevel } from "effect"
import WebSocket from "ws"
import { startTestServer } from "../src/testing.js"

/** Opens a socket, sends `frame` once open, and resolves with the close code the server gives. */
const closeCodeAfter = (url: string, frame: string) =>
  Effect.async<number, Error>((resume) => {
    const ws = new WebSocket(url)
    ws.on("open", () => ws.send(frame))
    ws.on("close", (code) => resume(Effect.succeed(code)))
    ws.on("error", () => undefined)
  })

/** Subscribes over /rpc and resolves once the server says Subscribed. */
const subscribes = (url: string) =>
  Effect.async<boolean, Error>((resume) => {
    const ws = new WebSocket(url)
    ws.on("open", () =>
      ws.send(
        JSON.stringify({
          _tag: "Request",
          id: "1",
          tag: "Subscribe",
          payload: { scopeType: 0, scopeId: "general" },
          headers: []
        }) + "\n"
      ))
    ws.on("message", (data: Buffer) => {
      if (data.toString().includes(`"Subscribed"`)) {
        ws.close()
        resume(Effect.succeed(true))
      }
    })
    ws.on("error", (error) => resume(Effect.fail(error)))
  })

describe("WebSocket gateway", () => {
  it.scopedLive("a 2 MiB frame closes its socket with 1009 on /rpc and /hubs/chat; other clients are served", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const huge = "x".repeat(2 * 1024 * 1024)
      expect(yield* closeCodeAfter(server.wsUrl, huge)).toBe(1009)
      expect(yield* closeCodeAfter(`ws://127.0.0.1:${server.port}/hubs/chat`, huge)).toBe(1009)
      expect(yield* subscribes(server.wsUrl)).toBe(true)
    }).pipe(Logger.withMinimumLogLevel(LogLevel.Warning)))
})
