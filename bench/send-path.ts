// Send path: the embedded server's service layers in-process (journaled in-memory log, SQLite
// history, in-memory rate limiter, both consumers), driven by `sendMessage` from @chatify/core with
// N concurrent callers. Prints acknowledged sends/s, ack latency p50/p99, how long after the last
// ack the broadcast consumer and the history writer caught up, and process CPU µs per send.
//
//   pnpm bench:send        (SEND_COUNT=30000 SEND_WARMUP=5000 SEND_IN_FLIGHT=64 SEND_SCOPES=500 SEND_USERS=1000)
//   taskset -c 1 node --import tsx bench/send-path.ts          (one core)
//   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/send-path.ts
//   SEND_PROFILE=/tmp/send.cpuprofile …   (a CPU profile of the measured sends only, via node:inspector)
//
// Every wait is bounded; the data directory is a fresh temp directory, removed at the end.
import { Session } from "node:inspector/promises"
import { register } from "node:module"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Chunk, Effect, Layer, Logger, LogLevel, Option, Schedule } from "effect"
import type * as CoreModule from "../packages/core/src/index.js"
import type * as ServicesModule from "../packages/server/src/Services.js"
import type { ServerConfig } from "../packages/server/src/Config.js"
import type * as TestingModule from "../packages/server/src/testing.js"
import { fmt, percentile } from "./support.js"

// The workspace packages' sources, as the tests run them: the hook adds the "@chatify/source"
// condition, so their own `@chatify/*` imports resolve to src/ too rather than to a possibly stale
// dist/ (hence the dynamic imports, which run after it is registered). SEND_SOURCES=dist runs the
// compiled packages instead (after `pnpm run build`): CPU profiles then point at real lines.
const fromDist = process.env["SEND_SOURCES"] === "dist"
if (!fromDist) {
  register(
    "data:text/javascript," +
      encodeURIComponent(
        `export const resolve = (specifier, context, next) =>
          next(specifier, { ...context, conditions: [...new Set([...context.conditions, "@chatify/source"])] })`
      )
  )
}
const modulePath = (
  path: string
) => (fromDist ? `../packages/${path.replace("/src/", "/dist/")}` : `../packages/${path}`)
const core = (await import(modulePath("core/src/index.js"))) as typeof CoreModule
const server = (await import(modulePath("server/src/Services.js"))) as typeof ServicesModule
const testing = (await import(modulePath("server/src/testing.js"))) as typeof TestingModule
const { ChatEventSource, ChatHistory, ConsumerHealth, CoreSettings, CurrentUser, LocalFanout, sendMessage } = core

const COUNT = Number(process.env["SEND_COUNT"] ?? 30_000)
const WARMUP = Number(process.env["SEND_WARMUP"] ?? 5_000)
const IN_FLIGHT = Number(process.env["SEND_IN_FLIGHT"] ?? 64)
const SCOPES = Number(process.env["SEND_SCOPES"] ?? 500)
const USERS = Number(process.env["SEND_USERS"] ?? 1_000)
const PHASE_TIMEOUT = "300 seconds"

const dataDirectory = mkdtempSync(join(tmpdir(), "chatify-send-bench-"))
// The embedded default as the tests configure it, with a rate limit the bench never reaches.
// SEND_PRODUCTION=1: Kafka, Redis and Cassandra on loopback as scripts/services/ start them (start
// them first, and create the topic: CHATIFY_KAFKA_TOPIC=chatify-w3-p6 CHATIFY_KAFKA_PARTITIONS=6
// scripts/services/kafka.sh topics), the topic and keyspace bench:w3 uses.
const PRODUCTION = process.env["SEND_PRODUCTION"] === "1"
const config: ServerConfig = testing.testServerConfig(dataDirectory, {
  podId: "bench",
  rateLimit: { limit: 1_000_000_000, windowSeconds: 60, failOpen: true },
  ...(PRODUCTION
    ? {
      broker: {
        useInMemoryBroker: false,
        bootstrapServers: ["127.0.0.1:9092"],
        topicName: "chatify-w3-p6",
        deadLetterTopicName: "chatify-w3-p6-dlq",
        partitions: 6,
        broadcastConsumerGroupPrefix: "chatify-send-bench",
        historyWriterConsumerGroup: "chatify-chat-history-writer",
        createTopics: false,
        lingerMs: Number(process.env["CHATIFY__MESSAGEBROKER__LINGERMS"] ?? 5)
      },
      caching: Option.some({ connectionString: "127.0.0.1:6379" }),
      database: Option.some({
        contactPoints: ["127.0.0.1"],
        port: 9042,
        keyspace: "chatify_w3",
        localDataCenter: "datacenter1",
        consistency: "LOCAL_QUORUM",
        replicationFactor: 1,
        applySchemaOnStartup: true,
        failFastOnSchemaError: true,
        schemaMigrationTableName: "schema_migrations"
      })
    }
    : {})
})
// As the server runs without CHATIFY__TRACING__* (Effect's tracer off); SEND_TRACING=1 keeps it on,
// making spans that go nowhere (the cost of tracing without an exporter's).
const tracing = process.env["SEND_TRACING"] === "1" ? Layer.empty : Layer.setTracerEnabled(false)
const services = server.Consumers(config).pipe(
  Layer.provideMerge(server.ServerServices(config)),
  Layer.provide(tracing)
)

const users = Array.from({ length: USERS }, (_, i) => ({ userId: `user-${i}`, connectionId: `conn-${i}` }))
// fresh scopes per run: a production history outlives the run
const run = PRODUCTION ? `${crypto.randomUUID().slice(0, 8)}-` : ""
const scopeIdOf = (i: number) => `bench-${run}${i % SCOPES}`
const partitionOfScope = new Array<number>(SCOPES).fill(0)

/** What the fan-out handed to this pod's subscribers (one bench subscriber per scope). */
const broadcast = { delivered: 0, latencies: [] as Array<number> }

/**
 * Sends `count` messages from `IN_FLIGHT` callers; per-send ack latency in ms. Each send gets its
 * caller's identity (CurrentUser), as every interface provides it per request.
 */
const sendAll = (first: number, count: number) =>
  Effect.gen(function*() {
    const latencies = new Float64Array(count)
    let next = 0
    const caller = Effect.gen(function*() {
      while (next < count) {
        const i = next++
        const n = first + i
        const startedAt = performance.now()
        const sent = yield* sendMessage({
          scopeType: 0,
          scopeId: scopeIdOf(n),
          text: `message ${n} from the send-path bench`
        }).pipe(Effect.provideService(CurrentUser, users[n % USERS]!))
        latencies[i] = performance.now() - startedAt
        partitionOfScope[n % SCOPES] = sent.partition
      }
    })
    yield* Effect.all(Array.from({ length: IN_FLIGHT }, () => caller), { concurrency: "unbounded", discard: true })
    return latencies
  })

/** Resolves once the history writer's group has committed everything the log holds. */
const historyDrained = Effect.gen(function*() {
  const source = yield* ChatEventSource
  const { historyWriterGroup } = yield* CoreSettings
  return yield* Effect.zipWith(
    source.endOffsets,
    source.committedOffsets(historyWriterGroup),
    (ends, committed) => Array.from(ends).every(([partition, end]) => (committed.get(partition) ?? 0) >= end)
  ).pipe(
    Effect.repeat({ schedule: Schedule.spaced("2 millis"), until: (done) => done }),
    Effect.timeoutFail({ duration: PHASE_TIMEOUT, onTimeout: () => new Error("the history writer did not catch up") })
  )
})

const broadcastDrained = (total: number) =>
  Effect.sync(() => broadcast.delivered >= total).pipe(
    Effect.repeat({ schedule: Schedule.spaced("2 millis"), until: (done) => done }),
    Effect.timeoutFail({
      duration: PHASE_TIMEOUT,
      onTimeout: () => new Error("the broadcast consumer did not catch up")
    })
  )

/** Every scope's history holds each of its sends once, in offset order. */
const verifyHistory = (total: number) =>
  Effect.gen(function*() {
    const history = yield* ChatHistory
    let stored = 0
    for (let s = 0; s < Math.min(SCOPES, total); s++) {
      const scope = { scopeType: 0 as const, scopeId: scopeIdOf(s) }
      const items = yield* history.after(scope, { partition: partitionOfScope[s]!, offset: -1 }, total)
      const expected = Math.floor(total / SCOPES) + (s < total % SCOPES ? 1 : 0)
      if (items.length !== expected) {
        return yield* Effect.fail(new Error(`${scope.scopeId}: ${items.length} of ${expected} in history`))
      }
      for (let k = 1; k < items.length; k++) {
        if (items[k]!.offset <= items[k - 1]!.offset) {
          return yield* Effect.fail(new Error(`${scope.scopeId}: out of order`))
        }
      }
      if (new Set(items.map((e) => e.chatEvent.messageId)).size !== items.length) {
        return yield* Effect.fail(new Error(`${scope.scopeId}: duplicate messageId`))
      }
      stored += items.length
    }
    return stored
  })

/** Profiles the measured phase when SEND_PROFILE names a file (the warm-up and the checks stay out). */
const startProfile = async (): Promise<{ readonly stop: () => Promise<void> }> => {
  const file = process.env["SEND_PROFILE"]
  if (file === undefined) return { stop: async () => {} }
  const session = new Session()
  session.connect()
  await session.post("Profiler.enable")
  await session.post("Profiler.start")
  return {
    stop: async () => {
      const { profile } = await session.post("Profiler.stop")
      writeFileSync(file, JSON.stringify(profile))
      session.disconnect()
    }
  }
}

const program = Effect.gen(function*() {
  const health = yield* ConsumerHealth
  yield* health.snapshot.pipe(
    Effect.repeat({
      schedule: Schedule.spaced("10 millis"),
      until: (states) => states.get("broadcast") === "running" && states.get("history-writer") === "running"
    }),
    Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error("the consumers did not start") })
  )
  const fanout = yield* LocalFanout
  for (let s = 0; s < SCOPES; s++) {
    yield* fanout.register(`0:${scopeIdOf(s)}`, {
      deliver: (event) => {
        broadcast.delivered++
        broadcast.latencies.push(Date.now() - event.chatEvent.createdAtUtc.getTime())
        return true
      }
    })
  }

  // Warm-up: the JIT, the SQLite page cache and the first history buckets.
  yield* sendAll(0, WARMUP)
  yield* broadcastDrained(WARMUP)
  yield* historyDrained
  broadcast.latencies.length = 0

  const profile = yield* Effect.promise(startProfile)
  const cpuBefore = process.cpuUsage()
  const startedAt = performance.now()
  const latencies = yield* sendAll(WARMUP, COUNT)
  const ackedAt = performance.now()
  const cpuAtAck = process.cpuUsage(cpuBefore)
  yield* broadcastDrained(WARMUP + COUNT)
  const broadcastAt = performance.now()
  yield* historyDrained
  const historyAt = performance.now()
  const cpu = process.cpuUsage(cpuBefore)
  yield* Effect.promise(() => profile.stop())

  const stored = yield* verifyHistory(WARMUP + COUNT)
  const sorted = latencies.sort()
  const fanoutSorted = Float64Array.from(broadcast.latencies).sort()
  const seconds = (ackedAt - startedAt) / 1000
  const cpuMicros = cpu.user + cpu.system
  console.log(
    [
      `send path: ${fmt(COUNT, 0)} sends, ${IN_FLIGHT} in flight, ${SCOPES} scopes, ${USERS} users (after ${
        fmt(WARMUP, 0)
      } warm-up sends)`,
      `  acknowledged        ${fmt(COUNT / seconds, 0)} sends/s (${fmt(seconds, 2)} s)`,
      `  ack latency         p50 ${fmt(percentile(sorted, 50), 2)} ms, p99 ${fmt(percentile(sorted, 99), 2)} ms`,
      `  broadcast lag       ${fmt(broadcastAt - ackedAt, 0)} ms after the last ack; created→delivered p50 ${
        fmt(percentile(fanoutSorted, 50), 0)
      } ms, p99 ${fmt(percentile(fanoutSorted, 99), 0)} ms`,
      `  history lag         ${fmt(historyAt - ackedAt, 0)} ms after the last ack (end to end ${
        fmt(COUNT / ((historyAt - startedAt) / 1000), 0)
      } sends/s)`,
      `  CPU                 ${fmt(cpuMicros / COUNT, 1)} µs per send through history (${
        fmt((cpuAtAck.user + cpuAtAck.system) / COUNT, 1)
      } µs until the last ack; ${fmt(cpuMicros / 1000 / (historyAt - startedAt), 2)} cores busy)`,
      `  history check       ${fmt(stored, 0)} events stored once each, in offset order per scope`
    ].join("\n")
  )
  return Chunk.empty<never>()
})

const exit = await Effect.runPromiseExit(
  program.pipe(
    Effect.scoped,
    Effect.provide(services),
    Logger.withMinimumLogLevel(LogLevel.Warning)
  )
)
rmSync(dataDirectory, { recursive: true, force: true })
if (exit._tag === "Failure") {
  console.error(exit.cause)
  process.exitCode = 1
}
