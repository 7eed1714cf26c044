/**
 * The SDK's idempotent sends: every send carries a clientMessageId (a fresh UUID unless the caller
 * gives one), and a send that failed with Timeout, DependencyUnavailable or a lost connection is
 * tried again with the same id, as long as the schedule allows. Against a scripted /rpc server,
 * then end to end against the embedded one.
 */
import { randomUUID } from "node:crypto"
import { Rpc } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Logger, LogLevel, Schedule, Schema } from "effect"
import { WebSocketServer } from "ws"
import {
  ChatEvent,
  ChatRpcs,
  Conflict,
  DependencyUnavailable,
  EnrichedChatEvent,
  type SendError,
  Timeout
} from "@chatify/domain"
import { makeTempDirectory, startTestServer } from "@chatify/server/testing"
import { makeChatClient } from "../src/node.js"

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Error)

const encodeSendExit = Schema.encodeSync(
  Rpc.exitSchema(ChatRpcs.requests.get("Send")!) as unknown as Schema.Schema<
    Exit.Exit<EnrichedChatEvent, SendError>,
    unknown
  >
)

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** What the scripted server does with the n-th Send it receives. */
type Answer = Exit.Exit<EnrichedChatEvent, SendError> | "drop-connection"

interface SendRequest {
  readonly scopeType: number
  readonly scopeId: string
  readonly text: string
  readonly clientMessageId?: string
}

const eventFor = (payload: SendRequest, offset: number) =>
  new EnrichedChatEvent({
    chatEvent: new ChatEvent({
      messageId: randomUUID(),
      scopeType: 0,
      scopeId: payload.scopeId,
      senderId: "alice",
      text: payload.text,
      createdAtUtc: new Date("2026-01-15T10:30:00Z"),
      originPodId: "pod-fake"
    }),
    partition: 0,
    offset
  })

/**
 * A /rpc server speaking just enough of the ndjson protocol: each Send is recorded and answered by
 * the script (the last answer again once it is used up); `drop-connection` closes the socket instead.
 */
const scriptedServer = (script: ReadonlyArray<(payload: SendRequest) => Answer>) =>
  Effect.gen(function*() {
    const sends: Array<SendRequest> = []
    const wss = yield* Effect.acquireRelease(
      Effect.async<WebSocketServer>((resume) => {
        const server: WebSocketServer = new WebSocketServer({ host: "127.0.0.1", port: 0 }, () =>
          resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.async<void>((resume) => {
          for (const client of server.clients) {
            client.terminate()
          }
          server.close(() =>
            resume(Effect.void)
          )
        })
    )
    wss.on("connection", (socket) => {
      socket.on("message", (data: Buffer) => {
        for (const line of data.toString().split("\n")) {
          if (line.trim() === "") continue
          const message = JSON.parse(line) as { _tag: string; id?: string; tag?: string; payload?: SendRequest }
          if (message._tag === "Ping") socket.send(`{"_tag":"Pong"}\n`)
          if (message._tag !== "Request" || message.tag !== "Send" || message.payload === undefined) continue
          sends.push(message.payload)
          const answer = script[Math.min(sends.length, script.length) - 1]!(message.payload)
          if (answer === "drop-connection") {
            socket.terminate()
            continue
          }
          socket.send(JSON.stringify({ _tag: "Exit", requestId: message.id, exit: encodeSendExit(answer) }) + "\n")
        }
      })
    })
    const address = wss.address()
    const port = address !== null && typeof address === "object" ? address.port : 0
    return { url: `ws://127.0.0.1:${port}/rpc`, sends }
  })

const fastRetry = Schedule.spaced("10 millis").pipe(Schedule.intersect(Schedule.recurs(5)))
const scope = { scopeType: 0 as const, scopeId: "general" }

describe("ChatClient.send is idempotent", () => {
  it.scopedLive("every send carries a fresh UUID; a retry after Timeout or DependencyUnavailable carries the same one", () =>
    Effect.gen(function*() {
      const server = yield* scriptedServer([
        () => Exit.fail(new Timeout({ operation: "produce" })),
        () => Exit.fail(new DependencyUnavailable({ dependency: "kafka", message: "down" })),
        (payload) => Exit.succeed(eventFor(payload, 7))
      ])
      const client = yield* makeChatClient({ url: server.url, sendRetry: fastRetry })
      const sent = yield* client.send({ ...scope, text: "hello" })
      expect(sent.offset).toBe(7)
      expect(server.sends).toHaveLength(3)
      const [first, second, third] = server.sends
      expect(first?.clientMessageId).toMatch(uuid)
      expect(second?.clientMessageId).toBe(first?.clientMessageId)
      expect(third?.clientMessageId).toBe(first?.clientMessageId)

      // the next send is another message: another id
      yield* client.send({ ...scope, text: "hello" })
      expect(server.sends[3]?.clientMessageId).toMatch(uuid)
      expect(server.sends[3]?.clientMessageId).not.toBe(first?.clientMessageId)
    }).pipe(quiet))

  it.scopedLive("a caller's own clientMessageId is sent as given", () =>
    Effect.gen(function*() {
      const server = yield* scriptedServer([(payload) => Exit.succeed(eventFor(payload, 0))])
      const client = yield* makeChatClient({ url: server.url, sendRetry: fastRetry })
      yield* client.send({ ...scope, text: "hello", clientMessageId: "order-42" })
      expect(server.sends.map((s) => s.clientMessageId)).toEqual(["order-42"])
    }).pipe(quiet))

  it.scopedLive("a send whose connection was lost is tried again, on the new connection, with the same id", () =>
    Effect.gen(function*() {
      const server = yield* scriptedServer([() => "drop-connection", (payload) => Exit.succeed(eventFor(payload, 3))])
      const client = yield* makeChatClient({
        url: server.url,
        sendRetry: fastRetry,
        reconnect: Schedule.spaced("10 millis")
      })
      const sent = yield* client.send({ ...scope, text: "hello" })
      expect(sent.offset).toBe(3)
      expect(server.sends).toHaveLength(2)
      expect(server.sends[1]?.clientMessageId).toBe(server.sends[0]?.clientMessageId)
    }).pipe(quiet))

  it.scopedLive("errors a retry cannot cure (Conflict, ValidationError, RateLimited, …) are not retried", () =>
    Effect.gen(function*() {
      const server = yield* scriptedServer([() => Exit.fail(new Conflict({ message: "reused" }))])
      const client = yield* makeChatClient({ url: server.url, sendRetry: fastRetry })
      const error = yield* Effect.flip(client.send({ ...scope, text: "hello" }))
      expect(error._tag).toBe("Conflict")
      expect(server.sends).toHaveLength(1)
    }).pipe(quiet))

  it.scopedLive("retries are bounded: the last failure once the schedule gives up", () =>
    Effect.gen(function*() {
      const server = yield* scriptedServer([() => Exit.fail(new Timeout({ operation: "produce" }))])
      const client = yield* makeChatClient({ url: server.url, sendRetry: Schedule.recurs(2) })
      const error = yield* Effect.flip(client.send({ ...scope, text: "hello" }))
      expect(error._tag).toBe("Timeout")
      expect(server.sends).toHaveLength(3)
      expect(new Set(server.sends.map((s) => s.clientMessageId)).size).toBe(1)
    }).pipe(quiet))

  it.scopedLive("the default schedule retries a few times over a few seconds, then gives up", () =>
    Effect.gen(function*() {
      const server = yield* scriptedServer([
        () => Exit.fail(new DependencyUnavailable({ dependency: "kafka", message: "down" }))
      ])
      const client = yield* makeChatClient({ url: server.url })
      const started = Date.now()
      const error = yield* Effect.flip(client.send({ ...scope, text: "hello" }))
      expect(error._tag).toBe("DependencyUnavailable")
      expect(server.sends).toHaveLength(6)
      expect(Date.now() - started).toBeLessThan(8_000)
    }).pipe(quiet))

  it.scopedLive("end to end: a repeated send with one clientMessageId is one message in the history", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ dataDirectory: yield* makeTempDirectory() })
      const client = yield* makeChatClient({ url: server.wsUrl })
      const room = { scopeType: 0 as const, scopeId: `room-${randomUUID()}` }
      const clientMessageId = randomUUID()
      const first = yield* client.send({ ...room, text: "once", clientMessageId })
      const again = yield* client.send({ ...room, text: "once", clientMessageId })
      expect(again).toEqual(first)
      const next = yield* client.send({ ...room, text: "next" })
      expect(next.offset).toBe(first.offset + 1)
      const page = yield* client.history({ ...room, limit: 10 }).pipe(
        Effect.filterOrFail((page) => page.items.length >= 2, () => new Error("the history writer is behind")),
        Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 250 })
      )
      expect(page.items.map((e) => e.chatEvent.text)).toEqual(["next", "once"])
    }).pipe(quiet))
})
