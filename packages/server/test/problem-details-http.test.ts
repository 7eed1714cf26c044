/**
 * ProblemDetails over real HTTP for the statuses that had no end-to-end check of their body: 403,
 * 409, 429 on a send (with Retry-After), 500, 503 and 504. (400 and 401 are in http.test.ts and
 * auth-interfaces.test.ts, 404 in http.test.ts, the 429 of a read in read-limit.test.ts.)
 *
 * 500, 503 and 504 need a dependency that misbehaves: the server here is the real one (routes,
 * middleware, services, consumers, Node's HTTP server) with its log producer wrapped, so a send
 * whose text names a fault gets it from the producer, as a Kafka producer would give it
 * (Timeout("produce"), DependencyUnavailable) or as a bug would (a defect).
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Logger, LogLevel, Option, Schema } from "effect"
import { ChatEventProducer } from "@chatify/core"
import {
  DependencyUnavailable,
  directMessageScopeId,
  PROBLEM_CONTENT_TYPE,
  ProblemDetails,
  Timeout
} from "@chatify/domain"
import { Consumers, NodeServer, Routes, type ServerConfig, ServerServices } from "../src/index.js"
import { awaitReady, hs256TestAuth, makeTempDirectory, testServerConfig } from "../src/testing.js"
import { hs256Token } from "./support/tokens.js"

const SECRET = "a-problem-details-test-secret-32b!"
const auth = hs256TestAuth(SECRET)
// the server logs the defect on purpose (as an error): keep the test output for real failures
const silent = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.None)

/** Words that only the faults below contain: none may reach a response. */
const INTERNAL = "internal-detail-7f3a"

/** The real producer, except for sends whose text names a fault. */
const faultyProducer = (real: ChatEventProducer["Type"]): ChatEventProducer["Type"] => ({
  produce: (event) => {
    switch (event.text) {
      case "fault:timeout":
        return Effect.fail(new Timeout({ operation: "produce" }))
      case "fault:unavailable":
        return Effect.fail(
          new DependencyUnavailable({ dependency: "kafka", message: `broker 10.0.0.7:9092 ${INTERNAL}` })
        )
      case "fault:defect":
        return Effect.die(new Error(`null pointer in ${INTERNAL} at /srv/chatify/Send.ts:42`))
      default:
        return real.produce(event)
    }
  }
})

/** ChatServer as Server.ts assembles it, with the producer wrapped; authentication on. */
const startServer = (overrides: Partial<ServerConfig> = {}) =>
  Effect.gen(function*() {
    const config = testServerConfig(yield* makeTempDirectory("chatify-problems-"), {
      auth: Option.some(auth),
      ...overrides
    })
    const services = ServerServices(config).pipe(
      Layer.map((context) =>
        Context.add(context, ChatEventProducer, faultyProducer(Context.get(context, ChatEventProducer)))
      )
    )
    const server = HttpLayerRouter.serve(Routes, { disableLogger: true }).pipe(
      Layer.provide(Consumers(config)),
      Layer.provideMerge(services),
      Layer.provideMerge(NodeServer(config))
    )
    const context = yield* Layer.build(server).pipe(Effect.orDie)
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("not on TCP")
    const httpUrl = `http://127.0.0.1:${address.port}`
    yield* awaitReady(httpUrl)
    return httpUrl
  })

const tokenFor = (sub: string) => hs256Token(SECRET, sub)

interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

/** A request with a correlation id of its own: every problem must carry it back. */
const request = (url: string, token: string, correlationId: string, body?: unknown) =>
  Effect.promise(async (): Promise<Reply> => {
    const response = await fetch(url, {
      method: body === undefined ? "GET" : "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "x-correlation-id": correlationId,
        ...(body === undefined ? {} : { "content-type": "application/json" })
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    return { status: response.status, headers: response.headers, text: await response.text() }
  })

/** Decodes the body as ProblemDetails with no field beyond it (no stack, no cause), after checking the envelope. */
const decodeStrict = Schema.decodeUnknownSync(ProblemDetails, { onExcessProperty: "error" })

const expectProblem = (
  reply: Reply,
  expected: {
    readonly status: number
    readonly slug: string
    readonly title: string
    readonly instance: string
    readonly correlationId: string
  }
): ProblemDetails => {
  expect(reply.status, reply.text).toBe(expected.status)
  expect(reply.headers.get("content-type")).toBe(PROBLEM_CONTENT_TYPE)
  expect(reply.headers.get("x-correlation-id")).toBe(expected.correlationId)
  const problem = decodeStrict(JSON.parse(reply.text))
  expect(problem).toMatchObject({
    type: `urn:chatify:problem:${expected.slug}`,
    title: expected.title,
    status: expected.status,
    instance: expected.instance,
    correlationId: expected.correlationId
  })
  expect(problem.detail.length).toBeGreaterThan(0)
  expect(problem.errors).toBeUndefined()
  return problem
}

const room = () => `room-${crypto.randomUUID()}`

describe("ProblemDetails over HTTP", () => {
  it.scopedLive("403: a DM scope refused to a non-member on send, history and presence", () =>
    Effect.gen(function*() {
      const httpUrl = yield* startServer()
      const carol = yield* tokenFor("carol")
      const dm = directMessageScopeId("alice", "bob")
      const scopePath = `/api/chat/scopes/1/${encodeURIComponent(dm)}`
      const cases: ReadonlyArray<readonly [string, string, unknown]> = [
        ["/api/chat/send", "c-403-send", { scopeType: 1, scopeId: dm, text: "let me in" }],
        [`${scopePath}/history`, "c-403-history", undefined],
        [`${scopePath}/presence`, "c-403-presence", undefined]
      ]
      for (const [path, correlationId, body] of cases) {
        const problem = expectProblem(yield* request(`${httpUrl}${path}`, carol, correlationId, body), {
          status: 403,
          slug: "forbidden",
          title: "Forbidden",
          instance: path,
          correlationId
        })
        expect(problem.detail, path).toContain("carol may not")
        expect(problem.retryAfterSeconds).toBeUndefined()
      }
    }).pipe(silent))

  it.scopedLive("409: a clientMessageId reused for another text", () =>
    Effect.gen(function*() {
      const httpUrl = yield* startServer()
      const alice = yield* tokenFor("alice")
      const body = { scopeType: 0, scopeId: room(), text: "first", clientMessageId: crypto.randomUUID() }
      expect((yield* request(`${httpUrl}/api/chat/send`, alice, "c-409-first", body)).status).toBe(200)
      const problem = expectProblem(
        yield* request(`${httpUrl}/api/chat/send`, alice, "c-409", { ...body, text: "second" }),
        {
          status: 409,
          slug: "conflict",
          title: "Conflict",
          instance: "/api/chat/send",
          correlationId: "c-409"
        }
      )
      expect(problem.detail).toContain(body.clientMessageId)
    }).pipe(silent))

  it.scopedLive("429 on a send: Retry-After in the header and in the body, the limit in the detail", () =>
    Effect.gen(function*() {
      const httpUrl = yield* startServer({ rateLimit: { limit: 2, windowSeconds: 60, failOpen: true } })
      const dave = yield* tokenFor("dave")
      const message = { scopeType: 0, scopeId: room(), text: "hi" }
      for (let i = 0; i < 2; i++) {
        expect((yield* request(`${httpUrl}/api/chat/send`, dave, `c-ok-${i}`, message)).status).toBe(200)
      }
      const reply = yield* request(`${httpUrl}/api/chat/send`, dave, "c-429", message)
      const problem = expectProblem(reply, {
        status: 429,
        slug: "rate-limited",
        title: "Too many requests",
        instance: "/api/chat/send",
        correlationId: "c-429"
      })
      const retryAfter = reply.headers.get("retry-after")
      expect(retryAfter).toMatch(/^\d+$/u)
      expect(Number(retryAfter)).toBeGreaterThanOrEqual(1)
      expect(Number(retryAfter)).toBeLessThanOrEqual(60)
      expect(problem.retryAfterSeconds).toBe(Number(retryAfter))
      expect(problem.detail).toContain("At most 2 messages per 60 s")
    }).pipe(silent))

  it.scopedLive("500, 503 and 504 from a failing dependency: the right status and type, never an internal detail", () =>
    Effect.gen(function*() {
      const httpUrl = yield* startServer()
      const erin = yield* tokenFor("erin")
      const scopeId = room()
      const cases = [
        {
          text: "fault:defect",
          status: 500,
          slug: "unexpected",
          title: "Internal server error",
          detail: "An unexpected error occurred"
        },
        {
          text: "fault:unavailable",
          status: 503,
          slug: "dependency-unavailable",
          title: "Service unavailable",
          detail: "kafka is unavailable"
        },
        { text: "fault:timeout", status: 504, slug: "timeout", title: "Timeout", detail: "produce timed out" }
      ] as const
      for (const fault of cases) {
        const correlationId = `c-${fault.status}`
        const reply = yield* request(`${httpUrl}/api/chat/send`, erin, correlationId, {
          scopeType: 0,
          scopeId,
          text: fault.text
        })
        const problem = expectProblem(reply, {
          status: fault.status,
          slug: fault.slug,
          title: fault.title,
          instance: "/api/chat/send",
          correlationId
        })
        expect(problem.detail).toBe(fault.detail)
        expect(reply.text).not.toContain(INTERNAL)
        expect(reply.text).not.toContain("Send.ts")
        expect(reply.headers.get("retry-after")).toBeNull()
      }
      // the server goes on serving after each
      const ok = yield* request(`${httpUrl}/api/chat/send`, erin, "c-200", { scopeType: 0, scopeId, text: "fine" })
      expect(ok.status).toBe(200)
    }).pipe(silent))
})
