import { NodeSocket } from "@effect/platform-node"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger, LogLevel, Option, Stream } from "effect"
import { SignJWT } from "jose"
import { WebSocket } from "ws"
import { ChatRpcs, directMessageScopeId, ProblemDetails } from "@chatify/domain"
import { Schema } from "effect"
import { startTestServer, hs256TestAuth } from "../src/testing.js"

const SECRET = "a-development-secret-of-32-bytes!"
const auth = hs256TestAuth(SECRET)
const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

const tokenFor = (sub: string, ttlSeconds = 600) =>
  Effect.promise(() =>
    new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub)
      .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds).sign(new TextEncoder().encode(SECRET))
  )

const rpcClient = (wsUrl: string, token: string) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      RpcClient.layerProtocolSocket().pipe(
        Layer.provide(NodeSocket.layerWebSocket(`${wsUrl}?access_token=${encodeURIComponent(token)}`)),
        Layer.provide(RpcSerialization.layerNdjson)
      )
    )
    return yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))
  })

const post = (url: string, body: unknown, token?: string) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
      body: JSON.stringify(body)
    })
    return { status: response.status, headers: response.headers, body: (await response.json()) as unknown }
  })

/** The HTTP status a WebSocket upgrade is answered with when it is refused (101 when accepted). */
const upgradeStatus = (url: string) =>
  Effect.async<number>((resume) => {
    const socket = new WebSocket(url)
    socket.on("open", () => {
      socket.close()
      resume(Effect.succeed(101))
    })
    socket.on("unexpected-response", (request, response) => {
      resume(Effect.succeed(response.statusCode ?? 0))
      request.destroy()
    })
    socket.on("error", () => undefined)
  })

describe("authentication on the interfaces", () => {
  it.scopedLive("REST needs a valid bearer token, and the sender is its subject, never the payload", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const send = `${server.httpUrl}/api/chat/send`
      const message = { scopeType: 0, scopeId: "general", text: "hi", senderId: "mallory" }
      const missing = yield* post(send, message)
      expect(missing.status).toBe(401)
      expect(missing.headers.get("www-authenticate")).toContain("Bearer")
      expect(Schema.decodeUnknownSync(ProblemDetails)(missing.body).detail).toContain("required")
      const forged = yield* post(send, message, `${yield* tokenFor("alice")}x`)
      expect(forged.status).toBe(401)
      const ok = yield* post(send, message, yield* tokenFor("alice"))
      expect(ok.status).toBe(200)
      expect(ok.body).toMatchObject({ chatEvent: { senderId: "alice" } })
    }).pipe(quiet))

  it.scopedLive("/rpc refuses the upgrade without a valid token and takes the user from access_token", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      expect(yield* upgradeStatus(server.wsUrl)).toBe(401)
      expect(yield* upgradeStatus(`${server.wsUrl}?access_token=garbage`)).toBe(401)
      expect(yield* upgradeStatus(`${server.wsUrl}?access_token=${yield* tokenFor("alice")}`)).toBe(101)
      const alice = yield* rpcClient(server.wsUrl, yield* tokenFor("alice"))
      const sent = yield* alice.Send({ scopeType: 0, scopeId: "general", text: "hello" })
      expect(sent.chatEvent.senderId).toBe("alice")
    }).pipe(quiet))

  it.scopedLive("a direct-message scope is open to its two members only, on REST and RPC", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const dm = { scopeType: 1 as const, scopeId: directMessageScopeId("bob", "alice") }
      const alice = yield* rpcClient(server.wsUrl, yield* tokenFor("alice"))
      const carol = yield* rpcClient(server.wsUrl, yield* tokenFor("carol"))

      const sent = yield* alice.Send({ ...dm, text: "psst" })
      expect(sent.chatEvent.scopeId).toBe("dm:alice:bob")
      expect((yield* Effect.flip(carol.Send({ ...dm, text: "let me in" })))._tag).toBe("Forbidden")
      expect((yield* Effect.flip(carol.History(dm)))._tag).toBe("Forbidden")
      expect((yield* Effect.flip(carol.Presence(dm)))._tag).toBe("Forbidden")
      expect((yield* Effect.flip(Stream.runDrain(carol.Subscribe(dm))))._tag).toBe("Forbidden")
      // a DM id that is not canonical (unsorted) names no conversation: nobody may use it
      expect((yield* Effect.flip(alice.Send({ scopeType: 1, scopeId: "dm:bob:alice", text: "x" })))._tag).toBe("Forbidden")

      const rest = yield* Effect.promise(async () =>
        (await fetch(`${server.httpUrl}/api/chat/scopes/1/${encodeURIComponent(dm.scopeId)}/history`, {
          headers: { authorization: `Bearer ${await Effect.runPromise(tokenFor("carol"))}` }
        })).status
      )
      expect(rest).toBe(403)
      const forbiddenSend = yield* post(`${server.httpUrl}/api/chat/send`, { ...dm, text: "x" }, yield* tokenFor("carol"))
      expect(forbiddenSend.status).toBe(403)
      const memberSend = yield* post(`${server.httpUrl}/api/chat/send`, { ...dm, text: "hi alice" }, yield* tokenFor("bob"))
      expect(memberSend.status).toBe(200)
    }).pipe(quiet))

  it.scopedLive("a subscription ends with a typed Unauthenticated when its token expires", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const shortLived = yield* rpcClient(server.wsUrl, yield* tokenFor("alice", 2))
      const ended = yield* shortLived.Subscribe({ scopeType: 0, scopeId: "general" }).pipe(
        Stream.runDrain,
        Effect.flip,
        Effect.timeout("10 seconds")
      )
      expect(ended._tag).toBe("Unauthenticated")
      expect(ended._tag === "Unauthenticated" ? ended.message : "").toContain("expired")
    }).pipe(quiet))

  it.scopedLive("the socket of an expired token is closed by the server", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const token = yield* tokenFor("alice", 1)
      const closedAfterMs = yield* Effect.async<number>((resume) => {
        const opened = Date.now()
        const socket = new WebSocket(`${server.wsUrl}?access_token=${token}`)
        socket.on("close", () => resume(Effect.succeed(Date.now() - opened)))
        socket.on("error", () => undefined)
      }).pipe(Effect.timeout("10 seconds"))
      expect(closedAfterMs).toBeLessThan(5_000)
    }).pipe(quiet))
})
