import { describe, expect, it } from "@effect/vitest"
import { Effect, Logger, LogLevel, Option, Stream } from "effect"
import { withCallerFields } from "../src/Logging.js"
import { decodeJwt, SignJWT } from "jose"
import { WebSocket } from "ws"
import { directMessageScopeId, ProblemDetails } from "@chatify/domain"
import { Schema } from "effect"
import { startTestServer, hs256TestAuth } from "../src/testing.js"
import { rpcClient } from "./support/rpcClient.js"

const SECRET = "a-development-secret-of-32-bytes!"
const auth = hs256TestAuth(SECRET)
const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

const tokenFor = (sub: string, ttlSeconds = 600) =>
  Effect.promise(() =>
    new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub)
      .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds).sign(new TextEncoder().encode(SECRET))
  )

const post = (url: string, body: unknown, token?: string) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` })
      },
      body: JSON.stringify(body)
    })
    return { status: response.status, headers: response.headers, body: await response.json() }
  })

/** A token as a provider that forgets `exp` would issue it. */
const tokenWithoutExp = (sub: string) =>
  Effect.promise(() =>
    new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).sign(new TextEncoder().encode(SECRET))
  )

const decodeProblem = Schema.decodeUnknownSync(ProblemDetails)

/** A REST call as a browser might make it: `init.headers` as given, the body (if any) as JSON. */
const call = (
  url: string,
  init: { readonly method?: string; readonly headers?: Record<string, string>; readonly body?: unknown } = {}
) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: init.method ?? "GET",
      headers: { "content-type": "application/json", ...init.headers },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) })
    })
    return { status: response.status, body: await response.json() }
  })

/** The HTTP status a WebSocket upgrade is answered with when it is refused (101 when accepted). */
const upgradeStatus = (url: string, headers: Record<string, string> = {}) =>
  Effect.async<number>((resume) => {
    const socket = new WebSocket(url, { headers })
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
      // a DM id that is not canonical (unsorted) names no conversation: nobody may use it, and the
      // refusal names the canonical id (issue 15: was a Forbidden that did not say why)
      const unsorted = yield* Effect.flip(alice.Send({ scopeType: 1, scopeId: "dm:bob:alice", text: "x" }))
      expect(unsorted._tag).toBe("ValidationError")
      if (unsorted._tag === "ValidationError") expect(unsorted.errors[0].message).toContain(`"dm:alice:bob"`)

      const rest = yield* Effect.promise(async () =>
        (await fetch(`${server.httpUrl}/api/chat/scopes/1/${encodeURIComponent(dm.scopeId)}/history`, {
          headers: { authorization: `Bearer ${await Effect.runPromise(tokenFor("carol"))}` }
        })).status
      )
      expect(rest).toBe(403)
      const forbiddenSend = yield* post(
        `${server.httpUrl}/api/chat/send`,
        { ...dm, text: "x" },
        yield* tokenFor("carol")
      )
      expect(forbiddenSend.status).toBe(403)
      const memberSend = yield* post(
        `${server.httpUrl}/api/chat/send`,
        { ...dm, text: "hi alice" },
        yield* tokenFor("bob")
      )
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

  it.scopedLive("the socket of an expired token is closed by the server, once the token has expired", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const token = yield* tokenFor("alice", 3)
      const { exp } = decodeJwt(token)
      expect(exp).toBeDefined()
      const expiresAtMs = (exp ?? 0) * 1000
      // a refused upgrade fires close as well: the socket must have opened, and closed normally
      const closed = yield* Effect.async<{ readonly opened: boolean; readonly code: number; readonly atMs: number }>(
        (resume) => {
          let opened = false
          const socket = new WebSocket(`${server.wsUrl}?access_token=${token}`)
          socket.on("open", () => {
            opened = true
          })
          socket.on("close", (code) => resume(Effect.succeed({ opened, code, atMs: Date.now() })))
          socket.on("error", () => undefined)
        }
      ).pipe(Effect.timeout("10 seconds"))
      expect(closed.opened).toBe(true)
      expect(closed.code).toBe(1000)
      // not before the token's expiry (the server closes a second after it), and not long after
      expect(closed.atMs).toBeGreaterThanOrEqual(expiresAtMs)
      expect(closed.atMs - expiresAtMs).toBeLessThan(3_000)
    }).pipe(quiet))
})

describe("tokens without exp, and access_token in the query", () => {
  it.scopedLive("a token without exp is refused on every interface: REST 401, RPC upgrade and call, SignalR negotiate and connect", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const noExp = yield* tokenWithoutExp("alice")
      const hub = `${server.httpUrl}/hubs/chat`

      const rest = yield* post(
        `${server.httpUrl}/api/chat/send`,
        { scopeType: 0, scopeId: "general", text: "x" },
        noExp
      )
      expect(rest.status).toBe(401)
      expect(rest.headers.get("www-authenticate")).toContain("Bearer")
      expect(decodeProblem(rest.body).detail).toContain("no expiry (exp)")

      expect(yield* upgradeStatus(`${server.wsUrl}?access_token=${noExp}`)).toBe(401)
      expect(yield* upgradeStatus(server.wsUrl, { authorization: `Bearer ${noExp}` })).toBe(401)
      // a call that names its own token is authenticated with it: a typed failure
      const alice = yield* rpcClient(server.wsUrl, yield* tokenFor("alice"))
      const refused = yield* Effect.flip(
        alice.Send({ scopeType: 0, scopeId: "general", text: "x" }, { headers: { authorization: `Bearer ${noExp}` } })
      )
      expect(refused._tag).toBe("Unauthenticated")
      expect(refused._tag === "Unauthenticated" ? refused.message : "").toContain("no expiry (exp)")

      const negotiate = yield* call(`${hub}/negotiate?negotiateVersion=1`, {
        method: "POST",
        headers: { authorization: `Bearer ${noExp}` }
      })
      expect(negotiate.status).toBe(401)
      expect(decodeProblem(negotiate.body).detail).toContain("no expiry (exp)")
      expect(yield* upgradeStatus(`${hub.replace(/^http/u, "ws")}?access_token=${noExp}`)).toBe(401)
    }).pipe(quiet))

  it.scopedLive("with CHATIFY__AUTH__REQUIREEXPIRATION off, a token without exp is accepted", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some({ ...auth, requireExpiration: false }) } })
      const sent = yield* post(
        `${server.httpUrl}/api/chat/send`,
        { scopeType: 0, scopeId: "general", text: "x" },
        yield* tokenWithoutExp("alice")
      )
      expect(sent.status).toBe(200)
      expect(yield* upgradeStatus(`${server.wsUrl}?access_token=${yield* tokenWithoutExp("alice")}`)).toBe(101)
    }).pipe(quiet))

  it.scopedLive("REST and SignalR negotiate ignore access_token in the query: 401 that names the header; the WebSocket routes take it", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(auth) } })
      const token = yield* tokenFor("alice")
      const message = { scopeType: 0, scopeId: "general", text: "hi" }
      const hub = `${server.httpUrl}/hubs/chat`

      for (const name of ["access_token", "access%5Ftoken"]) {
        const send = yield* call(`${server.httpUrl}/api/chat/send?${name}=${token}`, { method: "POST", body: message })
        expect(send.status).toBe(401)
        expect(decodeProblem(send.body).detail).toContain("Authorization header")
        const history = yield* call(`${server.httpUrl}/api/chat/scopes/0/general/history?limit=5&${name}=${token}`)
        expect(history.status).toBe(401)
        const negotiate = yield* call(`${hub}/negotiate?negotiateVersion=1&${name}=${token}`, { method: "POST" })
        expect(negotiate.status).toBe(401)
      }
      // the header works beside a query token, which is not looked at
      const both = yield* call(`${server.httpUrl}/api/chat/send?access_token=garbage`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
        body: message
      })
      expect(both.status).toBe(200)
      const negotiated = yield* call(`${hub}/negotiate?negotiateVersion=1`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` }
      })
      expect(negotiated.status).toBe(200)

      expect(yield* upgradeStatus(`${server.wsUrl}?access_token=${token}`)).toBe(101)
      expect(yield* upgradeStatus(`${hub.replace(/^http/u, "ws")}?access_token=${token}`)).toBe(101)
    }).pipe(quiet))

  it.scopedLive("without authentication a query token changes nothing on REST: the caller is anonymous", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const sent = yield* call(`${server.httpUrl}/api/chat/send?access_token=${yield* tokenFor("alice")}`, {
        method: "POST",
        body: { scopeType: 0, scopeId: "general", text: "hi" }
      })
      expect(sent.status).toBe(200)
      expect(sent.body).toMatchObject({ chatEvent: { senderId: expect.stringMatching(/^anon_/u) as unknown } })
    }).pipe(quiet))
})

describe("tokens are never logged", () => {
  /** Every log line the server writes, as main.ts writes it (JSON, with the caller's fields), at every level. */
  const capturingLogs = <A, E, R>(effect: (lines: ReadonlyArray<string>) => Effect.Effect<A, E, R>) => {
    const lines: Array<string> = []
    const recorder = Logger.map(withCallerFields(Logger.jsonLogger), (line) => void lines.push(line))
    return effect(lines).pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, recorder)),
      Logger.withMinimumLogLevel(LogLevel.All)
    )
  }

  /** Opens a socket (with a SignalR handshake when `handshake`) and waits until the server closes it: whether it had opened. */
  const untilClosed = (url: string, handshake: boolean) =>
    Effect.async<boolean>((resume) => {
      const socket = new WebSocket(url)
      let opened = false
      socket.on("open", () => {
        opened = true
        if (handshake) socket.send(JSON.stringify({ protocol: "json", version: 1 }) + "\u001e")
      })
      socket.on("close", () => resume(Effect.succeed(opened)))
      socket.on("error", () => undefined)
    }).pipe(Effect.timeout("10 seconds"))

  it.scopedLive("neither URLs with access_token nor refused or expiring tokens put a token in a log line", () =>
    capturingLogs((lines) =>
      Effect.gen(function*() {
        const server = yield* startTestServer({ config: { auth: Option.some({ ...auth, issuer: undefined }) } })
        const hub = `${server.httpUrl}/hubs/chat`
        const valid = yield* tokenFor("alice")
        const shortLived = yield* tokenFor("bob", 2)
        const shortLivedHub = yield* tokenFor("carol", 2)
        const noExp = yield* tokenWithoutExp("dave")
        const forged = `${yield* tokenFor("erin")}x`
        const tokens = [valid, shortLived, shortLivedHub, noExp, forged]

        // REST: query tokens (ignored), a refused header, an unknown route and an unreadable body
        yield* call(`${server.httpUrl}/api/chat/send?access_token=${valid}`, {
          method: "POST",
          body: { scopeType: 0, scopeId: "general", text: "x" }
        })
        yield* call(`${server.httpUrl}/api/chat/scopes/0/general/history?limit=x&access_token=${valid}`, {
          headers: { authorization: `Bearer ${valid}` }
        })
        yield* call(`${server.httpUrl}/no/such/route?access_token=${valid}`)
        yield* Effect.promise(() =>
          fetch(`${server.httpUrl}/api/chat/send?access_token=${valid}`, {
            method: "POST",
            headers: { authorization: `Bearer ${valid}`, "content-type": "application/json" },
            body: "{"
          })
        )
        yield* post(`${server.httpUrl}/api/chat/send`, { scopeType: 0, scopeId: "general", text: "x" }, forged)
        yield* call(`${hub}/negotiate?negotiateVersion=1&access_token=${valid}`, { method: "POST" })
        yield* call(`${hub}/negotiate?negotiateVersion=1`, {
          method: "POST",
          headers: { authorization: `Bearer ${noExp}` }
        })
        // WebSockets: accepted, refused and expiring tokens in the query
        for (const token of [valid, noExp, forged]) {
          yield* upgradeStatus(`${server.wsUrl}?access_token=${token}`)
          yield* upgradeStatus(`${hub.replace(/^http/u, "ws")}?access_token=${token}`)
        }
        const [rpcOpened, hubOpened] = yield* Effect.all([
          untilClosed(`${server.wsUrl}?access_token=${shortLived}`, false),
          untilClosed(`${hub.replace(/^http/u, "ws")}?access_token=${shortLivedHub}`, true)
        ], { concurrency: 2 })
        expect([rpcOpened, hubOpened]).toEqual([true, true])

        const all = lines.join("\n")
        // the scenario did log: the startup warning and both expiries
        expect(all).toContain("CHATIFY__AUTH__ISSUER and CHATIFY__AUTH__AUDIENCE are not set")
        expect(all).toContain("Closing an RPC connection: its access token expired")
        expect(all).toContain("Closing a SignalR connection")
        for (const token of tokens) {
          // a JWT's signature (and its payload, which names the user and expiry) identify it
          const [, payload = "", signature = ""] = token.split(".")
          expect(lines.filter((line) => line.includes(signature) || line.includes(payload))).toEqual([])
        }
      })
    ))
})
