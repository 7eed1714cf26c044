/**
 * The API side of the analytics job, on the real Kafka of scripts/services: records shaped as the
 * job writes them (produced here with kafkajs) reach the stats store through the supervised stats
 * writer and are served by GET …/stats and the Stats RPC with the History endpoint's authorization;
 * a malformed record is counted and skipped, a replayed one doubles nothing; rate-limit violations
 * reach operators (CHATIFY__ANALYTICS__OPERATORS) on the RateLimitViolations stream, and nobody else.
 * Topics and groups are this run's own, removed afterwards.
 */
import { afterAll, beforeAll, expect, layer } from "@effect/vitest"
import { Chunk, Context, Effect, Either, Layer, Logger, LogLevel, Metric, Schedule, Schema, Stream } from "effect"
import { malformedRecordsOf, STATS_WRITER } from "@chatify/core"
import {
  directMessageScopeId,
  PROBLEM_CONTENT_TYPE,
  ProblemDetails,
  RateLimitViolation,
  ScopeStats,
  ScopeWindowStats
} from "@chatify/domain"
import { withAdmin } from "../../adapters/test/support/kafkaAdmin.js"
import { produceRecords as produce } from "../../adapters/test/support/kafkaProducer.js"
import { ensureService } from "../../adapters/test/support/services.js"
import { startTestServer, type TestServer } from "../src/testing.js"
import { analyticsRun, analyticsServerConfig, removeAnalyticsRun } from "./support/analyticsRun.js"
import { rpcClient } from "./support/rpcClient.js"
import { hs256Token } from "./support/tokens.js"
import WebSocket from "ws"

const names = analyticsRun("analytics-api")
const run = names.id
const STATS_TOPIC = names.statsTopic
const VIOLATIONS_TOPIC = names.violationsTopic
const SECRET = "an-analytics-api-test-secret-32b!!"
const OPERATOR = "olga"

/** A violation as the job writes it, by `senderId` in this run's channel. */
const violationOf = (senderId: string) => ({
  senderId,
  scopeType: 0,
  scopeId: `general-${run}`,
  messageCount: 31,
  threshold: 30,
  windowStartUtc: "2026-11-30T10:00:00Z",
  windowEndUtc: "2026-11-30T10:00:10Z",
  detectedAtUtc: "2026-11-30T10:00:10.120Z"
})

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Error)

beforeAll(async () => {
  await ensureService("kafka")
  await Effect.runPromise(
    withAdmin((admin) =>
      admin.createTopics({
        topics: [{ topic: STATS_TOPIC, numPartitions: 2 }, { topic: VIOLATIONS_TOPIC, numPartitions: 1 }],
        waitForLeaders: true
      })
    )
  )
}, 300_000)

afterAll(() => removeAnalyticsRun(names), 120_000)

class Server extends Context.Tag("test/AnalyticsServer")<Server, TestServer>() {}

const ServerLive = Layer.scoped(
  Server,
  quiet(startTestServer({
    config: analyticsServerConfig(names, { secret: SECRET, operators: [OPERATOR], partitions: 1 })
  }))
)

const MINUTE = 60_000
// Whole minutes a few hours back, so the default range (the last hour) does not reach them by accident.
const BASE = Math.floor((Date.now() - 3 * 60 * MINUTE) / MINUTE) * MINUTE

/** The JSON the job writes for one window (Java's Instant.toString() drops zero milliseconds). */
const windowJson = (scopeType: 0 | 1, scopeId: string, minute: number, messageCount: number) => {
  const start = BASE + minute * MINUTE
  const iso = (ms: number) => new Date(ms).toISOString().replace(".000Z", "Z")
  return JSON.stringify({
    scopeType,
    scopeId,
    windowStartUtc: iso(start),
    windowEndUtc: iso(start + MINUTE),
    messageCount,
    distinctSenders: Math.min(3, messageCount),
    characterCount: messageCount * 11,
    firstEventAtUtc: iso(start + 1_500),
    lastEventAtUtc: iso(start + 59_250)
  })
}

interface Reply {
  readonly status: number
  readonly contentType: string
  readonly body: unknown
}

const getJson = (url: string, token: string | undefined) =>
  Effect.promise(async (): Promise<Reply> => {
    const response = await fetch(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } })
    return {
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
      body: await response.json()
    }
  })

const statsUrl = (httpUrl: string, scopeType: 0 | 1, scopeId: string, query: string) =>
  `${httpUrl}/api/chat/scopes/${scopeType}/${encodeURIComponent(scopeId)}/stats${query}`

const rangeQuery = (fromMinute: number, toMinute: number) =>
  `?from=${new Date(BASE + fromMinute * MINUTE).toISOString()}&to=${new Date(BASE + toMinute * MINUTE).toISOString()}`

const decodeStats = Schema.decodeUnknownSync(ScopeStats)
const decodeProblem = Schema.decodeUnknownSync(ProblemDetails)

/** Polls GET …/stats until `done` holds of the windows (bounded), then returns them. */
const awaitStats = (
  url: string,
  token: string,
  done: (windows: ReadonlyArray<ScopeWindowStats>) => boolean
) =>
  getJson(url, token).pipe(
    Effect.map((reply) => (reply.status === 200 ? decodeStats(reply.body).windows : [])),
    Effect.filterOrFail(done, () => "not yet"),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeoutFail({
      duration: "30 seconds",
      onTimeout: () => new Error(`${url} never showed the expected windows`)
    })
  )

const malformedCount = Effect.map(Metric.value(malformedRecordsOf(STATS_WRITER)), (state) => state.count)

layer(ServerLive, { timeout: "120 seconds", excludeTestServices: true })("analytics on the API, Kafka mode", (it) => {
  it.effect("stores the job's windows and serves them on GET …/stats, oldest first, only those in [from, to)", () =>
    Effect.gen(function*() {
      const { httpUrl } = yield* Server
      const token = yield* hs256Token(SECRET, "alice")
      const scopeId = `general-${run}`
      yield* produce(STATS_TOPIC, [
        { key: `0:${scopeId}`, value: windowJson(0, scopeId, 2, 12) },
        { key: `0:${scopeId}`, value: windowJson(0, scopeId, 0, 5) },
        { key: `0:${scopeId}`, value: windowJson(0, scopeId, 1, 1) },
        // another scope, the same id as a DM: never in the channel's answer
        { key: `1:${scopeId}`, value: windowJson(1, scopeId, 1, 4) }
      ])
      const url = statsUrl(httpUrl, 0, scopeId, rangeQuery(0, 60))
      const windows = yield* awaitStats(url, token, (w) => w.length === 3)
      expect(windows.map((w) => [w.windowStartUtc.getTime(), w.messageCount])).toEqual([
        [BASE, 5],
        [BASE + MINUTE, 1],
        [BASE + 2 * MINUTE, 12]
      ])
      expect(windows[2]).toEqual(Schema.decodeSync(Schema.parseJson(ScopeWindowStats))(windowJson(0, scopeId, 2, 12)))

      // [from, to): the window starting at `to` is left out, the one at `from` kept
      const reply = yield* getJson(statsUrl(httpUrl, 0, scopeId, rangeQuery(1, 2)), token)
      expect(reply.status).toBe(200)
      const stats = decodeStats(reply.body)
      expect(stats.windows.map((w) => w.messageCount)).toEqual([1])
      expect(stats.fromUtc.getTime()).toBe(BASE + MINUTE)
      expect(stats.toUtc.getTime()).toBe(BASE + 2 * MINUTE)

      // without from/to: the last hour, where this scope has nothing
      const recent = yield* getJson(statsUrl(httpUrl, 0, scopeId, ""), token)
      expect(recent.status).toBe(200)
      const recentStats = decodeStats(recent.body)
      expect(recentStats.windows).toEqual([])
      expect(recentStats.toUtc.getTime() - recentStats.fromUtc.getTime()).toBe(60 * MINUTE)
    }))

  it.effect("skips and counts a malformed record, and a replayed window doubles nothing", () =>
    Effect.gen(function*() {
      const { httpUrl } = yield* Server
      const token = yield* hs256Token(SECRET, "alice")
      const scopeId = `replay-${run}`
      const key = `0:${scopeId}`
      const url = statsUrl(httpUrl, 0, scopeId, rangeQuery(0, 60))
      yield* produce(STATS_TOPIC, [{ key, value: windowJson(0, scopeId, 3, 7) }])
      yield* awaitStats(url, token, (w) => w.length === 1)
      const before = yield* malformedCount

      // the same partition (same key), in order: two bad records, the replay, then a new window
      const inverted = JSON.parse(windowJson(0, scopeId, 4, 2)) as Record<string, unknown>
      yield* produce(STATS_TOPIC, [
        { key, value: "{not json" },
        { key, value: JSON.stringify({ ...inverted, windowEndUtc: inverted["windowStartUtc"] }) },
        { key, value: windowJson(0, scopeId, 3, 7) },
        { key, value: windowJson(0, scopeId, 5, 9) }
      ])
      const windows = yield* awaitStats(url, token, (w) => w.length >= 2)
      expect(windows.map((w) => [w.windowStartUtc.getTime(), w.messageCount])).toEqual([
        [BASE + 3 * MINUTE, 7],
        [BASE + 5 * MINUTE, 9]
      ])
      expect((yield* malformedCount) - before).toBe(2)
    }))

  it.effect("GET …/stats: the History endpoint's authorization, and ProblemDetails for bad input", () =>
    Effect.gen(function*() {
      const { httpUrl } = yield* Server
      const [alice, bob, carol] = yield* Effect.all(["alice", "bob", "carol"].map((sub) => hs256Token(SECRET, sub)))
      const dm = directMessageScopeId("alice", "bob")
      yield* produce(STATS_TOPIC, [{ key: `1:${dm}`, value: windowJson(1, dm, 10, 3) }])
      const url = statsUrl(httpUrl, 1, dm, rangeQuery(0, 60))
      // both members read it
      expect((yield* awaitStats(url, alice!, (w) => w.length === 1))[0]!.messageCount).toBe(3)
      expect((yield* awaitStats(url, bob!, (w) => w.length === 1))[0]!.messageCount).toBe(3)

      const problem = (reply: Reply, status: number) => {
        expect(reply.status).toBe(status)
        expect(reply.contentType).toContain(PROBLEM_CONTENT_TYPE)
        return decodeProblem(reply.body)
      }
      expect(problem(yield* getJson(url, carol), 403).detail).toContain("carol may not read")
      problem(yield* getJson(url, undefined), 401)

      const channel = (query: string) => getJson(statsUrl(httpUrl, 0, `general-${run}`, query), alice)
      // the field as the decoder names it (a path may prefix it, as in http.test.ts)
      const expectField = (reply: Reply, field: string) =>
        expect(problem(reply, 400).errors?.some((e) => e.field === field || e.field.endsWith(`.${field}`))).toBe(true)
      expectField(yield* channel("?from=yesterday"), "from")
      expectField(yield* channel("?to=2026-11-30"), "to")
      expectField(yield* channel(rangeQuery(5, 5)), "from")
      expectField(yield* channel(rangeQuery(0, 25 * 60)), "to")
      expectField(yield* getJson(statsUrl(httpUrl, 0, " ", ""), alice), "scopeId")
      expectField(yield* getJson(`${httpUrl}/api/chat/scopes/7/general/stats`, alice), "scopeType")
    }))

  it.effect("the Stats RPC: the same answer, Forbidden outside the scope, ValidationError for a bad range", () =>
    Effect.scoped(Effect.gen(function*() {
      const { wsUrl } = yield* Server
      const scopeId = `general-${run}`
      const alice = yield* rpcClient(wsUrl, yield* hs256Token(SECRET, "alice"))
      const stats = yield* alice.Stats({
        scopeType: 0,
        scopeId,
        from: new Date(BASE),
        to: new Date(BASE + 60 * MINUTE)
      })
      expect(stats).toBeInstanceOf(ScopeStats)
      expect(stats.windows.map((w) => w.messageCount)).toEqual([5, 1, 12])

      const carol = yield* rpcClient(wsUrl, yield* hs256Token(SECRET, "carol"))
      const forbidden = yield* Effect.either(
        carol.Stats({ scopeType: 1, scopeId: directMessageScopeId("alice", "bob") })
      )
      expect(Either.isLeft(forbidden) && forbidden.left._tag).toBe("Forbidden")
      const inverted = yield* Effect.either(
        alice.Stats({ scopeType: 0, scopeId, from: new Date(BASE + MINUTE), to: new Date(BASE) })
      )
      expect(Either.isLeft(inverted) && inverted.left._tag === "ValidationError" && inverted.left.errors[0].field)
        .toBe("from")
    })))

  it.effect("RateLimitViolations: operators get the job's violations, anyone else a typed Forbidden", () =>
    Effect.scoped(Effect.gen(function*() {
      const { wsUrl } = yield* Server
      const senderId = `spammer-${run}`
      const violation = violationOf(senderId)
      yield* produce(VIOLATIONS_TOPIC, [
        { key: senderId, value: "not a violation" },
        { key: senderId, value: JSON.stringify(violation) }
      ])
      const operator = yield* rpcClient(wsUrl, yield* hs256Token(SECRET, OPERATOR))
      const received = yield* operator.RateLimitViolations().pipe(
        Stream.filter((v) => v.senderId === senderId),
        Stream.take(1),
        Stream.runCollect,
        Effect.timeout("30 seconds")
      )
      expect(Chunk.toReadonlyArray(received)).toEqual([
        Schema.decodeSync(Schema.parseJson(RateLimitViolation))(JSON.stringify(violation))
      ])

      const user = yield* rpcClient(wsUrl, yield* hs256Token(SECRET, "alice"))
      const refused = yield* user.RateLimitViolations().pipe(
        Stream.runCollect,
        Effect.either,
        Effect.timeout("10 seconds")
      )
      expect(Either.isLeft(refused) && refused.left._tag).toBe("Forbidden")
    })))

  it.effect("RateLimitViolations on /rpc?acks=none: each violation arrives without the client acknowledging the one before", () =>
    Effect.scoped(Effect.gen(function*() {
      const { wsUrl } = yield* Server
      const token = yield* hs256Token(SECRET, OPERATOR)
      let text = ""
      const ws = yield* Effect.acquireRelease(
        Effect.async<WebSocket, Error>((resume) => {
          const socket = new WebSocket(`${wsUrl}?acks=none`, { headers: { authorization: `Bearer ${token}` } })
          socket.on("error", (error) => resume(Effect.fail(error)))
          socket.on("message", (data: Buffer) => (text += data.toString()))
          socket.on("open", () => resume(Effect.succeed(socket)))
        }),
        (socket) => Effect.sync(() => socket.close())
      )
      ws.send(
        JSON.stringify({ _tag: "Request", id: "1", tag: "RateLimitViolations", payload: null, headers: [] }) + "\n"
      )
      const seen = (senderId: string) =>
        Effect.suspend(() => (text.includes(`"senderId":"${senderId}"`) ? Effect.void : Effect.fail("not yet"))).pipe(
          Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 1_500 })
        )
      // one at a time: each in a chunk of its own, which RpcServer sends only once the one before is acknowledged
      for (const n of [1, 2, 3]) {
        const senderId = `no-acks-${run}-${n}`
        yield* produce(VIOLATIONS_TOPIC, [{ key: senderId, value: JSON.stringify(violationOf(senderId)) }])
        yield* seen(senderId)
      }
      expect(text).not.toContain(`"_tag":"Exit"`)
    })))
})
