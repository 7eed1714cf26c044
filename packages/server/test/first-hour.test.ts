/**
 * Issue 15 ("the first hour"), items 5, 6, 7, 9 and 10, through the real server:
 * - 5: with authentication on, a call without a token is a 401 before anything of it is decoded;
 * - 6: a channel id that looks like a DM id is refused; a non-canonical DM id is refused naming the
 *   canonical one (REST, RPC, SignalR);
 * - 7: /openapi.json has the bearer scheme, scopeType's enum and the probes;
 * - 9: union failures read as one sentence per field in the ProblemDetails;
 * - 10: one anonymous identity per client (REST: per address; RPC and SignalR: per connection) in
 *   one format, and a plain `Bearer` challenge when no token was sent (RFC 6750 §3.1).
 */
import { NodeSocket } from "@effect/platform-node"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { HttpTransportType, HubConnectionBuilder, LogLevel as SignalRLogLevel } from "@microsoft/signalr"
import { Effect, Layer, Logger, LogLevel, Option, Schema } from "effect"
import { SignJWT } from "jose"
import { WebSocket } from "ws"
import { ChatRpcs, EnrichedChatEvent, ProblemDetails } from "@chatify/domain"
import { hs256TestAuth, startTestServer } from "../src/testing.js"

const SECRET = "a-first-hour-test-secret-of-32-b!"
const auth = hs256TestAuth(SECRET)
const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)
const ANONYMOUS = /^anon_[0-9a-f]{20}$/u
const INVALID_TOKEN = `Bearer error="invalid_token"`

const tokenFor = (sub: string) =>
  Effect.promise(() =>
    new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub)
      .setExpirationTime(Math.floor(Date.now() / 1000) + 600).sign(new TextEncoder().encode(SECRET))
  )

interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly body: unknown
}

const call = (
  url: string,
  init: { readonly method?: string; readonly headers?: Record<string, string>; readonly body?: string } = {}
) =>
  Effect.promise(async (): Promise<Reply> => {
    const response = await fetch(url, {
      method: init.method ?? "GET",
      headers: { "content-type": "application/json", ...init.headers },
      ...(init.body === undefined ? {} : { body: init.body })
    })
    const text = await response.text()
    let body: unknown = undefined
    try {
      body = JSON.parse(text)
    } catch {
      body = text
    }
    return { status: response.status, headers: response.headers, body }
  })

const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
  call(url, { method: "POST", headers, body: JSON.stringify(payload) })

const problem = (reply: Reply) => Schema.decodeUnknownSync(ProblemDetails)(reply.body)

const rpcClient = (wsUrl: string) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      RpcClient.layerProtocolSocket().pipe(
        Layer.provide(NodeSocket.layerWebSocket(wsUrl)),
        Layer.provide(RpcSerialization.layerNdjson)
      )
    )
    return yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))
  })

const hubConnection = (url: string, token?: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const hub = new HubConnectionBuilder()
        .withUrl(url, {
          transport: HttpTransportType.WebSockets,
          ...(token === undefined ? {} : { accessTokenFactory: () => token })
        })
        .configureLogging(SignalRLogLevel.None)
        .build()
      await hub.start()
      return hub
    }),
    (hub) => Effect.promise(() => hub.stop())
  )

/** The status and WWW-Authenticate of a refused WebSocket upgrade. */
const refusedUpgrade = (url: string, headers: Record<string, string> = {}) =>
  Effect.async<{ readonly status: number; readonly challenge: string | undefined }>((resume) => {
    const socket = new WebSocket(url, { headers })
    socket.on("open", () => {
      socket.close()
      resume(Effect.succeed({ status: 101, challenge: undefined }))
    })
    socket.on("unexpected-response", (request, response) => {
      const challenge = response.headers["www-authenticate"]
      resume(
        Effect.succeed({
          status: response.statusCode ?? 0,
          challenge: typeof challenge === "string" ? challenge : undefined
        })
      )
      request.destroy()
    })
    socket.on("error", () => undefined)
  })

describe("authentication comes first (item 5)", () => {
  it.scopedLive("without a token, REST answers 401 whatever the body, path or query, and validates once authenticated", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const send = `${server.httpUrl}/api/chat/send`
      const anonymousCalls: ReadonlyArray<readonly [string, Effect.Effect<Reply>]> = [
        ["empty body", call(send, { method: "POST", body: "{}" })],
        ["unreadable body", call(send, { method: "POST", body: "{not json" })],
        ["bad scopeType", post(send, { scopeType: 7, scopeId: "general", text: "hi" })],
        ["limit=zz", call(`${server.httpUrl}/api/chat/scopes/0/general/history?limit=zz`)],
        ["scopeType 5 in the path", call(`${server.httpUrl}/api/chat/scopes/5/general/presence`)]
      ]
      for (const [what, request] of anonymousCalls) {
        const reply = yield* request
        expect(reply.status, what).toBe(401)
        expect(problem(reply).detail, what).toContain("a bearer access token is required")
        expect(reply.headers.get("www-authenticate"), what).toBe("Bearer")
        expect(reply.headers.get("x-correlation-id"), what).toBeTruthy()
      }
      const token = yield* tokenFor("alice")
      const validated = yield* call(send, { method: "POST", body: "{}", headers: { authorization: `Bearer ${token}` } })
      expect(validated.status).toBe(400)
      expect(problem(validated).errors?.map((e) => e.field)).toContain("scopeType")
      const limit = yield* call(`${server.httpUrl}/api/chat/scopes/0/general/history?limit=zz`, {
        headers: { authorization: `Bearer ${token}` }
      })
      expect(limit.status).toBe(400)
    }).pipe(quiet))
})

describe("WWW-Authenticate (item 10, RFC 6750 §3.1)", () => {
  it.scopedLive("plain Bearer when no token was sent, error=\"invalid_token\" only for a token that was refused", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const message = { scopeType: 0, scopeId: "general", text: "hi" }
      const rest = (headers: Record<string, string>) =>
        Effect.map(
          post(`${server.httpUrl}/api/chat/send`, message, headers),
          (r) => [r.status, r.headers.get("www-authenticate")]
        )
      expect(yield* rest({})).toEqual([401, "Bearer"])
      expect(yield* rest({ authorization: "Basic YWxpY2U6c2VjcmV0" })).toEqual([401, "Bearer"])
      expect(yield* rest({ authorization: "Bearer garbage" })).toEqual([401, INVALID_TOKEN])

      const negotiate = (headers: Record<string, string>) =>
        Effect.map(
          call(`${server.httpUrl}/hubs/chat/negotiate?negotiateVersion=1`, { method: "POST", headers }),
          (r) => [r.status, r.headers.get("www-authenticate")]
        )
      expect(yield* negotiate({})).toEqual([401, "Bearer"])
      expect(yield* negotiate({ authorization: "Bearer garbage" })).toEqual([401, INVALID_TOKEN])

      for (const url of [server.wsUrl, server.wsUrl.replace("/rpc", "/hubs/chat")]) {
        expect(yield* refusedUpgrade(url), url).toEqual({ status: 401, challenge: "Bearer" })
        expect(yield* refusedUpgrade(`${url}?access_token=garbage`), url).toEqual({
          status: 401,
          challenge: INVALID_TOKEN
        })
        expect(yield* refusedUpgrade(url, { authorization: "Bearer garbage" }), url).toEqual({
          status: 401,
          challenge: INVALID_TOKEN
        })
      }
    }).pipe(quiet))
})

describe("anonymous identities (item 10)", () => {
  it.scopedLive("one per REST client address, one per RPC or SignalR connection, in one format", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const scopeId = `room-${crypto.randomUUID()}`
      const restSenders = new Set<string>()
      for (let i = 0; i < 3; i++) {
        const reply = yield* post(`${server.httpUrl}/api/chat/send`, { scopeType: 0, scopeId, text: `rest ${i}` })
        expect(reply.status).toBe(200)
        restSenders.add(Schema.decodeUnknownSync(EnrichedChatEvent)(reply.body).chatEvent.senderId)
      }
      expect(restSenders.size).toBe(1)
      const [restSender = ""] = restSenders
      expect(restSender).toMatch(ANONYMOUS)

      const first = yield* rpcClient(server.wsUrl)
      const second = yield* rpcClient(server.wsUrl)
      const a1 = yield* first.Send({ scopeType: 0, scopeId, text: "rpc 1" })
      const a2 = yield* first.Send({ scopeType: 0, scopeId, text: "rpc 2" })
      const b = yield* second.Send({ scopeType: 0, scopeId, text: "rpc 3" })
      expect(a1.chatEvent.senderId).toMatch(ANONYMOUS)
      expect(a2.chatEvent.senderId).toBe(a1.chatEvent.senderId)
      expect(b.chatEvent.senderId).toMatch(ANONYMOUS)
      expect(b.chatEvent.senderId).not.toBe(a1.chatEvent.senderId)

      const hub = yield* hubConnection(`${server.httpUrl}/hubs/chat`)
      const viaHub = yield* Effect.promise(() =>
        hub.invoke<{ readonly chatEvent: { readonly senderId: string } }>("SendAsync", {
          scopeType: 0,
          scopeId,
          text: "hub"
        })
      )
      expect(viaHub.chatEvent.senderId).toMatch(ANONYMOUS)
      expect(new Set([restSender, a1.chatEvent.senderId, b.chatEvent.senderId, viaHub.chatEvent.senderId]).size).toBe(4)
    }).pipe(quiet))
})

describe("direct-message look-alikes (item 6)", () => {
  it.scopedLive("a channel named like a DM is refused on REST, RPC and SignalR", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const message = "must not start with \"dm:\" for a channel (scopeType 0)"
      const sent = yield* post(`${server.httpUrl}/api/chat/send`, { scopeType: 0, scopeId: "dm:alice:bob", text: "hi" })
      expect(sent.status).toBe(400)
      expect(problem(sent).errors?.map((e) => e.field)).toEqual(["scopeId"])
      expect(problem(sent).detail).toContain(message)
      const read = yield* call(`${server.httpUrl}/api/chat/scopes/0/${encodeURIComponent("dm:alice:bob")}/history`)
      expect(read.status).toBe(400)
      expect(problem(read).detail).toContain(message)

      const rpc = yield* rpcClient(server.wsUrl)
      const refused = yield* Effect.flip(rpc.Send({ scopeType: 0, scopeId: "dm:alice:bob", text: "hi" }))
      expect(refused._tag).toBe("ValidationError")
      if (refused._tag === "ValidationError") expect(refused.errors[0].message).toContain(message)

      const hub = yield* hubConnection(`${server.httpUrl}/hubs/chat`)
      const hubRefusal = yield* Effect.promise(() =>
        hub.invoke("SendAsync", { scopeType: 0, scopeId: "DM:alice:bob", text: "hi" }).then(() => "accepted", String)
      )
      expect(hubRefusal).toContain(message)
    }).pipe(quiet))

  it.scopedLive("a member using the unsorted DM id is told the canonical one", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const token = yield* tokenFor("alice")
      const canonical = "must be the canonical direct-message id \"dm:alice:bob\""
      const sent = yield* post(
        `${server.httpUrl}/api/chat/send`,
        { scopeType: 1, scopeId: "dm:bob:alice", text: "hi" },
        {
          authorization: `Bearer ${token}`
        }
      )
      expect(sent.status).toBe(400)
      expect(problem(sent).detail).toContain(`scopeId: ${canonical}`)
      const read = yield* call(`${server.httpUrl}/api/chat/scopes/1/${encodeURIComponent("dm:bob:alice")}/history`, {
        headers: { authorization: `Bearer ${token}` }
      })
      expect(read.status).toBe(400)
      expect(problem(read).detail).toContain(canonical)
      // the canonical id works
      const ok = yield* post(`${server.httpUrl}/api/chat/send`, { scopeType: 1, scopeId: "dm:alice:bob", text: "hi" }, {
        authorization: `Bearer ${token}`
      })
      expect(ok.status).toBe(200)

      const hub = yield* hubConnection(`${server.httpUrl}/hubs/chat`, token)
      const joined = yield* Effect.promise(() =>
        hub.invoke("JoinScopeAsync", "dm:bob:alice").then(() => "accepted", String)
      )
      expect(joined).toContain(canonical)
    }).pipe(quiet))
})

describe("Swagger and validation messages (items 7 and 9)", () => {
  it.scopedLive("/openapi.json has the bearer scheme, scopeType's enum and the probes; /docs serves Swagger UI", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const reply = yield* call(`${server.httpUrl}/openapi.json`)
      expect(reply.status).toBe(200)
      const spec = reply.body as {
        readonly paths: Record<
          string,
          Record<
            string,
            {
              readonly security?: unknown
              readonly parameters?: ReadonlyArray<{ readonly name: string; readonly schema: unknown }>
            }
          >
        >
        readonly components: { readonly securitySchemes: Record<string, unknown> }
      }
      expect(spec.components.securitySchemes["bearer"]).toMatchObject({ type: "http", scheme: "bearer" })
      expect(spec.paths["/api/chat/send"]?.["post"]?.security).toEqual([{ bearer: [] }])
      const history = spec.paths["/api/chat/scopes/{scopeType}/{scopeId}/history"]?.["get"]
      expect(history?.parameters?.find((p) => p.name === "scopeType")?.schema).toMatchObject({ enum: ["0", "1"] })
      for (const probe of ["live", "startup", "ready"]) {
        expect(spec.paths[`/health/${probe}`]?.["get"], probe).toBeDefined()
      }
      const docs = yield* call(`${server.httpUrl}/docs`)
      expect(docs.status).toBe(200)
      // the probes still answer as documented (no token needed)
      expect((yield* call(`${server.httpUrl}/health/ready`)).status).toBe(200)
    }).pipe(quiet))

  it.scopedLive("union failures read as one sentence per field", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const cases: ReadonlyArray<readonly [Effect.Effect<Reply>, string]> = [
        [
          post(`${server.httpUrl}/api/chat/send`, { scopeType: 2, scopeId: "general", text: "hi" }),
          "scopeType: must be 0 (channel) or 1 (direct message)"
        ],
        [
          call(`${server.httpUrl}/api/chat/scopes/5/general/history`),
          "scopeType: must be 0 (channel) or 1 (direct message)"
        ],
        [
          call(`${server.httpUrl}/api/chat/scopes/0/general/history?limit=abc`),
          "limit: must be an integer between 1 and 500"
        ],
        [
          call(`${server.httpUrl}/api/chat/scopes/0/general/history?limit=0`),
          "limit: must be an integer between 1 and 500"
        ],
        [
          // every field of the body that is wrong, not only the first
          post(`${server.httpUrl}/api/chat/send`, { scopeType: "0", scopeId: 7, text: 5 }),
          "scopeType: must be 0 (channel) or 1 (direct message); scopeId: Expected string, actual 7; " +
          "text: Expected string, actual 5"
        ]
      ]
      for (const [request, detail] of cases) {
        const reply = yield* request
        expect(reply.status, detail).toBe(400)
        expect(problem(reply).detail).toBe(detail)
      }
    }).pipe(quiet))
})
