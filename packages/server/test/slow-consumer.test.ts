/**
 * A subscriber that stops reading costs bounded memory: the server cuts it off (SignalR: a Close
 * saying the connection is too slow; RPC: SubscriptionLagged) while everyone else gets every event.
 */
import { describe, expect, it } from "@effect/vitest"
import { HttpServer } from "@effect/platform"
import { Context, Effect, Layer, Logger, LogLevel, Schedule } from "effect"
import type { Socket } from "node:net"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import WebSocket from "ws"
import { LocalFanout } from "@chatify/core"
import { ChatEvent, EnrichedChatEvent } from "@chatify/domain"
import { ChatServer, NodeServer } from "../src/index.js"
import { defaultLimitSettings, type LimitSettings } from "../src/Limits.js"
import { awaitReady, makeTempDirectory, testServerConfig } from "../src/testing.js"

const RS = "\u001e"
const EVENTS = 50_000
const FAST = 100
const MARKER = "flood-"

// a full collection before each reading, so what is measured is what is retained, not garbage
setFlagsFromString("--expose-gc")
const collectGarbage = runInNewContext("gc") as () => void
const retainedBytes = () => {
  // the second pass frees what the first one only released (buffers behind finalizers)
  collectGarbage()
  collectGarbage()
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.external
}

/** The server, in this process, with its fan-out at hand so events can be published at full speed. */
const startServer = (limits: LimitSettings = defaultLimitSettings) =>
  Effect.gen(function*() {
    const config = testServerConfig(yield* makeTempDirectory(), { port: 0, limits })
    const context = yield* Layer.build(ChatServer(config).pipe(Layer.provideMerge(NodeServer(config)))).pipe(
      Effect.orDie
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    const port = address._tag === "TcpAddress" ? address.port : 0
    yield* awaitReady(`http://127.0.0.1:${port}`)
    return { port, fanout: Context.get(context, LocalFanout) }
  })

interface Client {
  readonly ws: WebSocket
  /** Events received (counted by their marker; a frame may hold several). */
  received: number
  text: string
}

const countMarkers = (text: string) => {
  let count = 0
  for (let at = text.indexOf(MARKER); at >= 0; at = text.indexOf(MARKER, at + 1)) count++
  return count
}

/** Opens a raw client and subscribes it to the scope "flood"; resolves once it is live. */
const subscribe = (kind: "signalr" | "rpc", port: number, keepText = false, acknowledge = true, query = "") =>
  Effect.async<Client, Error>((resume) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${kind === "signalr" ? "/hubs/chat" : "/rpc"}${query}`)
    const client: Client = { ws, received: 0, text: "" }
    let live = false
    ws.on("error", (error) => resume(Effect.fail(error)))
    ws.on("message", (data: Buffer) => {
      const text = data.toString()
      if (keepText) client.text += text
      client.received += countMarkers(text)
      if (kind === "rpc") {
        for (const line of text.split("\n")) {
          if (acknowledge && line.startsWith(`{"_tag":"Chunk"`)) ws.send(`{"_tag":"Ack","requestId":"1"}\n`)
        }
      }
      if (!live && (kind === "signalr" ? text.includes(`"type":3`) : text.includes(`"Subscribed"`))) {
        live = true
        resume(Effect.succeed(client))
      }
    })
    ws.on("open", () => {
      if (kind === "signalr") {
        // as real clients do: a ping every few seconds, or the server closes a silent client after 30 s
        const pinging = setInterval(() => ws.send(JSON.stringify({ type: 6 }) + RS), 5_000)
        ws.once("close", () => clearInterval(pinging))
        ws.send(JSON.stringify({ protocol: "json", version: 1 }) + RS)
        ws.send(JSON.stringify({ type: 1, invocationId: "1", target: "JoinScopeAsync", arguments: ["flood"] }) + RS)
      } else {
        ws.send(
          JSON.stringify({
            _tag: "Request",
            id: "1",
            tag: "Subscribe",
            payload: { scopeType: 0, scopeId: "flood" },
            headers: []
          }) + "\n"
        )
      }
    })
  })

const eventAt = (offset: number) =>
  new EnrichedChatEvent({
    chatEvent: new ChatEvent({
      messageId: crypto.randomUUID(),
      scopeType: 0,
      scopeId: "flood",
      senderId: "bob",
      text: `${MARKER}${offset} ${"x".repeat(80)}`,
      createdAtUtc: new Date(),
      originPodId: "pod-test"
    }),
    partition: 0,
    offset
  })

const waitUntil = (condition: () => boolean, what: string) =>
  Effect.suspend(() => (condition() ? Effect.void : Effect.fail(new Error(`timed out waiting for ${what}`)))).pipe(
    Effect.retry({ schedule: Schedule.spaced("10 millis"), times: 6_000 })
  )

const floodTest = (kind: "signalr" | "rpc") =>
  Effect.gen(function*() {
    const { fanout, port } = yield* startServer()
    const fast: Array<Client> = []
    for (let i = 0; i < FAST; i += 20) {
      fast.push(...(yield* Effect.all(Array.from({ length: 20 }, () => subscribe(kind, port)), { concurrency: 20 })))
    }
    const slow = yield* subscribe(kind, port, true)
    // the slow client stops reading: what the server writes piles up in its buffers
    const slowSocket = (slow.ws as unknown as { readonly _socket: Socket })._socket
    slowSocket.pause()
    expect(yield* fanout.subscriberCount).toBe(FAST + 1)

    const before = retainedBytes()
    let peak = before
    // published in slices as a broadcast consumer would: sockets are written between them
    for (let offset = 0; offset < EVENTS; offset += 1_000) {
      for (let i = 0; i < 1_000; i++) yield* fanout.publish(eventAt(offset + i))
      yield* waitUntil(
        () => fast.every((client) => client.received >= offset + 1_000),
        `the fast clients to receive ${offset + 1_000}`
      )
      if (offset % 10_000 === 0) peak = Math.max(peak, retainedBytes())
    }
    peak = Math.max(peak, retainedBytes())
    expect(fast.map((client) => client.received)).toEqual(Array(FAST).fill(EVENTS))
    // the server let go of the slow subscriber instead of buffering 50,000 events for it
    expect(yield* fanout.subscriberCount).toBe(FAST)
    // server and clients share this process: the bound covers both
    expect(peak - before).toBeLessThan(50 * 1024 * 1024)

    slowSocket.resume()
    if (kind === "signalr") {
      yield* waitUntil(() => slow.text.includes(`"type":7`), "the slow client to read its Close")
      expect(slow.text).toMatch(
        /"error":"Connection too slow: more than \d+ bytes were waiting for it\.","allowReconnect":true/u
      )
    } else {
      yield* waitUntil(() => slow.text.includes(`"_tag":"Exit"`), "the slow client to read its Exit")
      expect(slow.text).toContain(`"_tag":"SubscriptionLagged"`)
    }
    expect(slow.received).toBeLessThan(EVENTS)
    for (const client of [...fast, slow]) client.ws.close()
  }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning))

describe("a subscriber that stops reading", () => {
  it.live(
    "SignalR: it is closed as too slow; 100 others get all 50,000 events; retained memory stays bounded",
    () => floodTest("signalr"),
    { timeout: 120_000 }
  )
  it.live(
    "RPC: its subscription lags; 100 others get all 50,000 events; retained memory stays bounded",
    () => floodTest("rpc"),
    { timeout: 120_000 }
  )
})

describe("an RPC subscription whose chunk is never acknowledged", () => {
  it.live("ends with SubscriptionLagged after CHATIFY__LIMITS__SUBSCRIPTIONACKTIMEOUTSECONDS, its pending events first", () =>
    Effect.gen(function*() {
      const { fanout, port } = yield* startServer({ ...defaultLimitSettings, subscriptionAckTimeoutSeconds: 1 })
      // reads everything, acknowledges nothing: its Subscribed chunk waits for an Ack forever
      const client = yield* subscribe("rpc", port, true, false)
      const liveAt = Date.now()
      yield* fanout.publish(eventAt(0))
      yield* waitUntil(() => client.text.includes(`"_tag":"Exit"`), "the subscription's Exit")
      // the timeout (1 s) to 1.25 × it, plus a sweep's lateness
      expect(Date.now() - liveAt).toBeGreaterThanOrEqual(1_000)
      expect(client.text).toContain(`"_tag":"SubscriptionLagged"`)
      // what it held went out before the Exit: the client resumes after it, from the history
      expect(client.text.indexOf(`${MARKER}0 `)).toBeGreaterThan(0)
      expect(client.text.indexOf(`${MARKER}0 `)).toBeLessThan(client.text.indexOf(`"_tag":"Exit"`))
      // its fan-out subscription is released (asynchronously, with its scope)
      yield* fanout.subscriberCount.pipe(
        Effect.repeat({ until: (count) => count === 0, schedule: Schedule.spaced("10 millis"), times: 500 })
      )
      expect(yield* fanout.subscriberCount).toBe(0)
      client.ws.close()
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning)))
})

describe("an RPC client that does not acknowledge (/rpc?acks=none)", () => {
  it.live("gets each chunk as soon as it is due, none held back for an Ack", () =>
    Effect.gen(function*() {
      const { fanout, port } = yield* startServer({ ...defaultLimitSettings, subscriptionAckTimeoutSeconds: 1 })
      const client = yield* subscribe("rpc", port, true, false, "?acks=none")
      // one event at a time, each in a chunk of its own: with Acks awaited, the first would hold the rest
      for (let offset = 0; offset < 3; offset++) {
        yield* fanout.publish(eventAt(offset))
        yield* waitUntil(() => client.received === offset + 1, `event ${offset}`)
      }
      // and the subscription is not ended for want of Acks
      yield* Effect.sleep("2500 millis")
      expect(client.text).not.toContain(`"_tag":"Exit"`)
      expect(yield* fanout.subscriberCount).toBe(1)
      client.ws.close()
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning)))

  it.live("any other acks value is refused before the upgrade, with ProblemDetails", () =>
    Effect.gen(function*() {
      const { port } = yield* startServer()
      const refused = yield* Effect.async<{ readonly status: number | undefined; readonly body: string }>((resume) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/rpc?acks=some`)
        ws.on("error", () => undefined)
        ws.on("unexpected-response", (_request, response) => {
          let body = ""
          response.on("data", (chunk: Buffer) => (body += chunk.toString()))
          response.on("end", () => resume(Effect.succeed({ status: response.statusCode, body })))
        })
      })
      expect(refused.status).toBe(400)
      expect(refused.body).toContain(`"field":"acks"`)
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning)))
})
