/**
 * CHATIFY__LIMITS__* and anonymous rate limits by client address, each through the real server:
 * the limit holds, its error is typed, and the server (and the other clients) carry on.
 */
import { NodeSocket } from "@effect/platform-node"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { HttpTransportType, HubConnectionBuilder, LogLevel } from "@microsoft/signalr"
import { request as httpRequest } from "node:http"
import { Effect, Exit, Layer, Logger, LogLevel as EffectLogLevel, Schema, Stream } from "effect"
import { WebSocket } from "ws"
import { ChatRpcs, ProblemDetails } from "@chatify/domain"
import { defaultLimitSettings, type LimitSettings } from "../src/Limits.js"
import { startTestServer } from "../src/testing.js"

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, EffectLogLevel.Warning)

const decodeProblem = Schema.decodeUnknownSync(ProblemDetails)

const withLimits = (limits: Partial<LimitSettings>, rest: Parameters<typeof startTestServer>[0] = {}) =>
  startTestServer({ ...rest, config: { ...rest.config, limits: { ...defaultLimitSettings, ...limits } } })

/** A raw WebSocket: opened (or refused with its HTTP status) and, once open, how it closed. */
const openSocket = (url: string, headers: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.async<{ readonly ws: WebSocket; readonly status: number; readonly closed: Promise<number> }>((resume) => {
      const ws = new WebSocket(url, { headers })
      const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)))
      ws.once("open", () => resume(Effect.succeed({ ws, status: 101, closed })))
      ws.once("unexpected-response", (_request, response) => {
        resume(Effect.succeed({ ws, status: response.statusCode ?? 0, closed }))
        response.resume()
      })
      ws.once("error", () => resume(Effect.succeed({ ws, status: 0, closed })))
    }),
    ({ ws }) => Effect.sync(() => ws.terminate())
  )

const post = (url: string, body: string | Uint8Array, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body
    })
    return { status: response.status, body: await response.json() }
  })

/**
 * A POST whose body arrives in chunks, with no Content-Length (the server learns its size only as it
 * reads): its status, or "cut off" when the server closed the connection without an answer.
 */
const postChunked = (url: string, chunks: ReadonlyArray<string>) =>
  Effect.async<number | "cut off">((resume) => {
    const request = httpRequest(url, {
      method: "POST",
      headers: { "content-type": "application/json", "transfer-encoding": "chunked" }
    })
    request.on("response", (response) => {
      response.resume()
      response.on("end", () => resume(Effect.succeed(response.statusCode ?? 0)))
    })
    request.on("error", () => resume(Effect.succeed("cut off")))
    for (const chunk of chunks) request.write(chunk)
    request.end()
  })

const sendBody = (scopeId: string, text = "hi") => JSON.stringify({ scopeType: 0, scopeId, text })

describe("limits on every input", () => {
  it.scopedLive("a WebSocket frame above MaxFrameBytes closes the socket with 1009 on /rpc and /hubs/chat; the server serves on", () =>
    Effect.gen(function*() {
      const server = yield* withLimits({ maxFrameBytes: 4096 })
      for (const path of ["/rpc", "/hubs/chat"]) {
        const { closed, status, ws } = yield* openSocket(`${server.wsUrl.replace(/\/rpc$/, "")}${path}`)
        expect(status, path).toBe(101)
        ws.send(Buffer.alloc(4097, 0x61))
        expect(yield* Effect.promise(() => closed), path).toBe(1009)
      }
      // a frame at the limit is read (and answered) as usual: a SignalR handshake padded with spaces
      const { ws } = yield* openSocket(`${server.wsUrl.replace(/\/rpc$/, "")}/hubs/chat`)
      const answer = new Promise<string>((resolve) => ws.once("message", (data: Buffer) => resolve(data.toString())))
      const handshake = JSON.stringify({ protocol: "json", version: 1 })
      ws.send(handshake + " ".repeat(4096 - handshake.length - 1) + "\u001e")
      expect(yield* Effect.promise(() => answer)).toBe("{}\u001e")
    }).pipe(quiet))

  it.scopedLive("a REST body above MaxBodyBytes: announced, a 413 ProblemDetails; chunked, cut off once past the limit", () =>
    Effect.gen(function*() {
      const server = yield* withLimits({ maxBodyBytes: 1024 })
      const url = `${server.httpUrl}/api/chat/send`
      const announced = yield* post(url, sendBody("general", "x".repeat(2000)))
      expect(announced.status).toBe(413)
      expect(decodeProblem(announced.body)).toMatchObject({ type: "urn:chatify:problem:limit-exceeded", status: 413 })
      expect(decodeProblem(announced.body).detail).toContain("CHATIFY__LIMITS__MAXBODYBYTES")

      const text = (
        length: number
      ) => [`{"scopeType":0,"scopeId":"general","text":"`, "y".repeat(length / 2), "y".repeat(length / 2), `"}`]
      expect(yield* postChunked(url, text(1600))).toBe("cut off")
      expect(yield* postChunked(url, text(800))).toBe(200)

      // a body within the limit is served
      expect((yield* post(url, sendBody("general"))).status).toBe(200)
    }).pipe(quiet))

  it.scopedLive("subscriptions per connection: the next Subscribe (RPC) or JoinScopeAsync (SignalR) fails with LimitExceeded; leaving one makes room", () =>
    Effect.gen(function*() {
      const server = yield* withLimits({ maxSubscriptionsPerConnection: 2 })
      const context = yield* Layer.build(
        RpcClient.layerProtocolSocket().pipe(
          Layer.provide(NodeSocket.layerWebSocket(server.wsUrl)),
          Layer.provide(RpcSerialization.layerNdjson)
        )
      )
      const rpc = yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))
      const subscribed = (scopeId: string) =>
        rpc.Subscribe({ scopeType: 0, scopeId }).pipe(Stream.take(1), Stream.runDrain)
      // two live subscriptions held open, each acknowledged by its Subscribed item
      const held = yield* Effect.forEach(["a", "b"], (scopeId) =>
        Effect.gen(function*() {
          const first = yield* Effect.makeLatch()
          const fiber = yield* rpc.Subscribe({ scopeType: 0, scopeId }).pipe(
            Stream.tap(() => first.open),
            Stream.runDrain,
            Effect.forkScoped
          )
          yield* first.await
          return fiber
        }))
      const third = yield* Effect.exit(subscribed("c"))
      expect(Exit.isFailure(third) && third.cause._tag === "Fail" ? third.cause.error._tag : third).toBe(
        "LimitExceeded"
      )
      yield* Effect.forEach(held.slice(0, 1), (fiber) => fiber.interruptAsFork(fiber.id()))
      // the server lets go of the ended one: a new subscription fits (waiting on the condition, bounded)
      yield* subscribed("c").pipe(
        Effect.retry({ times: 50, while: (error) => error._tag === "LimitExceeded" }),
        Effect.timeout("10 seconds")
      )

      const hub = new HubConnectionBuilder()
        .withUrl(`${server.httpUrl}/hubs/chat`, { transport: HttpTransportType.WebSockets })
        .configureLogging(LogLevel.None)
        .build()
      yield* Effect.acquireRelease(Effect.promise(() => hub.start()), () => Effect.promise(() => hub.stop()))
      const invoke = (method: string, scopeId: string) =>
        Effect.promise(() =>
          hub.invoke<unknown>(method, scopeId).then(() => "accepted", (error: unknown) => String(error))
        )
      expect(yield* invoke("JoinScopeAsync", "a")).toBe("accepted")
      expect(yield* invoke("JoinScopeAsync", "b")).toBe("accepted")
      expect(yield* invoke("JoinScopeAsync", "a")).toBe("accepted") // already a member: nothing new
      const refused = yield* invoke("JoinScopeAsync", "c")
      expect(refused).toContain("Limit exceeded")
      expect(refused).toContain("CHATIFY__LIMITS__MAXSUBSCRIPTIONSPERCONNECTION")
      expect(yield* invoke("LeaveScopeAsync", "a")).toBe("accepted")
      expect(yield* invoke("JoinScopeAsync", "c")).toBe("accepted")
    }).pipe(quiet))

  it.scopedLive("requests running on one RPC connection: beyond MaxConcurrentRequestsPerConnection it is closed with 1008; within it all are answered", () =>
    Effect.gen(function*() {
      const server = yield* withLimits({ maxConcurrentRequestsPerConnection: 3 })
      // sends in one frame all run at once: each waits for the journal's commit at the end of the turn
      const frame = (count: number) =>
        Array.from(
          { length: count },
          (_, i) =>
            JSON.stringify({
              _tag: "Request",
              id: String(i + 1),
              tag: "Send",
              payload: { scopeType: 0, scopeId: "general", text: `m${i}` },
              headers: []
            }) + "\n"
        ).join("")
      const within = yield* openSocket(server.wsUrl)
      const answered = new Promise<number>((resolve) => {
        let exits = 0
        within.ws.on("message", (data: Buffer) => {
          exits += data.toString().split("\n").filter((line) => line.includes(`"_tag":"Exit"`)).length
          if (exits === 3) resolve(exits)
        })
      })
      within.ws.send(frame(3))
      expect(yield* Effect.promise(() => answered)).toBe(3)

      const flooding = yield* openSocket(server.wsUrl)
      flooding.ws.send(frame(5))
      expect(yield* Effect.promise(() => flooding.closed)).toBe(1008)
    }).pipe(quiet))

  it.scopedLive("a send refused by its checks is answered at once and does not count as running: many on one RPC connection leave it open", () =>
    Effect.gen(function*() {
      const server = yield* withLimits({ maxConcurrentRequestsPerConnection: 3 })
      const request = (id: number, text: string) =>
        JSON.stringify({
          _tag: "Request",
          id: String(id),
          tag: "Send",
          payload: { scopeType: 0, scopeId: "general", text },
          headers: []
        }) + "\n"
      const socket = yield* openSocket(server.wsUrl)
      const exits = new Promise<ReadonlyArray<string>>((resolve) => {
        const lines: Array<string> = []
        socket.ws.on("message", (data: Buffer) => {
          lines.push(...data.toString().split("\n").filter((line) => line.includes(`"_tag":"Exit"`)))
          if (lines.length === 11) resolve(lines)
        })
      })
      // ten empty texts (each fails validation as its fiber starts), more than the limit, then one that is sent
      socket.ws.send(
        Array.from({ length: 10 }, (_, i) => request(i + 1, "")).join("") + request(11, "after ten refusals")
      )
      const lines = yield* Effect.promise(() => exits).pipe(Effect.timeout("10 seconds"))
      expect(
        lines.slice(0, 10).every((line) =>
          line.includes(`"_tag":"Failure"`) && line.includes(`"_tag":"ValidationError"`)
        )
      )
        .toBe(true)
      expect(lines[10]).toContain(`"requestId":"11","exit":{"_tag":"Success"`)
      expect(socket.ws.readyState).toBe(WebSocket.OPEN)
    }).pipe(quiet))

  it.scopedLive("an Interrupt of a send still running on an RPC connection answers it with an interrupted Exit", () =>
    Effect.gen(function*() {
      const server = yield* withLimits({})
      const socket = yield* openSocket(server.wsUrl)
      const exit = new Promise<string>((resolve) => {
        socket.ws.on("message", (data: Buffer) => {
          const line = data.toString().split("\n").find((line) => line.includes(`"_tag":"Exit"`))
          if (line !== undefined) resolve(line)
        })
      })
      // in one frame: the send waits for the journal's commit at the end of the turn, the Interrupt comes first
      socket.ws.send(
        JSON.stringify({
          _tag: "Request",
          id: "1",
          tag: "Send",
          payload: { scopeType: 0, scopeId: "general", text: "interrupted" },
          headers: []
        }) + "\n" + JSON.stringify({ _tag: "Interrupt", requestId: "1" }) + "\n"
      )
      const line = yield* Effect.promise(() => exit).pipe(Effect.timeout("10 seconds"))
      expect(line).toBe(
        `{"_tag":"Exit","requestId":"1","exit":{"_tag":"Failure","cause":{"_tag":"Interrupt","fiberId":{"_tag":"None"}}}}`
      )
    }).pipe(quiet))

  it.scopedLive("connections per address: one more is refused with 429 until one closes; X-Forwarded-For counts only behind a trusted proxy", () =>
    Effect.gen(function*() {
      const limited = yield* withLimits({ maxConnectionsPerAddress: 2 })
      const first = yield* openSocket(limited.wsUrl)
      yield* openSocket(limited.wsUrl)
      // a client cannot claim another address where no proxy is trusted
      expect((yield* openSocket(limited.wsUrl, { "x-forwarded-for": "203.0.113.9" })).status).toBe(429)
      first.ws.close()
      yield* Effect.promise(() => first.closed)
      // the closed one no longer counts (its socket's close is seen a moment later: wait on it, bounded)
      const again = yield* openSocket(limited.wsUrl).pipe(
        Effect.filterOrFail((socket) => socket.status === 101),
        Effect.retry({ times: 50 }),
        Effect.timeout("10 seconds")
      )
      expect(again.status).toBe(101)

      const proxied = yield* withLimits({ maxConnectionsPerAddress: 1 }, {
        config: { trustedProxies: ["127.0.0.1", "::1"] }
      })
      const via = (client: string) => openSocket(proxied.wsUrl, { "x-forwarded-for": `${client}, 127.0.0.1` })
      expect((yield* via("203.0.113.1")).status).toBe(101)
      expect((yield* via("203.0.113.2")).status).toBe(101)
      expect((yield* via("203.0.113.1")).status).toBe(429)
    }).pipe(quiet))

  it.scopedLive("connects per second per address: beyond the limit an upgrade is refused with 429 (RateLimited)", () =>
    Effect.gen(function*() {
      const server = yield* withLimits({ maxConnectsPerSecondPerAddress: 3 })
      const firstSecond = Math.floor(Date.now() / 1000)
      const statuses = yield* Effect.forEach(
        Array.from({ length: 10 }),
        () => Effect.map(openSocket(server.wsUrl), (s) => s.status)
      )
      const windows = Math.floor(Date.now() / 1000) - firstSecond + 1
      // each one-second window lets three through
      expect(statuses.filter((status) => status === 101).length).toBeLessThanOrEqual(3 * windows)
      expect(statuses.every((status) => status === 101 || status === 429)).toBe(true)
      expect(statuses[0]).toBe(101)
    }).pipe(quiet))

  it.scopedLive("anonymous REST sends are rate-limited per client address, not per request", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({
        config: { rateLimit: { limit: 3, windowSeconds: 60, failOpen: true }, trustedProxies: ["127.0.0.1", "::1"] }
      })
      const url = `${server.httpUrl}/api/chat/send`
      const statuses = yield* Effect.forEach(
        [1, 2, 3, 4, 5],
        () => Effect.map(post(url, sendBody("general")), (r) => r.status)
      )
      expect(statuses).toEqual([200, 200, 200, 429, 429])
      // another client behind the trusted proxy has its own window
      const other = yield* post(url, sendBody("general"), { "x-forwarded-for": "203.0.113.7" })
      expect(other.status).toBe(200)
    }).pipe(quiet))
})
