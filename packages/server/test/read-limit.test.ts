/**
 * The read rate limit (CHATIFY__RATELIMIT__READLIMIT / __READWINDOWSECONDS) through the real server
 * on every interface: Subscribe, History and Presence count in one read window per caller, the read
 * past it is refused with RateLimited (a 429 with Retry-After, a typed RPC failure, a SignalR
 * completion error), and the caller's sends, counted in their own window, go on.
 */
import { NodeSocket } from "@effect/platform-node"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { HttpTransportType, HubConnectionBuilder, LogLevel } from "@microsoft/signalr"
import { Effect, Layer, Logger, LogLevel as EffectLogLevel, Option, Schema, Stream } from "effect"
import { SignJWT } from "jose"
import { ChatRpcs, PROBLEM_CONTENT_TYPE, ProblemDetails, RateLimited } from "@chatify/domain"
import { endpoints, ensureService } from "../../adapters/test/support/services.js"
import { hs256TestAuth, startTestServer } from "../src/testing.js"

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, EffectLogLevel.Warning)

/** A server whose callers may read `limit` times a minute (and send as often as they like). */
const withReadLimit = (limit: number) => startTestServer({ config: { readRateLimit: { limit, windowSeconds: 60 } } })

const get = (url: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(url, { headers })
    return {
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
      retryAfter: response.headers.get("retry-after"),
      body: await response.json()
    }
  })

const postSend = (httpUrl: string, scopeId: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${httpUrl}/api/chat/send`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ scopeType: 0, scopeId, text: "hi" })
    })
    await response.arrayBuffer()
    return response.status
  })

describe("read rate limit", () => {
  it.scopedLive("REST: History and Presence share the window; the read past it is a 429 ProblemDetails with Retry-After; sends go on", () =>
    Effect.gen(function*() {
      const server = yield* withReadLimit(2)
      const scopeUrl = `${server.httpUrl}/api/chat/scopes/0/general`
      expect((yield* get(`${scopeUrl}/history`)).status).toBe(200)
      expect((yield* get(`${scopeUrl}/presence`)).status).toBe(200)

      for (const path of ["history", "presence"]) {
        const refused = yield* get(`${scopeUrl}/${path}`)
        expect(refused.status, path).toBe(429)
        expect(refused.contentType).toContain(PROBLEM_CONTENT_TYPE)
        const problem = Schema.decodeUnknownSync(ProblemDetails)(refused.body)
        expect(problem).toMatchObject({ type: "urn:chatify:problem:rate-limited", status: 429 })
        expect(problem.detail).toContain("At most 2 reads")
        const retryAfter = Number(refused.retryAfter)
        expect(retryAfter).toBeGreaterThanOrEqual(1)
        expect(retryAfter).toBeLessThanOrEqual(60)
        expect(problem.retryAfterSeconds).toBe(retryAfter)
      }
      // the same caller's sends are counted in their own window
      expect(yield* postSend(server.httpUrl, "general")).toBe(200)
    }).pipe(quiet))

  it.scopedLive("RPC: Subscribe, History and Presence share the window; the read past it fails with a typed RateLimited; Send goes on", () =>
    Effect.gen(function*() {
      const server = yield* withReadLimit(3)
      const context = yield* Layer.build(
        RpcClient.layerProtocolSocket().pipe(
          Layer.provide(NodeSocket.layerWebSocket(server.wsUrl)),
          Layer.provide(RpcSerialization.layerNdjson)
        )
      )
      const rpc = yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))
      const scope = { scopeType: 0 as const, scopeId: "general" }
      const subscribed = rpc.Subscribe(scope).pipe(Stream.take(1), Stream.runDrain)
      yield* subscribed
      yield* rpc.History(scope)
      yield* rpc.Presence(scope)

      const expectRefused = (read: string, error: unknown) => {
        expect(error, read).toBeInstanceOf(RateLimited)
        expect(error, read).toMatchObject({ limit: 3, windowSeconds: 60, kind: "read" })
        const retryAfter = error instanceof RateLimited ? error.retryAfterSeconds : 0
        expect(retryAfter).toBeGreaterThanOrEqual(1)
        expect(retryAfter).toBeLessThanOrEqual(60)
      }
      expectRefused("Subscribe", yield* Effect.flip(subscribed))
      expectRefused("History", yield* Effect.flip(rpc.History(scope)))
      expectRefused("Presence", yield* Effect.flip(rpc.Presence(scope)))
      const sent = yield* rpc.Send({ ...scope, text: "still sending" })
      expect(sent.chatEvent.text).toBe("still sending")
    }).pipe(quiet))

  it.scopedLive("SignalR: the JoinScopeAsync past the window completes with a rate limit error; SendAsync goes on", () =>
    Effect.gen(function*() {
      const server = yield* withReadLimit(2)
      const hub = new HubConnectionBuilder()
        .withUrl(`${server.httpUrl}/hubs/chat`, { transport: HttpTransportType.WebSockets })
        .configureLogging(LogLevel.None)
        .build()
      yield* Effect.acquireRelease(Effect.promise(() => hub.start()), () => Effect.promise(() => hub.stop()))
      const invoke = (method: string, argument: unknown) =>
        Effect.promise(() =>
          hub.invoke<unknown>(method, argument).then(() => "accepted", (error: unknown) => String(error))
        )
      expect(yield* invoke("JoinScopeAsync", "a")).toBe("accepted")
      expect(yield* invoke("JoinScopeAsync", "b")).toBe("accepted")
      const refused = yield* invoke("JoinScopeAsync", "c")
      expect(refused).toContain("Too many requests")
      expect(refused).toContain("At most 2 reads")
      // the connection stays open, its memberships and its sends go on
      expect(yield* invoke("SendAsync", { scopeType: 0, scopeId: "a", text: "hi" })).toBe("accepted")
      expect(yield* invoke("LeaveScopeAsync", "a")).toBe("accepted")
    }).pipe(quiet))
})

describe("read rate limit on Redis", () => {
  beforeAll(() => ensureService("redis"), 300_000)

  const SECRET = "a-read-limit-test-secret-of-32-bytes"

  it.scopedLive("two pods share one read window per user in Redis, apart from the send window", () =>
    Effect.gen(function*() {
      const pod = (podId: string) =>
        startTestServer({
          config: {
            podId,
            auth: Option.some(hs256TestAuth(SECRET)),
            caching: Option.some({ connectionString: endpoints.redis }),
            rateLimit: { limit: 5, windowSeconds: 60, failOpen: false },
            readRateLimit: { limit: 3, windowSeconds: 60 }
          }
        })
      const podA = yield* pod("pod-a")
      const podB = yield* pod("pod-b")
      // a user of its own: the counters in Redis outlive this test
      const token = yield* Effect.promise(() =>
        new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(`reader-${crypto.randomUUID()}`)
          .setExpirationTime("10m").sign(new TextEncoder().encode(SECRET))
      )
      const authorization = { authorization: `Bearer ${token}` }
      const statuses = yield* Effect.forEach(Array.from({ length: 6 }, (_, i) => i), (i) =>
        Effect.map(
          get(
            `${i % 2 === 0 ? podA.httpUrl : podB.httpUrl}/api/chat/scopes/0/general/${
              i % 3 === 0 ? "presence" : "history"
            }`,
            authorization
          ),
          (reply) => reply.status
        ))
      expect(statuses).toEqual([200, 200, 200, 429, 429, 429])
      const sent = yield* Effect.promise(() =>
        fetch(`${podB.httpUrl}/api/chat/send`, {
          method: "POST",
          headers: { "content-type": "application/json", ...authorization },
          body: JSON.stringify({ scopeType: 0, scopeId: "general", text: "hi" })
        }).then(async (response) => {
          await response.arrayBuffer()
          return response.status
        })
      )
      expect(sent).toBe(200)
    }).pipe(quiet))
})
