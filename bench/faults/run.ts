// Faults: is an acknowledged message ever lost? Kafka mode, two pods (the real entry point, from
// source, as packages/server/test/support/serverProcess.ts starts it) on the real Redis, Kafka and
// Cassandra of scripts/services/, SDK clients (@chatify/sdk/node, with a token each, so a send's
// clientMessageId is deduplicated across reconnects) on both pods sending at a steady rate and
// subscribing on both pods. Each scenario injects one fault under that load, then stops sending,
// lets everything settle and checks every acknowledged send against what every subscriber got and
// what the history holds.
//
// The pods reach Kafka only through a TCP proxy (proxy.ts) in front of a second broker listener
// that advertises the proxy (scripts/services/kafka.sh, CHATIFY_KAFKA_PROXIED_*), and each pod's
// clients reach it through a proxy of their own that falls over to the other pod when it refuses
// (a load balancer), so a killed pod's clients reconnect to the other pod and resume there.
//
//   pnpm bench:faults                         the full profile (every scenario, 500 sends/s, ~15 min)
//   FAULTS_PROFILE=short pnpm bench:faults    ~3 min (what ./scripts/test.sh runs)
//   FAULTS_SCENARIOS=kafka-kill,pod-kill FAULTS_RATE=200 pnpm bench:faults
//
// Knobs: FAULTS_PROFILE (full|short), FAULTS_SCENARIOS, FAULTS_RATE (sends/s), FAULTS_SCOPES,
// FAULTS_PUBLISHERS_PER_POD, FAULTS_SUBSCRIBERS_PER_POD, FAULTS_SETTLE_SECONDS, FAULTS_PARTITIONS,
// FAULTS_KAFKA_PROXIED_PORT (9094) and FAULTS_BROKER_PROXY_PORT (19094).
// The pods' output goes to $CHATIFY_CACHE/logs/faults-pod-N.log. Exit code 1 when an acknowledged
// message is lost (or the bench itself failed). Loopback only; every loop is bounded in count and time.
import { type ChildProcess, execFile } from "node:child_process"
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import net from "node:net"
import { homedir, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { type ChatClientService, makeChatClient, type SendInput } from "@chatify/sdk/node"
import { Duration, Effect, FiberSet, Schedule, Stream } from "effect"
import { type ServerProcess, startServerProcess } from "../../packages/server/test/support/serverProcess.js"
import { hs256Token } from "../../packages/server/test/support/tokens.js"
import { fmt, rssOf } from "../support.js"
import { startTcpProxy, type TcpProxy } from "./proxy.js"

const ROOT = fileURLToPath(new URL("../../", import.meta.url))
const CACHE = process.env["CHATIFY_CACHE"] ?? join(homedir(), ".cache", "chatify")
const SHORT = process.env["FAULTS_PROFILE"] === "short"
const env = (name: string, full: string, short = full) => process.env[name] ?? (SHORT ? short : full)
const RATE = Number(env("FAULTS_RATE", "500", "100"))
const SCOPES = Number(env("FAULTS_SCOPES", "16", "8"))
const PUBLISHERS_PER_POD = Number(env("FAULTS_PUBLISHERS_PER_POD", "2"))
const SUBSCRIBERS_PER_POD = Number(env("FAULTS_SUBSCRIBERS_PER_POD", "1"))
const SETTLE_SECONDS = Number(env("FAULTS_SETTLE_SECONDS", "90", "60"))
const PARTITIONS = Number(env("FAULTS_PARTITIONS", "6"))
const KAFKA_PROXIED_PORT = Number(env("FAULTS_KAFKA_PROXIED_PORT", "9094"))
const BROKER_PROXY_PORT = Number(env("FAULTS_BROKER_PROXY_PORT", "19094"))
/** Seconds of load before the fault and after it is over. */
const BEFORE_SECONDS = SHORT ? 3 : 5
const AFTER_SECONDS = SHORT ? 6 : 15
/** Sends at most this many seconds' worth outstanding; beyond that a due send is skipped (counted). */
const MAX_OUTSTANDING_SECONDS = 10
/** No scenario sends for longer than this, whatever the fault does. */
const MAX_SENDING_SECONDS = 300
const TOPIC = "chatify-faults"
const KEYSPACE = "chatify_faults"
const SECRET = "chatify-faults-bench-hs256-secret-0123456789"
const PODS = 2

const KAFKA_ENV = {
  CHATIFY_KAFKA_PROXIED_PORT: String(KAFKA_PROXIED_PORT),
  CHATIFY_KAFKA_PROXIED_ADVERTISED_PORT: String(BROKER_PROXY_PORT),
  CHATIFY_KAFKA_TOPIC: TOPIC,
  CHATIFY_KAFKA_PARTITIONS: String(PARTITIONS),
  // after a kill -9 the broker waits out its own stale registration; a busy 2-core machine needs more than 60 s
  CHATIFY_KAFKA_WAIT_TIMEOUT: process.env["CHATIFY_KAFKA_WAIT_TIMEOUT"] ?? "180"
}

const log = (line: string) => console.log(line)
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** scripts/services/<name>.sh <action>, without blocking the event loop (the load goes on meanwhile). */
const service = (name: string, action: string) =>
  new Promise<void>((resolve, reject) => {
    execFile(
      "bash",
      [join(ROOT, "scripts/services", `${name}.sh`), action],
      { cwd: ROOT, env: { ...process.env, ...KAFKA_ENV }, timeout: 600_000 },
      (error, _stdout, stderr) => {
        if (error === null) resolve()
        else reject(new Error(`${name}.sh ${action} failed: ${stderr.slice(-2_000)}`))
      }
    )
  })

const isRunning = (name: string) => service(name, "status").then(() => true, () => false)

const servicePid = (name: string): number => {
  const pid = Number(readFileSync(join(CACHE, "run", `${name}.pid`), "utf8").trim())
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new Error(`no pid for ${name}`)
  return pid
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

/** Until `condition` holds, polling every 100 ms; false after `seconds`. */
const waitFor = async (condition: () => boolean | Promise<boolean>, seconds: number) => {
  const deadline = Date.now() + seconds * 1000
  while (Date.now() < deadline) {
    if (await condition()) return true
    await sleep(100)
  }
  return false
}

interface Pod {
  readonly server: ServerProcess
  readonly port: number
}

/** The running system: pods, the proxies in front of them and of the broker, and what is down. */
interface Bench {
  readonly pods: Array<Pod>
  readonly fronts: ReadonlyArray<TcpProxy>
  readonly broker: TcpProxy
  readonly children: Array<ChildProcess>
  /** Services a scenario stopped and has not started again (started again when the bench ends). */
  readonly down: Set<string>
  /** The pods' data directories, removed at the end. */
  readonly directories: Array<string>
}

const startPod = async (index: number, children: Array<ChildProcess>, dataDirectory: string): Promise<Pod> => {
  const server = startServerProcess({
    POD_NAME: `faults-pod-${index}`,
    CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory,
    CHATIFY__AUTH__HS256SECRET: SECRET,
    CHATIFY__RATELIMIT__LIMIT: "1000000000",
    CHATIFY__RATELIMIT__READLIMIT: "1000000000",
    CHATIFY__LIMITS__MAXCONNECTIONSPERADDRESS: "1000000",
    CHATIFY__LIMITS__MAXCONNECTSPERSECONDPERADDRESS: "1000000",
    // no load balancer watches /health/ready: nothing to wait for on SIGTERM
    CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0",
    CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: `127.0.0.1:${BROKER_PROXY_PORT}`,
    CHATIFY__MESSAGEBROKER__TOPICNAME: TOPIC,
    CHATIFY__MESSAGEBROKER__PARTITIONS: String(PARTITIONS),
    CHATIFY__CACHING__CONNECTIONSTRING: "127.0.0.1:6379",
    CHATIFY__DATABASE__CONTACTPOINTS: "127.0.0.1",
    CHATIFY__DATABASE__KEYSPACE: KEYSPACE
  }, children)
  const logFile = createWriteStream(join(CACHE, "logs", `faults-pod-${index}.log`), { flags: "a" })
  server.child.stdout?.pipe(logFile)
  server.child.stderr?.pipe(logFile)
  const url = await server.listening
  const ready = await waitFor(
    () =>
      fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.status === 200, () => false),
    120
  )
  if (!ready) throw new Error(`pod ${index} (${url}) not ready within 120 s`)
  return { server, port: Number(new URL(url).port) }
}

/** Pod `index` again (a new process on a new port); both fronts point at the pods as they are now. */
const replacePod = async (bench: Bench, index: number) => {
  const dataDirectory = mkdtempSync(join(tmpdir(), "chatify-faults-"))
  bench.directories.push(dataDirectory)
  bench.pods[index] = await startPod(index, bench.children, dataDirectory)
  pointFronts(bench)
}

const pointFronts = (bench: Bench) =>
  bench.fronts.forEach((front, i) => front.setTargets([bench.pods[i]!.port, bench.pods[(i + 1) % PODS]!.port]))

const podRss = (bench: Bench) =>
  bench.pods.map((pod) => {
    try {
      return rssOf(pod.server.child.pid!)
    } catch {
      return Number.NaN
    }
  })

// ---------------------------------------------------------------------------------------------
// What one scenario saw

interface Acked {
  readonly seq: number
  readonly scope: number
  readonly partition: number
  readonly offset: number
  readonly ackedAt: number
}

/** Everything one scenario's clients saw; one per scenario. */
class Observations {
  sending = true
  offered = 0
  skipped = 0
  outstanding = 0
  failed = 0
  readonly failures = new Map<string, number>()
  readonly sentAt = new Map<number, number>()
  readonly acked = new Map<string, Acked>()
  /** Every messageId seen for a send (acks, deliveries, history): more than one is a message written twice. */
  readonly messageIdsBySeq = new Map<number, Set<string>>()
  /** Per subscriber client: messageId → times delivered (after the SDK's dedupe). */
  readonly deliveries: Array<Map<string, number>> = []
  /** Per subscriber client and scope: the offsets delivered and when, in arrival order (evidence for a loss). */
  readonly arrivals: Array<Map<number, Array<{ readonly offset: number; readonly at: number }>>> = []
  readonly deliveredTo = new Map<string, number>()
  readonly fullyDeliveredAt = new Map<string, number>()
  readonly ackTimes: Array<number> = []
  readonly inHistory = new Set<string>()
  positionLost = 0
  reconnects = 0
  subscriptionFailures = 0
  live = 0
  faultStartAt = 0
  faultEndAt = 0
  readonly rssMax: Array<number> = Array.from({ length: PODS }, () => 0)

  constructor(readonly name: string, readonly subscribers: number) {
    for (let i = 0; i < subscribers; i++) {
      this.deliveries.push(new Map())
      this.arrivals.push(new Map())
    }
  }
  seqOf(text: string): number | undefined {
    const match = /^faults~[^~]+~(\d+)$/u.exec(text)
    return match === null ? undefined : Number(match[1])
  }
  sawMessageId(seq: number, messageId: string) {
    const ids = this.messageIdsBySeq.get(seq) ?? new Set<string>()
    ids.add(messageId)
    this.messageIdsBySeq.set(seq, ids)
  }
  delivered(subscriber: number, scope: number, messageId: string, text: string, offset: number) {
    const seq = this.seqOf(text)
    if (seq === undefined) return
    const arrivals = this.arrivals[subscriber]!
    const inScope = arrivals.get(scope) ?? []
    inScope.push({ offset, at: Date.now() })
    arrivals.set(scope, inScope)
    this.sawMessageId(seq, messageId)
    const mine = this.deliveries[subscriber]!
    const times = (mine.get(messageId) ?? 0) + 1
    mine.set(messageId, times)
    if (times === 1) {
      const to = (this.deliveredTo.get(messageId) ?? 0) + 1
      this.deliveredTo.set(messageId, to)
      if (to === this.subscribers) this.fullyDeliveredAt.set(messageId, Date.now())
    }
  }
  fail(tag: string) {
    this.failed++
    this.failures.set(tag, (this.failures.get(tag) ?? 0) + 1)
  }
}

const scopeIdOf = (run: string, scenario: string, scope: number) => `faults-${run}-${scenario}-${scope}`

/** A send that keeps its clientMessageId through outages of up to ~30 s (the SDK's default gives up after ~3 s). */
const sendRetry = Schedule.exponential("100 millis", 2).pipe(
  Schedule.union(Schedule.spaced("2 seconds")),
  Schedule.jittered,
  Schedule.upTo("30 seconds")
)

/**
 * The load of one scenario: subscriber and publisher clients on both pods' fronts, subscriptions
 * live before the first send, then sends at RATE until `observations.sending` is cleared. Returns
 * once every send is answered (or failed).
 */
const load = (bench: Bench, run: string, observations: Observations) =>
  Effect.gen(function*() {
    const client = (pod: number, user: string) =>
      makeChatClient({
        url: `ws://127.0.0.1:${bench.fronts[pod]!.port}/rpc`,
        // run on every (re)connect: a fresh token, whatever the scenario's length
        accessToken: Effect.orDie(hs256Token(SECRET, user)),
        sendRetry
      })
    const scopeIds = Array.from({ length: SCOPES }, (_, scope) => scopeIdOf(run, observations.name, scope))
    let subscriber = 0
    for (let pod = 0; pod < PODS; pod++) {
      for (let i = 0; i < SUBSCRIBERS_PER_POD; i++) {
        const index = subscriber++
        const chat = yield* client(pod, `subscriber-${pod}-${i}`)
        for (const [scope, scopeId] of scopeIds.entries()) {
          let wentLive = false
          yield* chat.subscribeWithStatus({ scopeType: 0, scopeId }).pipe(
            Stream.runForEach((update) =>
              Effect.sync(() => {
                switch (update._tag) {
                  case "Live":
                    if (!wentLive) observations.live++
                    wentLive = true
                    return
                  case "Reconnecting":
                    observations.reconnects++
                    return
                  case "PositionLost":
                    observations.positionLost++
                    return
                  case "Event":
                    observations.delivered(
                      index,
                      scope,
                      update.event.chatEvent.messageId,
                      update.event.chatEvent.text,
                      update.event.offset
                    )
                    return
                }
              })
            ),
            Effect.catchAll((error) =>
              Effect.sync(() => {
                observations.subscriptionFailures++
                log(`  subscription of subscriber ${index} to ${scopeId} failed for good: ${error._tag}`)
              })
            ),
            Effect.forkScoped
          )
        }
      }
    }
    const expectedLive = observations.subscribers * SCOPES
    yield* Effect.sync(() => observations.live).pipe(
      Effect.repeat({ until: (live) => live >= expectedLive, schedule: Schedule.spaced("50 millis") }),
      Effect.timeoutFail({
        duration: "60 seconds",
        onTimeout: () => new Error(`only ${observations.live}/${expectedLive} subscriptions live within 60 s`)
      })
    )

    const publishers: Array<ChatClientService> = []
    for (let i = 0; i < PUBLISHERS_PER_POD * PODS; i++) publishers.push(yield* client(i % PODS, `publisher-${i}`))

    const sends = yield* FiberSet.make()
    const sendOne = (seq: number) => {
      const publisher = publishers[seq % publishers.length]!
      const scope = Math.floor(seq / publishers.length) % SCOPES
      const input: SendInput = {
        scopeType: 0,
        scopeId: scopeIds[scope]!,
        text: `faults~${observations.name}~${seq}`,
        clientMessageId: `${run}-${observations.name}-${seq}`
      }
      observations.outstanding++
      observations.sentAt.set(seq, Date.now())
      return publisher.send(input).pipe(
        Effect.match({
          onFailure: (error) => observations.fail(error._tag),
          onSuccess: (event) => {
            const now = Date.now()
            observations.acked.set(event.chatEvent.messageId, {
              seq,
              scope,
              partition: event.partition,
              offset: event.offset,
              ackedAt: now
            })
            observations.sawMessageId(seq, event.chatEvent.messageId)
            observations.ackTimes.push(now)
          }
        }),
        Effect.ensuring(Effect.sync(() => observations.outstanding--)),
        FiberSet.run(sends)
      )
    }
    const startedAt = Date.now()
    const maxOutstanding = Math.max(1_000, RATE * MAX_OUTSTANDING_SECONDS)
    while (observations.sending && Date.now() - startedAt < MAX_SENDING_SECONDS * 1000) {
      const due = Math.floor(((Date.now() - startedAt) / 1000) * RATE)
      while (observations.offered < due) {
        const seq = observations.offered++
        if (observations.outstanding >= maxOutstanding) observations.skipped++
        else yield* sendOne(seq)
      }
      yield* Effect.sleep("10 millis")
    }
    yield* Effect.sync(() => observations.outstanding).pipe(
      Effect.repeat({ until: (n) => n === 0, schedule: Schedule.spaced("100 millis") }),
      Effect.timeout("120 seconds"),
      Effect.ignore
    )
  })

/** Whether every acked message reached every subscriber; then the history of every scope, until it holds them all. */
const settle = (bench: Bench, run: string, observations: Observations) =>
  Effect.gen(function*() {
    const deadline = Date.now() + SETTLE_SECONDS * 1000
    const allDelivered = () =>
      Array.from(observations.acked.keys()).every((id) => observations.fullyDeliveredAt.has(id))
    yield* Effect.sync(allDelivered).pipe(
      Effect.repeat({ until: (done) => done || Date.now() > deadline, schedule: Schedule.spaced("200 millis") })
    )
    const reader = yield* makeChatClient({
      url: `ws://127.0.0.1:${bench.fronts[0]!.port}/rpc`,
      accessToken: Effect.orDie(hs256Token(SECRET, "history-reader"))
    })
    const readHistory = Effect.forEach(
      Array.from({ length: SCOPES }, (_, scope) => scopeIdOf(run, observations.name, scope)),
      (scopeId) =>
        reader.historyAll({ scopeType: 0, scopeId }, { pageSize: 500 }).pipe(
          Stream.runForEach((event) =>
            Effect.sync(() => {
              observations.inHistory.add(event.chatEvent.messageId)
              const seq = observations.seqOf(event.chatEvent.text)
              if (seq !== undefined) observations.sawMessageId(seq, event.chatEvent.messageId)
            })
          )
        ),
      { discard: true }
    )
    const allInHistory = () => Array.from(observations.acked.keys()).every((id) => observations.inHistory.has(id))
    yield* readHistory.pipe(
      Effect.timeout("30 seconds"),
      Effect.catchAll((error) => Effect.sync(() => log(`  history read failed: ${String(error)}`))),
      Effect.repeat({
        until: () => allInHistory() || Date.now() > deadline,
        schedule: Schedule.spaced("2 seconds")
      })
    )
  }).pipe(Effect.scoped)

/** Evidence for a loss: each pod's fan-out, subscription and consumer-lag metrics. */
const logPodMetrics = (bench: Bench) =>
  Promise.all(bench.pods.map(async (pod, i) => {
    const text = await fetch(`http://127.0.0.1:${pod.port}/metrics`, { signal: AbortSignal.timeout(5_000) })
      .then((r) => r.text(), (error: unknown) => `(no metrics: ${String(error)})`)
    const wanted = text.split("\n").filter((line) =>
      /^chatify_(fanout_deliveries_total|fanout_subscriptions|consumer_lag_records)/u.test(line)
    )
    log(`  pod ${i} metrics: ${wanted.join(" | ")}`)
  }))

// ---------------------------------------------------------------------------------------------
// Scenarios

interface Scenario {
  readonly name: string
  readonly fault: string
  /** Injects the fault and resolves once it is over (what was stopped runs again); recovery counts from then. */
  readonly inject: (bench: Bench, observations: Observations) => Promise<void>
  /** After the sends stopped: puts back what the fault took away for good (a killed pod). */
  readonly repair?: (bench: Bench) => Promise<void>
}

const stopFor = (name: string, seconds: number) => async (bench: Bench, observations: Observations) => {
  observations.faultStartAt = Date.now()
  bench.down.add(name)
  await service(name, "stop")
  await sleep(seconds * 1000)
  await service(name, "start")
  bench.down.delete(name)
}

const killPod = (signal: NodeJS.Signals) => async (bench: Bench, observations: Observations) => {
  const pod = bench.pods[1]!
  observations.faultStartAt = Date.now()
  pod.server.child.kill(signal)
  if (signal === "SIGTERM") await Promise.race([pod.server.exited, sleep(60_000)])
}

const KAFKA_DOWN_SECONDS = SHORT ? 5 : 15
const SCENARIOS: ReadonlyArray<Scenario> = [
  {
    name: "kafka-kill",
    fault: `broker kill -9, down ${KAFKA_DOWN_SECONDS} s, restarted`,
    inject: async (bench, observations) => {
      const pid = servicePid("kafka")
      observations.faultStartAt = Date.now()
      bench.down.add("kafka")
      process.kill(pid, "SIGKILL")
      await waitFor(() => !alive(pid), 30)
      await sleep(KAFKA_DOWN_SECONDS * 1000)
      await service("kafka", "start")
      bench.down.delete("kafka")
    }
  },
  {
    name: "broker-net",
    fault: SHORT ? "broker proxy +300 ms for 5 s, then cut 8 s" : "broker proxy +300 ms for 15 s, then cut 20 s",
    inject: async (bench, observations) => {
      observations.faultStartAt = Date.now()
      bench.broker.setLatency(300)
      await sleep((SHORT ? 5 : 15) * 1000)
      bench.broker.cut()
      await sleep((SHORT ? 8 : 20) * 1000)
      bench.broker.restore()
    }
  },
  {
    name: "pod-kill",
    fault: "pod 1 kill -9 (its clients fail over to pod 0)",
    inject: killPod("SIGKILL"),
    repair: (bench) => replacePod(bench, 1)
  },
  {
    name: "pod-sigterm",
    fault: "pod 1 SIGTERM under load",
    inject: killPod("SIGTERM"),
    repair: (bench) => replacePod(bench, 1)
  },
  { name: "redis-stop", fault: "Redis stopped 30 s, started", inject: stopFor("redis", 30) },
  { name: "cassandra-stop", fault: "Cassandra stopped 60 s, started", inject: stopFor("cassandra", 60) }
]
const SHORT_SCENARIOS = ["kafka-kill", "pod-kill", "broker-net"]

interface Outcome {
  readonly name: string
  readonly fault: string
  readonly offered: number
  readonly acked: number
  readonly failed: number
  readonly lostDelivery: number
  readonly lostHistory: number
  readonly lost: number
  readonly duplicates: number
  readonly gaps: number
  readonly recoverySeconds: number
  readonly longestAckPauseSeconds: number
  readonly rssMiB: ReadonlyArray<number>
}

/** Runs one scenario under load and compares every acknowledged send with what was delivered and stored. */
const runScenario = (bench: Bench, run: string, scenario: Scenario) =>
  Effect.gen(function*() {
    const observations = new Observations(scenario.name, PODS * SUBSCRIBERS_PER_POD)
    const sampler = setInterval(() => {
      podRss(bench).forEach((rss, i) => {
        if (rss > observations.rssMax[i]!) observations.rssMax[i] = rss
      })
    }, 1_000)
    const loading = yield* Effect.fork(load(bench, run, observations))
    // the load runs once every subscription is live and the first sends are acknowledged
    yield* Effect.sync(() => observations.acked.size).pipe(
      Effect.repeat({ until: (n) => n > 0, schedule: Schedule.spaced("50 millis") }),
      Effect.timeout("90 seconds"),
      Effect.raceFirst(
        Effect.flatMap(loading.await, () => Effect.fail(new Error("the load ended before its first ack")))
      )
    )
    yield* Effect.sleep(Duration.seconds(BEFORE_SECONDS))
    log(`  ${new Date().toISOString()} injecting: ${scenario.fault}`)
    yield* Effect.promise(() => scenario.inject(bench, observations))
    observations.faultEndAt = Date.now()
    log(`  fault over after ${fmt((observations.faultEndAt - observations.faultStartAt) / 1000)} s`)
    yield* Effect.sleep(Duration.seconds(AFTER_SECONDS))
    observations.sending = false
    yield* loading.await
    const repair = scenario.repair
    if (repair !== undefined) yield* Effect.promise(() => repair(bench))
    yield* settle(bench, run, observations)
    clearInterval(sampler)
    const outcome = outcomeOf(scenario, observations)
    if (outcome.lost > 0) yield* Effect.promise(() => logPodMetrics(bench))
    return outcome
  }).pipe(Effect.scoped)

const outcomeOf = (scenario: Scenario, o: Observations): Outcome => {
  const lostDelivery = new Set<string>()
  const lostHistory = new Set<string>()
  for (const [messageId] of o.acked) {
    if (!o.fullyDeliveredAt.has(messageId)) lostDelivery.add(messageId)
    if (!o.inHistory.has(messageId)) lostHistory.add(messageId)
  }
  const lost = new Set([...lostDelivery, ...lostHistory])
  // gaps: per subscriber and scope, runs of consecutive acked messages (in log order) it never got
  let gaps = o.positionLost
  const byScope = new Map<number, Array<[string, Acked]>>()
  for (const entry of o.acked) byScope.set(entry[1].scope, [...(byScope.get(entry[1].scope) ?? []), entry])
  for (const entries of byScope.values()) {
    entries.sort((a, b) => a[1].partition - b[1].partition || a[1].offset - b[1].offset)
    for (const mine of o.deliveries) {
      let inGap = false
      for (const [messageId] of entries) {
        const missing = !mine.has(messageId)
        if (missing && !inGap) gaps++
        inGap = missing
      }
    }
  }
  let duplicates = 0
  for (const ids of o.messageIdsBySeq.values()) duplicates += ids.size - 1
  for (const mine of o.deliveries) for (const times of mine.values()) duplicates += times - 1
  // recovery: for every publisher, its first send after the fault that reached every subscriber
  const publishers = PUBLISHERS_PER_POD * PODS
  const firstAfter = new Map<number, number>()
  for (const [messageId, acked] of o.acked) {
    const sentAt = o.sentAt.get(acked.seq) ?? 0
    const deliveredAt = o.fullyDeliveredAt.get(messageId)
    if (sentAt < o.faultEndAt || deliveredAt === undefined) continue
    const publisher = acked.seq % publishers
    const known = firstAfter.get(publisher)
    if (known === undefined || sentAt < (o.sentAt.get(known) ?? 0)) firstAfter.set(publisher, acked.seq)
  }
  const seqToMessage = new Map(Array.from(o.acked, ([id, a]) => [a.seq, id]))
  // a publisher none of whose later sends got through has no recovery time: the others' is shown, and it is named
  const recoveredAt = firstAfter.size === 0 ? Number.NaN : Math.max(
    ...Array.from(firstAfter.values(), (seq) => o.fullyDeliveredAt.get(seqToMessage.get(seq)!)!)
  )
  if (firstAfter.size < publishers) {
    log(`  only ${firstAfter.size} of ${publishers} publishers got a send after the fault through to every subscriber`)
  }
  const ackTimes = [...o.ackTimes].sort((a, b) => a - b)
  let longestPause = 0
  for (let i = 1; i < ackTimes.length; i++) longestPause = Math.max(longestPause, ackTimes[i]! - ackTimes[i - 1]!)

  const outcome: Outcome = {
    name: scenario.name,
    fault: scenario.fault,
    offered: o.offered,
    acked: o.acked.size,
    failed: o.failed + o.skipped,
    lostDelivery: lostDelivery.size,
    lostHistory: lostHistory.size,
    lost: lost.size,
    duplicates,
    gaps,
    recoverySeconds: (recoveredAt - o.faultEndAt) / 1000,
    longestAckPauseSeconds: longestPause / 1000,
    rssMiB: o.rssMax.map((rss) => rss / 2 ** 20)
  }
  log(
    `  offered ${o.offered}, acked ${o.acked.size}, failed ${o.failed} (${
      Array.from(o.failures, ([tag, n]) => `${tag} ${n}`).join(", ") || "none"
    }), skipped ${o.skipped}; subscription reconnects ${o.reconnects}, position lost ${o.positionLost}, ` +
      `subscriptions failed ${o.subscriptionFailures}`
  )
  // the evidence for a loss: which messages, where in the log, when acknowledged relative to the fault
  for (const messageId of Array.from(lost).slice(0, 10)) {
    const acked = o.acked.get(messageId)!
    const missedBy = o.deliveries.flatMap((mine, i) => mine.has(messageId) ? [] : [i])
    log(
      `  LOST ${messageId} seq ${acked.seq} scope ${acked.scope} p${acked.partition}@${acked.offset}, acked ${
        fmt((acked.ackedAt - o.faultStartAt) / 1000)
      } s after the fault began; missed by subscribers [${missedBy.join(",")}], in history: ${
        o.inHistory.has(messageId)
      }`
    )
    // what each subscriber that missed it got in that partition just before and after it
    for (const subscriber of missedBy) {
      const arrivals = o.arrivals[subscriber]!.get(acked.scope) ?? []
      const before = arrivals.filter((a) => a.offset < acked.offset).at(-1)
      const after = arrivals.find((a) => a.offset > acked.offset)
      const when = (a: { readonly offset: number; readonly at: number } | undefined) =>
        a === undefined ? "none" : `@${a.offset} at ${fmt((a.at - o.faultStartAt) / 1000)} s`
      log(
        `    subscriber ${subscriber} in scope ${acked.scope}: ${arrivals.length} deliveries; last before ${
          when(before)
        }, first after ${when(after)}`
      )
    }
  }
  // per subscriber and scope: offsets that arrived lower than one before them (out of order)
  const disorder = o.arrivals.map((scopes) =>
    Array.from(scopes.values()).reduce(
      (n, arrivals) => n + arrivals.filter((a, i) => i > 0 && a.offset < arrivals[i - 1]!.offset).length,
      0
    )
  )
  if (disorder.some((n) => n > 0)) log(`  out-of-order deliveries per subscriber: [${disorder.join(", ")}]`)
  // per subscriber: how many events, and when the first and last came (relative to the fault)
  o.arrivals.forEach((scopes, i) => {
    const all = Array.from(scopes.values()).flat()
    const first = all.reduce((m, a) => Math.min(m, a.at), Number.POSITIVE_INFINITY)
    const last = all.reduce((m, a) => Math.max(m, a.at), 0)
    log(
      `  subscriber ${i}: ${all.length} events${
        all.length === 0
          ? ""
          : `, first ${fmt((first - o.faultStartAt) / 1000)} s, last ${
            fmt((last - o.faultStartAt) / 1000)
          } s after the fault began`
      }`
    )
  })
  return outcome
}

// ---------------------------------------------------------------------------------------------

const ensureServices = async () => {
  await Promise.all([service("redis", "start"), service("cassandra", "start")])
  // the pods need the second listener, which advertises the broker proxy
  if (await isRunning("kafka") && !(await listening(KAFKA_PROXIED_PORT))) {
    log(`restarting Kafka with a listener on ${KAFKA_PROXIED_PORT} advertising ${BROKER_PROXY_PORT}`)
    await service("kafka", "stop")
  }
  await service("kafka", "start")
  await service("kafka", "topics")
  if (!(await listening(KAFKA_PROXIED_PORT))) throw new Error(`Kafka does not listen on ${KAFKA_PROXIED_PORT}`)
}

const main = async (): Promise<number> => {
  const names = process.env["FAULTS_SCENARIOS"]?.split(",") ?? (SHORT ? SHORT_SCENARIOS : SCENARIOS.map((s) => s.name))
  const scenarios = names.map((name) => {
    const scenario = SCENARIOS.find((s) => s.name === name)
    if (scenario === undefined) {
      throw new Error(`no scenario ${name}; there are ${SCENARIOS.map((s) => s.name).join(", ")}`)
    }
    return scenario
  })
  const run = crypto.randomUUID().slice(0, 8)
  log(
    `faults ${SHORT ? "(short) " : ""}${new Date().toISOString()} run ${run}: ${RATE} sends/s, ${SCOPES} scopes, ` +
      `${PUBLISHERS_PER_POD * PODS} publishers and ${
        SUBSCRIBERS_PER_POD * PODS
      } subscribers (every scope) over ${PODS} pods; ` +
      `scenarios ${names.join(", ")}; nproc ${(await import("node:os")).availableParallelism()}`
  )
  mkdirSync(join(CACHE, "logs"), { recursive: true })
  await ensureServices()

  const children: Array<ChildProcess> = []
  const directories: Array<string> = []
  const broker = await startTcpProxy({ targets: [KAFKA_PROXIED_PORT], listenPort: BROKER_PROXY_PORT })
  const fronts = await Promise.all(Array.from({ length: PODS }, () => startTcpProxy({ targets: [] })))
  const bench: Bench = { pods: [], fronts, broker, children, down: new Set(), directories }
  const outcomes: Array<Outcome> = []
  try {
    for (let i = 0; i < PODS; i++) {
      const dataDirectory = mkdtempSync(join(tmpdir(), "chatify-faults-"))
      directories.push(dataDirectory)
      // one after the other: the first applies the schema, the second finds it
      bench.pods.push(await startPod(i, children, dataDirectory))
    }
    pointFronts(bench)
    log(`pods ready on ${bench.pods.map((p) => p.port).join(", ")}; broker proxy ${BROKER_PROXY_PORT}`)
    for (const scenario of scenarios) {
      log(`\n${scenario.name}: ${scenario.fault}`)
      const outcome = await Effect.runPromise(
        runScenario(bench, run, scenario).pipe(
          Effect.timeoutFail({
            duration: "15 minutes",
            onTimeout: () => new Error(`scenario ${scenario.name} did not end within 15 minutes`)
          })
        )
      )
      outcomes.push(outcome)
    }
  } finally {
    broker.restore()
    for (const name of bench.down) await service(name, "start").catch((error: unknown) => log(String(error)))
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
    await Promise.all(children.map((child) =>
      child.exitCode === null && child.signalCode === null
        ? Promise.race([new Promise((resolve) => child.once("exit", resolve)), sleep(20_000)])
        : Promise.resolve()
    ))
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    await Promise.all([broker.close(), ...fronts.map((front) => front.close())])
    for (const dir of directories) rmSync(dir, { recursive: true, force: true })
  }

  log("")
  log(
    `| scenario | fault | offered | acked | failed/skipped | acked but lost (delivery / history) | duplicates | gaps | recovery s | longest ack pause s | pod RSS max MiB |`
  )
  log("|---|---|---|---|---|---|---|---|---|---|---|")
  for (const o of outcomes) {
    log(
      `| ${o.name} | ${o.fault} | ${o.offered} | ${o.acked} | ${o.failed} | ${o.lost} (${o.lostDelivery} / ${o.lostHistory}) | ${o.duplicates} | ${o.gaps} | ${
        fmt(o.recoverySeconds)
      } | ${fmt(o.longestAckPauseSeconds)} | ${o.rssMiB.map((m) => fmt(m, 0)).join(" / ")} |`
    )
  }
  const lost = outcomes.reduce((n, o) => n + o.lost, 0)
  log("")
  log(lost === 0 ? "no acknowledged message lost" : `FAIL: ${lost} acknowledged message(s) lost`)
  return lost === 0 ? 0 : 1
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
