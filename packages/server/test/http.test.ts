import { describe, expect, it } from "@effect/vitest"
import { NodeSocket } from "@effect/platform-node"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { Effect, Layer, Logger, LogLevel, Schema } from "effect"
import {
  ChatRpcs,
  EnrichedChatEvent,
  HistoryPage,
  PROBLEM_CONTENT_TYPE,
  ProblemDetails,
  RateLimited,
  ScopePresence
} from "@chatify/domain"
import { problemResponse } from "../src/index.js"
import { startTestServer } from "../src/testing.js"

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

interface Reply {
  readonly status: number
  readonly contentType: string
  readonly headers: Headers
  readonly body: unknown
  readonly text: string
}

const call = (url: string, init: RequestInit = {}) =>
  Effect.promise(async (): Promise<Reply> => {
    const response = await fetch(url, init)
    const text = await response.text()
    let body: unknown = undefined
    try {
      body = JSON.parse(text)
    } catch {
      body = undefined
    }
    return {
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
      headers: response.headers,
      body,
      text
    }
  })

const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
  call(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(payload)
  })

const problem = (reply: Reply) => {
  expect(reply.contentType).toContain(PROBLEM_CONTENT_TYPE)
  return Schema.decodeUnknownSync(ProblemDetails)(reply.body)
}

describe("REST interface", () => {
  it.scopedLive("sends, pages the history with cursors and reports presence", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const scope = `room-${crypto.randomUUID()}`
      const sent = []
      for (let i = 0; i < 5; i++) {
        const reply = yield* post(`${server.httpUrl}/api/chat/send`, { scopeType: 0, scopeId: scope, text: `m${i}` })
        expect(reply.status).toBe(200)
        sent.push(Schema.decodeUnknownSync(EnrichedChatEvent)(reply.body))
      }
      // one anonymous identity per client address, no longer one per request (issue 15)
      expect(new Set(sent.map((e) => e.chatEvent.senderId)).size).toBe(1)
      expect(sent.every((e) => /^anon_[0-9a-f]{20}$/u.test(e.chatEvent.senderId))).toBe(true)

      // the history writer runs behind the log: wait until it holds all five
      const all = yield* call(`${server.httpUrl}/api/chat/scopes/0/${scope}/history?limit=500`).pipe(
        Effect.map((r) => Schema.decodeUnknownSync(HistoryPage)(r.body)),
        Effect.repeat({ until: (page) => page.items.length === 5 }),
        Effect.timeout("10 seconds")
      )
      expect(all.items.length).toBe(5)

      const first = Schema.decodeUnknownSync(HistoryPage)(
        (yield* call(`${server.httpUrl}/api/chat/scopes/0/${scope}/history?limit=3`)).body
      )
      expect(first.items.length).toBe(3)
      const times = first.items.map((e) => e.chatEvent.createdAtUtc.getTime())
      expect([...times].sort((a, b) => b - a)).toEqual(times)
      expect(first.nextCursor).toBeDefined()
      const second = Schema.decodeUnknownSync(HistoryPage)(
        (yield* call(`${server.httpUrl}/api/chat/scopes/0/${scope}/history?limit=3&before=${first.nextCursor}`)).body
      )
      expect(second.nextCursor).toBeUndefined()
      expect([...first.items, ...second.items].map((e) => e.chatEvent.messageId).sort()).toEqual(
        sent.map((e) => e.chatEvent.messageId).sort()
      )

      const presence = yield* call(`${server.httpUrl}/api/chat/scopes/0/${scope}/presence`)
      expect(presence.status).toBe(200)
      expect(Schema.decodeUnknownSync(ScopePresence)(presence.body)).toEqual(
        new ScopePresence({ scopeType: 0, scopeId: scope, users: [] })
      )
    }).pipe(quiet))

  it.scopedLive("answers every kind of bad input with a 400 ProblemDetails naming what is wrong", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const cases: ReadonlyArray<readonly [Effect.Effect<Reply>, string]> = [
        [post(`${server.httpUrl}/api/chat/send`, { scopeType: 0, scopeId: "general", text: "x".repeat(4097) }), "text"],
        [post(`${server.httpUrl}/api/chat/send`, { scopeType: 7, scopeId: "general", text: "hi" }), "scopeType"],
        [post(`${server.httpUrl}/api/chat/send`, { scopeType: 0, text: "hi" }), "scopeId"],
        [
          call(`${server.httpUrl}/api/chat/send`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: "{not json"
          }),
          "body"
        ],
        [call(`${server.httpUrl}/api/chat/scopes/0/general/history?limit=0`), "limit"],
        [call(`${server.httpUrl}/api/chat/scopes/0/general/history?before=not-a-cursor`), "before"],
        [call(`${server.httpUrl}/api/chat/scopes/5/general/history`), "scopeType"],
        [call(`${server.httpUrl}/rpc`), "request"]
      ]
      for (const [request, field] of cases) {
        const reply = yield* request
        expect(reply.status, `${field}: ${reply.text}`).toBe(400)
        const body = problem(reply)
        expect(body.status).toBe(400)
        expect(
          body.errors?.map((e) => e.field).some((f) => f === field || f.startsWith(`${field}.`) || f.endsWith(field))
        ).toBe(true)
        expect(reply.headers.get("x-correlation-id")).toBeTruthy()
      }
    }).pipe(quiet))

  it.scopedLive("rate-limits an RPC connection (one identity) with a typed RateLimited", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { rateLimit: { limit: 2, windowSeconds: 60, failOpen: true } } })
      const context = yield* Layer.build(
        RpcClient.layerProtocolSocket().pipe(
          Layer.provide(NodeSocket.layerWebSocket(server.wsUrl)),
          Layer.provide(RpcSerialization.layerNdjson)
        )
      )
      const client = yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))
      const send = (text: string) => client.Send({ scopeType: 0, scopeId: "general", text })
      yield* send("one")
      yield* send("two")
      const refused = yield* Effect.flip(send("three"))
      expect(refused._tag).toBe("RateLimited")
      if (refused._tag === "RateLimited") {
        expect(refused.limit).toBe(2)
        expect(refused.retryAfterSeconds).toBeGreaterThan(0)
        expect(refused.retryAfterSeconds).toBeLessThanOrEqual(60)
      }
    }).pipe(quiet))

  it("renders a rate limit as 429 ProblemDetails with Retry-After", () => {
    const response = problemResponse(
      new RateLimited({ limit: 100, windowSeconds: 60, retryAfterSeconds: 17 }),
      "/api/chat/send",
      "c-1"
    )
    expect(response.status).toBe(429)
    expect(response.headers["retry-after"]).toBe("17")
    expect(response.body._tag === "Uint8Array" ? response.body.contentType : "no body").toBe(PROBLEM_CONTENT_TYPE)
  })

  it.scopedLive("serves the OpenAPI document, Swagger UI and the health probes", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const openapi = yield* call(`${server.httpUrl}/openapi.json`)
      expect(openapi.status).toBe(200)
      expect(Object.keys((openapi.body as { paths: Record<string, unknown> }).paths)).toContain("/api/chat/send")
      const docs = yield* call(`${server.httpUrl}/docs`)
      expect(docs.status).toBe(200)
      expect(docs.contentType).toContain("text/html")
      for (const probe of ["live", "startup", "ready"]) {
        const reply = yield* call(`${server.httpUrl}/health/${probe}`)
        expect(reply.status, probe).toBe(200)
        expect(reply.body).toMatchObject({ status: "Healthy" })
      }
    }).pipe(quiet))
})
