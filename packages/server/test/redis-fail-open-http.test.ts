/**
 * CHATIFY__RATELIMIT__FAILOPEN seen through the HTTP interface, on a real Redis (Debian's
 * redis-server, as scripts/services/redis.sh runs it) of this test's own, so stopping it disturbs no
 * other test: with Redis up both servers limit sends; with Redis gone, the fail-open server lets
 * sends (past the limit too) and history reads through while the fail-closed one refuses them with
 * a 503 ProblemDetails; once Redis is back, both limit again. (The adapters' own fail-open and
 * fail-closed are in adapters/test/redis.test.ts; readiness.test.ts has a send on a dead Redis.)
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createConnection } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Logger, LogLevel, Option, Schedule, Schema } from "effect"
import { PROBLEM_CONTENT_TYPE, ProblemDetails } from "@chatify/domain"
import { hs256TestAuth, startTestServer } from "../src/testing.js"
import { freePort } from "./support/serverProcess.js"
import { hs256Token } from "./support/tokens.js"

const SECRET = "a-redis-fail-open-test-secret-32b!"
// the servers warn (fail open, Redis unavailable) on purpose
const silent = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.None)

/** One PING over a fresh connection: whether Redis answered PONG. */
const redisAnswers = (port: number) =>
  Effect.async<boolean>((resume) => {
    const socket = createConnection({ host: "127.0.0.1", port })
    let reply = ""
    const done = (answered: boolean) => {
      socket.destroy()
      resume(Effect.succeed(answered))
    }
    socket.setTimeout(1_000, () => done(false))
    socket.on("connect", () => socket.write("PING\r\n"))
    socket.on("data", (chunk) => {
      reply += chunk.toString()
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG"))
    })
    socket.on("error", () => done(false))
  })

/** A redis-server on `port` for the scope (or until `stop`), started and answering. */
const startRedis = (port: number) =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
          stdio: "ignore"
        })
      ),
      (server: ChildProcess) => Effect.sync(() => server.kill("SIGKILL"))
    )
    yield* redisAnswers(port).pipe(
      Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (answered) => answered }),
      Effect.timeoutFail({
        duration: "10 seconds",
        onTimeout: () => new Error(`redis-server on ${port} did not start`)
      }),
      Effect.orDie
    )
    return child
  })

const stopRedis = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })

const tokenFor = (sub: string) => hs256Token(SECRET, sub)

interface Reply {
  readonly status: number
  readonly contentType: string
  readonly body: unknown
  readonly text: string
}

const call = (url: string, token: string, body?: unknown) =>
  Effect.promise(async (): Promise<Reply> => {
    const response = await fetch(url, {
      method: body === undefined ? "GET" : "POST",
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" })
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await response.text()
    return {
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
      body: JSON.parse(text),
      text
    }
  })

/** /health/ready's word on Redis: "ok", "unavailable", … */
const redisCheck = (httpUrl: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${httpUrl}/health/ready`)
    const body = (await response.json()) as { readonly checks?: Record<string, string> }
    return body.checks?.["redis"]
  })

const awaitRedisCheck = (httpUrl: string, state: string) =>
  redisCheck(httpUrl).pipe(
    Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (check) => check === state }),
    Effect.timeoutFail({ duration: "15 seconds", onTimeout: () => new Error(`${httpUrl}: redis never "${state}"`) }),
    Effect.orDie
  )

const expectRedisUnavailable = (reply: Reply, what: string) => {
  expect(reply.status, `${what}: ${reply.text}`).toBe(503)
  expect(reply.contentType).toBe(PROBLEM_CONTENT_TYPE)
  expect(Schema.decodeUnknownSync(ProblemDetails)(reply.body)).toMatchObject({
    type: "urn:chatify:problem:dependency-unavailable",
    status: 503,
    detail: "redis is unavailable"
  })
}

describe("Redis fail-open and fail-closed over HTTP", () => {
  it.scopedLive(
    "with Redis gone, the fail-open server serves sends past the limit and history, the fail-closed one answers 503; both limit again once it is back",
    () =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(freePort)
        const redis = yield* startRedis(port)
        const limits = (failOpen: boolean) => ({
          auth: Option.some(hs256TestAuth(SECRET)),
          caching: Option.some({ connectionString: `127.0.0.1:${port}` }),
          rateLimit: { limit: 2, windowSeconds: 60, failOpen },
          readRateLimit: { limit: 1_000, windowSeconds: 60 }
        })
        const open = yield* startTestServer({ config: { ...limits(true), podId: "pod-open" } })
        const closed = yield* startTestServer({ config: { ...limits(false), podId: "pod-closed" } })
        const run = crypto.randomUUID().slice(0, 8)
        const users = { open: yield* tokenFor(`open-${run}`), closed: yield* tokenFor(`closed-${run}`) }
        const scopeId = `room-${run}`
        const message = { scopeType: 0, scopeId, text: "hi" }
        const sendTo = (httpUrl: string, token: string) => call(`${httpUrl}/api/chat/send`, token, message)
        const history = (httpUrl: string, token: string) =>
          call(`${httpUrl}/api/chat/scopes/0/${scopeId}/history`, token)
        const presence = (httpUrl: string, token: string) =>
          call(`${httpUrl}/api/chat/scopes/0/${scopeId}/presence`, token)
        const servers = [[open.httpUrl, users.open], [closed.httpUrl, users.closed]] as const

        // Redis up: both limit sends (2 a minute) and serve reads
        for (const [httpUrl, token] of servers) {
          yield* awaitRedisCheck(httpUrl, "ok")
          expect((yield* sendTo(httpUrl, token)).status).toBe(200)
          expect((yield* sendTo(httpUrl, token)).status).toBe(200)
          expect((yield* sendTo(httpUrl, token)).status).toBe(429)
          expect((yield* history(httpUrl, token)).status).toBe(200)
          expect((yield* presence(httpUrl, token)).status).toBe(200)
        }

        yield* stopRedis(redis)
        // the servers have seen it go (their readiness checks run once a second)
        for (const [httpUrl] of servers) yield* awaitRedisCheck(httpUrl, "unavailable")

        // fail open: sends go through unchecked, past the limit this user has used up; history too
        for (let i = 0; i < 3; i++) {
          const sent = yield* sendTo(open.httpUrl, users.open)
          expect(sent.status, sent.text).toBe(200)
          expect(sent.body).toMatchObject({ chatEvent: { senderId: `open-${run}`, scopeId } })
        }
        expect((yield* history(open.httpUrl, users.open)).status).toBe(200)
        // presence lives in Redis: no answer to give
        expectRedisUnavailable(yield* presence(open.httpUrl, users.open), "presence, fail open")

        // fail closed: sends and reads are refused with a 503 naming Redis, and nothing is sent
        expectRedisUnavailable(yield* sendTo(closed.httpUrl, users.closed), "send, fail closed")
        expectRedisUnavailable(yield* history(closed.httpUrl, users.closed), "history, fail closed")
        expectRedisUnavailable(yield* presence(closed.httpUrl, users.closed), "presence, fail closed")

        // Redis back (empty: a fresh window): both limit again, the fail-closed one serves again
        yield* startRedis(port)
        for (const [httpUrl, token] of servers) {
          yield* awaitRedisCheck(httpUrl, "ok")
          const statuses = yield* Effect.forEach(
            [1, 2, 3],
            () => Effect.map(sendTo(httpUrl, token), (reply) => reply.status)
          )
          expect(statuses, httpUrl).toEqual([200, 200, 429])
          expect((yield* history(httpUrl, token)).status).toBe(200)
        }
        // each server has its own embedded log and history: the fail-open one holds 2 + 3 + 2 sends, the
        // fail-closed one 2 + 2 (what it refused was never sent)
        const stored = (httpUrl: string, token: string, expected: number) =>
          history(httpUrl, token).pipe(
            Effect.map((reply) => (reply.body as { readonly items: ReadonlyArray<unknown> }).items.length),
            Effect.filterOrFail((n) => n >= expected, () => "not yet"),
            Effect.retry(Schedule.spaced("50 millis")),
            Effect.timeout("10 seconds"),
            Effect.orDie
          )
        expect(yield* stored(open.httpUrl, users.open, 7)).toBe(7)
        expect(yield* stored(closed.httpUrl, users.closed, 4)).toBe(4)
      }).pipe(silent),
    { timeout: 90_000 }
  )
})
