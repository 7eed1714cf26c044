import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Either, Logger, LogLevel, Schedule, Stream } from "effect"
import { directMessageScopeId, ScopeStats } from "@chatify/domain"
import { startTestServer } from "@chatify/server/testing"
import { SignJWT } from "jose"
import { withAdmin } from "../../adapters/test/support/kafkaAdmin.js"
import { produceRecords } from "../../adapters/test/support/kafkaProducer.js"
import { ensureService } from "../../adapters/test/support/services.js"
import { analyticsRun, analyticsServerConfig, removeAnalyticsRun } from "../../server/test/support/analyticsRun.js"
import { makeChatClient } from "../src/node.js"

// The SDK's stats and rateLimitViolations against a server in Kafka mode (the real Kafka of
// scripts/services), fed records shaped as the analytics job writes them. Topics and groups are
// this file's own, removed afterwards.
const names = analyticsRun("sdk-stats")
const STATS_TOPIC = names.statsTopic
const VIOLATIONS_TOPIC = names.violationsTopic
const SECRET = "an-sdk-stats-test-secret-of-32-bytes!"
const OPERATOR = "olga"
const MINUTE = 60_000
// whole minutes two hours back: a range of their own
const BASE = Math.floor((Date.now() - 2 * 60 * MINUTE) / MINUTE) * MINUTE

beforeAll(async () => {
  await ensureService("kafka")
  await Effect.runPromise(withAdmin((admin) =>
    admin.createTopics({
      topics: [{ topic: STATS_TOPIC, numPartitions: 1 }, { topic: VIOLATIONS_TOPIC, numPartitions: 1 }],
      waitForLeaders: true
    })
  ))
}, 300_000)

afterAll(() => removeAnalyticsRun(names), 120_000)

const token = (sub: string) =>
  Effect.promise(() =>
    new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setExpirationTime("10m")
      .sign(new TextEncoder().encode(SECRET))
  )

/** One window as the job writes it to chat-analytics. */
const windowJson = (scopeType: 0 | 1, scopeId: string, minute: number, messageCount: number) => {
  const start = BASE + minute * MINUTE
  return JSON.stringify({
    scopeType,
    scopeId,
    windowStartUtc: new Date(start).toISOString(),
    windowEndUtc: new Date(start + MINUTE).toISOString(),
    messageCount,
    distinctSenders: 1,
    characterCount: messageCount * 5,
    firstEventAtUtc: new Date(start + 1_000).toISOString(),
    lastEventAtUtc: new Date(start + 2_000).toISOString()
  })
}

describe("ChatClient.stats and rateLimitViolations (analytics, Kafka mode)", () => {
  it.scopedLive(
    "stats returns the scope's windows in [from, to); typed Forbidden and ValidationError; operators watch violations",
    () =>
      Effect.gen(function*() {
        const server = yield* Logger.withMinimumLogLevel(
          startTestServer({
            config: analyticsServerConfig(names, { secret: SECRET, operators: [OPERATOR], partitions: 1 })
          }),
          LogLevel.Error
        )
        const dm = directMessageScopeId("alice", "bob")
        yield* produceRecords(STATS_TOPIC, [
          { key: `1:${dm}`, value: windowJson(1, dm, 1, 4) },
          { key: `1:${dm}`, value: windowJson(1, dm, 0, 2) },
          { key: `1:${dm}`, value: windowJson(1, dm, 3, 9) }
        ])
        const alice = yield* makeChatClient({ url: server.wsUrl, accessToken: yield* token("alice") })
        const query = { scopeType: 1 as const, scopeId: dm, from: new Date(BASE), to: new Date(BASE + 3 * MINUTE) }
        // the stats writer stores them shortly after they were produced
        const stats = yield* alice.stats(query).pipe(
          Effect.filterOrFail((s) => s.windows.length === 2, () => "not stored yet"),
          Effect.retry(Schedule.spaced("100 millis")),
          Effect.timeout("30 seconds")
        )
        expect(stats).toBeInstanceOf(ScopeStats)
        expect(stats.windows.map((w) => [w.windowStartUtc.getTime(), w.messageCount])).toEqual([
          [BASE, 2],
          [BASE + MINUTE, 4]
        ])
        expect([stats.fromUtc.getTime(), stats.toUtc.getTime()]).toEqual([BASE, BASE + 3 * MINUTE])

        const carol = yield* makeChatClient({ url: server.wsUrl, accessToken: yield* token("carol") })
        const forbidden = yield* Effect.either(carol.stats(query))
        expect(Either.isLeft(forbidden) && forbidden.left._tag).toBe("Forbidden")
        const inverted = yield* Effect.either(alice.stats({ ...query, from: query.to, to: query.from }))
        expect(Either.isLeft(inverted) && inverted.left._tag).toBe("ValidationError")

        const violation = {
          senderId: `spammer-${names.id}`,
          scopeType: 1,
          scopeId: dm,
          messageCount: 31,
          threshold: 30,
          windowStartUtc: new Date(BASE).toISOString(),
          windowEndUtc: new Date(BASE + 10_000).toISOString(),
          detectedAtUtc: new Date(BASE + 10_050).toISOString()
        }
        yield* produceRecords(VIOLATIONS_TOPIC, [{ key: violation.senderId, value: JSON.stringify(violation) }])
        const operator = yield* makeChatClient({ url: server.wsUrl, accessToken: yield* token(OPERATOR) })
        const watched = yield* operator.rateLimitViolations.pipe(
          Stream.filter((v) => v.senderId === violation.senderId),
          Stream.take(1),
          Stream.runCollect,
          Effect.timeout("30 seconds")
        )
        expect(Chunk.toReadonlyArray(watched).map((v) => [v.scopeId, v.messageCount, v.windowEndUtc.getTime()]))
          .toEqual([[dm, 31, BASE + 10_000]])
        const refused = yield* alice.rateLimitViolations.pipe(
          Stream.runCollect,
          Effect.either,
          Effect.timeout("10 seconds")
        )
        expect(Either.isLeft(refused) && refused.left._tag).toBe("Forbidden")
      }),
    { timeout: 90_000 }
  )
})
