/**
 * The analytics pipeline end to end, on the real Kafka of scripts/services: messages sent through
 * the API (Kafka mode, /rpc) → ChatEventProcessorJob on a local MiniCluster, started as a developer
 * starts it (`scripts/analytics.sh run`, short windows by job arguments) → its window results
 * stored by the API's stats writer → GET …/stats and the Stats RPC; a burst reaches an operator on
 * RateLimitViolations. The expected windows are computed here from what the sends returned (their
 * createdAtUtc), so nothing is hard-coded. Topics and groups are this run's own, removed afterwards.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Logger, LogLevel, Schedule, Schema, type Scope, Stream } from "effect"
import { type EnrichedChatEvent, partitionForScope, type ScopeRef, ScopeStats } from "@chatify/domain"
import { withAdmin } from "../../adapters/test/support/kafkaAdmin.js"
import { endpoints, ensureService } from "../../adapters/test/support/services.js"
import { startTestServer } from "../src/testing.js"
import { analyticsRun, analyticsServerConfig, removeAnalyticsRun } from "./support/analyticsRun.js"
import { rpcClient } from "./support/rpcClient.js"
import { hs256Token } from "./support/tokens.js"

const ANALYTICS_SH = fileURLToPath(new URL("../../../scripts/analytics.sh", import.meta.url))
const names = analyticsRun("e2e")
const run = names.id
const { statsTopic: STATS_TOPIC, topic: TOPIC, violationsTopic: VIOLATIONS_TOPIC } = names
const JOB_GROUP = `chatify-e2e-job-${run}`
const SECRET = "an-analytics-e2e-test-secret-32b!!"
const OPERATOR = "olga"
// short enough for a fast test, long enough that a window holds a few sends
const WINDOW_MILLIS = 2_000
const ABUSE_THRESHOLD = 3
const ABUSE_WINDOW_MILLIS = 10_000
const PARTITIONS = 3

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Error)

beforeAll(async () => {
  await ensureService("kafka")
  // the jar, built only when its sources changed (Maven's cache in ~/.m2): not part of the test's time
  await new Promise<void>((resolve, reject) =>
    execFile(
      "bash",
      [ANALYTICS_SH, "jar"],
      { timeout: 600_000, maxBuffer: 10 * 1024 * 1024 },
      (error, _, stderr) =>
        error === null ? resolve() : reject(new Error(`scripts/analytics.sh jar failed: ${error.message}\n${stderr}`))
    )
  )
}, 660_000)

afterAll(() => removeAnalyticsRun(names, [JOB_GROUP]), 120_000)

/** The end of a process's output, for a failure message. */
const tail = (text: string) => text.slice(-4_000)

/**
 * `scripts/analytics.sh run ARGS` in a process group of its own, stopped with the scope: SIGTERM to
 * the group, SIGKILL when it has not exited 15 s later.
 */
const runJob = (args: ReadonlyArray<string>): Effect.Effect<{ readonly output: () => string }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn("bash", [ANALYTICS_SH, "run", ...args], {
        detached: true,
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      const collect = (chunk: Buffer) => {
        output = tail(output + chunk.toString())
      }
      child.stdout.on("data", collect)
      child.stderr.on("data", collect)
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
      return { child, exited, output: () => output }
    }),
    ({ child, exited }) =>
      Effect.promise(async () => {
        if (child.exitCode !== null || child.signalCode !== null) return
        const signalGroup = (signal: NodeJS.Signals) => {
          try {
            process.kill(-(child as ChildProcess & { pid: number }).pid, signal)
          } catch {
            // the group is gone already
          }
        }
        signalGroup("SIGTERM")
        const stopped = await Promise.race([
          exited.then(() => true),
          new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 15_000))
        ])
        if (!stopped) {
          signalGroup("SIGKILL")
          await exited
        }
      })
  )

interface ExpectedWindow {
  readonly windowStartUtc: number
  readonly windowEndUtc: number
  readonly messageCount: number
  readonly distinctSenders: number
  readonly characterCount: number
  readonly firstEventAtUtc: number
  readonly lastEventAtUtc: number
}

/** What the job is to compute from these events: tumbling event-time windows aligned to the epoch. */
const expectedWindows = (events: ReadonlyArray<EnrichedChatEvent>): ReadonlyArray<ExpectedWindow> => {
  const byWindow = new Map<number, Array<EnrichedChatEvent>>()
  for (const event of events) {
    const at = event.chatEvent.createdAtUtc.getTime()
    const start = at - (at % WINDOW_MILLIS)
    byWindow.set(start, [...(byWindow.get(start) ?? []), event])
  }
  return Array.from(byWindow).sort(([a], [b]) => a - b).map(([start, inWindow]) => {
    const times = inWindow.map((e) => e.chatEvent.createdAtUtc.getTime())
    return {
      windowStartUtc: start,
      windowEndUtc: start + WINDOW_MILLIS,
      messageCount: inWindow.length,
      distinctSenders: new Set(inWindow.map((e) => e.chatEvent.senderId)).size,
      characterCount: inWindow.reduce((sum, e) => sum + e.chatEvent.text.length, 0),
      firstEventAtUtc: Math.min(...times),
      lastEventAtUtc: Math.max(...times)
    }
  })
}

/**
 * The burst the job is to report for one sender's events: at the first instant T at which more than
 * the threshold lie in (T - window, T], with the count then.
 */
const expectedBurst = (events: ReadonlyArray<EnrichedChatEvent>) => {
  const times = events.map((e) => e.chatEvent.createdAtUtc.getTime()).sort((a, b) => a - b)
  for (const at of new Set(times)) {
    const count = times.filter((t) => t <= at && t > at - ABUSE_WINDOW_MILLIS).length
    if (count > ABUSE_THRESHOLD) return { at, count }
  }
  return undefined
}

const decodeStats = Schema.decodeUnknownSync(ScopeStats)

/** A scope of its own whose events land on the same partition of the chat topic as `scope`'s. */
const ticksScopeOnPartitionOf = (scope: ScopeRef): string => {
  const partition = partitionForScope(scope, PARTITIONS)
  for (let i = 0;; i++) {
    const candidate = `ticks-${run}-${i}`
    if (partitionForScope({ scopeType: 0, scopeId: candidate }, PARTITIONS) === partition) return candidate
  }
}

describe("analytics end to end: API → Kafka → ChatEventProcessorJob → API", () => {
  it.scopedLive(
    "sends become window statistics on GET …/stats and the Stats RPC, a burst a violation",
    () =>
      Effect.gen(function*() {
        // the API makes the chat topic and the job's two output topics
        const server = yield* quiet(startTestServer({
          config: analyticsServerConfig(names, { secret: SECRET, operators: [OPERATOR], partitions: PARTITIONS })
        }))
        const { httpUrl, wsUrl } = server

        // the API made the job's output topics (it runs with --create-topics false)
        yield* withAdmin((admin) => admin.listTopics()).pipe(
          Effect.filterOrFail((topics) => topics.includes(STATS_TOPIC) && topics.includes(VIOLATIONS_TOPIC), () =>
            "not yet"),
          Effect.retry(Schedule.spaced("100 millis")),
          Effect.timeout("30 seconds")
        )

        // the job reads the chat topic from its start: the sends need not wait for it to run
        const job = yield* runJob([
          "--bootstrap-servers",
          endpoints.kafka,
          "--input-topic",
          TOPIC,
          "--scope-stats-topic",
          STATS_TOPIC,
          "--rate-limit-topic",
          VIOLATIONS_TOPIC,
          "--consumer-group",
          JOB_GROUP,
          "--transactional-id-prefix",
          `chatify-e2e-${run}`,
          "--window",
          `${WINDOW_MILLIS}ms`,
          "--out-of-orderness",
          "200ms",
          "--idle-timeout",
          "1s",
          "--checkpoint-interval",
          "1s",
          "--abuse-threshold",
          String(ABUSE_THRESHOLD),
          "--abuse-window",
          `${ABUSE_WINDOW_MILLIS}ms`,
          "--starting-offsets",
          "earliest",
          "--create-topics",
          "false"
        ])

        const scopeId = `general-${run}`
        const alice = yield* rpcClient(wsUrl, yield* hs256Token(SECRET, "alice"))
        const bob = yield* rpcClient(wsUrl, yield* hs256Token(SECRET, "bob"))
        const operator = yield* rpcClient(wsUrl, yield* hs256Token(SECRET, OPERATOR))
        const violations = yield* operator.RateLimitViolations().pipe(
          Stream.filter((v) =>
            v.senderId === "alice" && v.scopeId === scopeId
          ),
          Stream.take(1),
          Stream.runCollect,
          Effect.fork
        )

        // alice bursts (more than the threshold at once), bob talks; characters counted as text.length
        const sent: Array<EnrichedChatEvent> = []
        const texts = ["hello", "are you there?", "héllo wörld", "🚀 launch", "ok"]
        for (const text of texts) {
          sent.push(yield* alice.Send({ scopeType: 0, scopeId, text }))
        }
        for (const text of ["hi alice", "yes"]) {
          sent.push(yield* bob.Send({ scopeType: 0, scopeId, text }))
        }
        const expected = expectedWindows(sent)
        const burst = expectedBurst(sent.filter((e) => e.chatEvent.senderId === "alice"))
        expect(burst).toBeDefined()

        // A window is written once the watermark passes its end: later events (here in a scope of
        // their own) move it on. Until the windows show, each round sends one and asks. The ticks go
        // to the chat scope's partition: read from another partition, a tick can move the watermark
        // past the chat scope's events while they still wait to be fetched (a split idle for the
        // idle timeout no longer holds the watermark back), and they would be dropped as late.
        const ticksScopeId = ticksScopeOnPartitionOf({ scopeType: 0, scopeId })
        const from = new Date(expected[0]!.windowStartUtc).toISOString()
        const to = new Date(expected.at(-1)!.windowStartUtc + WINDOW_MILLIS).toISOString()
        const statsUrl = `${httpUrl}/api/chat/scopes/0/${scopeId}/stats?from=${from}&to=${to}`
        const aliceToken = yield* hs256Token(SECRET, "alice")
        const ticker = yield* rpcClient(wsUrl, yield* hs256Token(SECRET, "ticker"))
        const asWindows = (stats: ScopeStats) =>
          stats.windows.map((w) => ({
            windowStartUtc: w.windowStartUtc.getTime(),
            windowEndUtc: w.windowEndUtc.getTime(),
            messageCount: w.messageCount,
            distinctSenders: w.distinctSenders,
            characterCount: w.characterCount,
            firstEventAtUtc: w.firstEventAtUtc.getTime(),
            lastEventAtUtc: w.lastEventAtUtc.getTime()
          }))
        const served = yield* Effect.gen(function*() {
          yield* ticker.Send({ scopeType: 0, scopeId: ticksScopeId, text: "tick" })
          const response = yield* Effect.promise(() =>
            fetch(statsUrl, { headers: { authorization: `Bearer ${aliceToken}` } })
          )
          expect(response.status).toBe(200)
          return decodeStats(yield* Effect.promise(() => response.json()))
        }).pipe(
          Effect.filterOrFail(
            (stats) => stats.windows.reduce((n, w) => n + w.messageCount, 0) >= sent.length,
            () => "not yet"
          ),
          Effect.retry(Schedule.spaced("300 millis")),
          // the job's MiniCluster starts beside the suite's other files on two cores: its first
          // window took longer than 90 s once in a full run
          Effect.timeoutFail({
            duration: "180 seconds",
            onTimeout: () => new Error(`the job's windows never reached ${statsUrl}; the job said:\n${job.output()}`)
          })
        )
        expect(asWindows(served)).toEqual(expected)

        // the Stats RPC: the same answer
        const viaRpc = yield* alice.Stats({ scopeType: 0, scopeId, from: new Date(from), to: new Date(to) })
        expect(asWindows(viaRpc)).toEqual(expected)

        // one violation for alice's burst, reported at the message that crossed the threshold
        // (under a loaded suite the violation's transaction has taken more than 30 s to be committed)
        const [violation] = Chunk.toReadonlyArray(yield* Fiber.join(violations).pipe(Effect.timeout("120 seconds")))
        expect(violation).toMatchObject({
          senderId: "alice",
          scopeType: 0,
          scopeId,
          threshold: ABUSE_THRESHOLD,
          messageCount: burst!.count
        })
        expect(violation!.windowEndUtc.getTime()).toBe(burst!.at + 1)
        expect(violation!.windowEndUtc.getTime() - violation!.windowStartUtc.getTime()).toBe(ABUSE_WINDOW_MILLIS)
      }),
    { timeout: 360_000 }
  )
})
