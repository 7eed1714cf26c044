// History writes on the real Cassandra: what one message costs Cassandra (its JVM's CPU from procfs)
// and this process, by the size of the batches the history writer hands the adapter. Run Cassandra
// first (scripts/services/cassandra.sh start); the keyspace chatify_histbench is created and reused.
//
//   pnpm bench:history          (HIST_COUNT=20000 HIST_SCOPES=100 HIST_BATCHES=100,1000,5000)
import { randomUUID } from "node:crypto"
import { readFileSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { ChatHistory } from "../packages/core/src/index.js"
import { CassandraHistory } from "../packages/adapters/src/cassandra/index.js"
import { ChatEvent, EnrichedChatEvent, ScopeTypes } from "../packages/domain/src/index.js"
import { fmt } from "./support.js"

const COUNT = Number(process.env["HIST_COUNT"] ?? 20_000)
const SCOPES = Number(process.env["HIST_SCOPES"] ?? 100)
const BATCHES = (process.env["HIST_BATCHES"] ?? "100,1000,5000").split(",").map(Number)
const CACHE = process.env["CHATIFY_CACHE"] ?? join(homedir(), ".cache", "chatify")

const cassandraPid = Number(readFileSync(join(CACHE, "run", "cassandra.pid"), "utf8").trim())
/** utime + stime of a process in seconds (procfs clock ticks of 10 ms). */
const cpuSecondsOf = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / 100
}
const ownCpuSeconds = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}

let offset = 0
const eventsFor = (count: number): Array<EnrichedChatEvent> =>
  Array.from({ length: count }, (_, i) => {
    const scope = i % SCOPES
    return new EnrichedChatEvent({
      chatEvent: new ChatEvent({
        messageId: randomUUID(),
        scopeType: ScopeTypes.Channel,
        scopeId: `bench-${scope}`,
        senderId: `user-${i % 1000}`,
        text: "x".repeat(100),
        createdAtUtc: new Date(),
        originPodId: "bench"
      }),
      partition: scope % 6,
      offset: offset++
    })
  })

const program = Effect.gen(function*() {
  const history = yield* ChatHistory
  yield* history.append(eventsFor(SCOPES * 2)) // warm the index buckets and the prepared statements
  console.log(`${fmt(COUNT, 0)} messages over ${SCOPES} scopes per batch size; Cassandra pid ${cassandraPid}`)
  console.log("| batch | messages/s | Cassandra µs/msg | this process µs/msg |")
  console.log("|---|---|---|---|")
  for (const batch of BATCHES) {
    const events = eventsFor(COUNT)
    const cassandraBefore = cpuSecondsOf(cassandraPid)
    const ownBefore = ownCpuSeconds()
    const startedAt = performance.now()
    for (let from = 0; from < events.length; from += batch) {
      yield* history.append(events.slice(from, from + batch))
    }
    const seconds = (performance.now() - startedAt) / 1000
    const cassandraMicros = ((cpuSecondsOf(cassandraPid) - cassandraBefore) * 1e6) / COUNT
    const ownMicros = ((ownCpuSeconds() - ownBefore) * 1e6) / COUNT
    console.log(`| ${batch} | ${fmt(COUNT / seconds, 0)} | ${fmt(cassandraMicros, 0)} | ${fmt(ownMicros, 0)} |`)
  }
})

await Effect.runPromise(
  program.pipe(
    Effect.provide(
      CassandraHistory.layerWithClient({ contactPoints: ["127.0.0.1"], keyspace: "chatify_histbench" }).pipe(
        Layer.orDie
      )
    ),
    Logger.withMinimumLogLevel(LogLevel.Warning)
  )
)
