// W3: production mode at Kafka speed. Starts Redis, Kafka and Cassandra with scripts/services/, two
// pods (packages/server/dist/main.js) on them, and a load generator (loadgen.ts, its own process)
// with publishers and subscribers spread over both pods (100 scopes × 10 subscribers over /rpc).
// The offered send rate is stepped up until p99 send→deliver exceeds W3_P99_MS. Per step it prints
// acknowledged sends/s, send-ack p50/p99, send→deliver p50/p99 on the other pod, history lag
// (send → readable through History on the other pod), the pods' CPU µs per acknowledged send
// (procfs), each JVM's, Redis' and the pods' CPU, pod RSS after the step, the generator's CPU, the
// rest of the machine's CPU (other work: a busy machine makes the step noisy; CPU % are of one core)
// and the slowest /health/ready answer while the step ran.
//
//   pnpm bench:w3                  a few minutes
//   QUICK=1 pnpm bench:w3          smoke run (small rates, short steps)
//   W3_RATES=500,1000 W3_SECONDS=6 W3_PODS=1 W3_PROFILE=/tmp/prof pnpm bench:w3
//
// Knobs: W3_RATES, W3_SECONDS, W3_DRAIN_SECONDS, W3_WARMUP_SECONDS, W3_P99_MS, W3_PODS (1|2), W3_SCOPES,
// W3_SUBSCRIBERS_PER_SCOPE, W3_SUBSCRIBER_CONNECTIONS, W3_PUBLISHERS, W3_PARTITIONS,
// W3_PROFILE (a directory: the pods run with --cpu-prof into it), W3_NODE_ARGS (more node flags for
// the pods, e.g. --trace-gc), W3_POD_LOGS (a directory: the pods' output goes to w3-pod-N.log there), W3_KEEP_SERVICES=1 (leave the
// services running at the end; by default only those this run started are stopped).
// Loopback only; every loop is bounded in count and time.
import { type ChildProcess, execFileSync, fork } from "node:child_process"
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { homedir, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type { Command, StepResult } from "./loadgen.js"
import { type Child, fmt as format, rssOf, startProcess } from "../support.js"

// NaN crosses the IPC channel as null
const fmt = (n: number | null, digits = 1) => (n === null || Number.isNaN(n) ? "–" : format(n, digits))

const ROOT = fileURLToPath(new URL("../../", import.meta.url))
const QUICK = process.env["QUICK"] === "1"
const env = (name: string, fallback: string, quick = fallback) => process.env[name] ?? (QUICK ? quick : fallback)
const RATES = env("W3_RATES", "100,200,300,500,750,1000,1500,2000,3000,5000,7500,10000,15000,20000", "100,300")
  .split(",").map(Number)
const SECONDS = Number(env("W3_SECONDS", "8", "3"))
const DRAIN_SECONDS = Number(env("W3_DRAIN_SECONDS", "5", "3"))
const WARMUP_SECONDS = Number(env("W3_WARMUP_SECONDS", "6", "2"))
const P99_MS = Number(env("W3_P99_MS", "100"))
const PODS = Number(env("W3_PODS", "2"))
const SCOPES = Number(env("W3_SCOPES", "100", "20"))
const PER_SCOPE = Number(env("W3_SUBSCRIBERS_PER_SCOPE", "10", "4"))
const SUB_CONNECTIONS = Number(env("W3_SUBSCRIBER_CONNECTIONS", "100", "20"))
const PUBLISHERS = Number(env("W3_PUBLISHERS", "20", "4"))
const PARTITIONS = Number(env("W3_PARTITIONS", "6"))
const PROFILE = process.env["W3_PROFILE"]
const EMBEDDED = process.env["W3_EMBEDDED"] === "1"
const TOPIC = `chatify-w3-p${PARTITIONS}`
const KEYSPACE = "chatify_w3"
const CACHE = process.env["CHATIFY_CACHE"] ?? join(homedir(), ".cache", "chatify")
const SERVICES = ["redis", "kafka", "cassandra"] as const

const log = (line: string) => console.log(line)
const sh = (args: ReadonlyArray<string>, extraEnv: Record<string, string> = {}) =>
  execFileSync("bash", args, {
    cwd: ROOT,
    env: { ...process.env, ...extraEnv },
    stdio: ["ignore", "pipe", "inherit"],
    timeout: 600_000
  })
    .toString()

/** utime + stime of a process (all threads), in µs. */
const CLOCK_TICKS = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim())
const cpuMicros = (pid: number): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return ((Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS) * 1e6
  } catch {
    return Number.NaN
  }
}
/** Busy CPU of the whole machine (all cores, /proc/stat), in µs. */
const machineBusyMicros = (): number => {
  const fields = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/u).slice(1).map(Number)
  // user nice system idle iowait irq softirq steal …: everything but idle and iowait
  const busy = fields.reduce((sum, v, i) => (i === 3 || i === 4 ? sum : sum + v), 0)
  return (busy / CLOCK_TICKS) * 1e6
}
const servicePid = (service: string): number | undefined => {
  try {
    const pid = Number(readFileSync(join(CACHE, "run", `${service}.pid`), "utf8").trim())
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}
const running = (service: string) => {
  try {
    execFileSync("bash", [`scripts/services/${service}.sh`, "status"], { cwd: ROOT, stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

const startPod = (podId: string, dataDirectory: string): Promise<Child> =>
  startProcess(
    [
      ...(PROFILE === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${PROFILE}`]),
      ...(process.env["W3_NODE_ARGS"]?.split(" ").filter((arg) => arg.length > 0) ?? []),
      join(ROOT, "packages/server/dist/main.js")
    ],
    {
      HOST: "127.0.0.1",
      PORT: "0",
      POD_NAME: podId,
      CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory,
      CHATIFY__RATELIMIT__LIMIT: "1000000000",
      // every subscriber of the bench is one anonymous caller (127.0.0.1): its subscriptions are reads
      CHATIFY__RATELIMIT__READLIMIT: "1000000000",
      // no load balancer to wait for on stop
      CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0",
      // every client of the bench connects from 127.0.0.1
      CHATIFY__LIMITS__MAXCONNECTIONSPERADDRESS: "1000000",
      CHATIFY__LIMITS__MAXCONNECTSPERSECONDPERADDRESS: "1000000",
      // W3_EMBEDDED=1: the same load on the embedded default (one pod only), for comparison
      ...(EMBEDDED ? {} : {
        CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: "127.0.0.1:9092",
        CHATIFY__MESSAGEBROKER__TOPICNAME: TOPIC,
        CHATIFY__MESSAGEBROKER__PARTITIONS: String(PARTITIONS),
        CHATIFY__CACHING__CONNECTIONSTRING: "127.0.0.1:6379",
        CHATIFY__DATABASE__CONTACTPOINTS: "127.0.0.1",
        CHATIFY__DATABASE__KEYSPACE: KEYSPACE
      })
    },
    /Listening on http:\/\/[^:]+:(\d+)/u
  )

const awaitReady = async (port: string) => {
  const deadline = Date.now() + 120_000
  while (Date.now() < deadline) {
    const status = await fetch(`http://127.0.0.1:${port}/health/ready`, { signal: AbortSignal.timeout(2_000) })
      .then((r) => r.status, () => 0)
    if (status === 200) return
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error(`pod on ${port} not ready within 120 s`)
}

const ask = (generator: ChildProcess, command: Command, timeoutMs: number) =>
  new Promise<unknown>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`load generator: no answer to ${command.type} within ${timeoutMs} ms`)),
      timeoutMs
    )
    generator.once("message", (message: { type: string; message?: string }) => {
      clearTimeout(timer)
      if (message.type === "error") reject(new Error(`load generator: ${message.message}`))
      else resolve(message)
    })
    generator.send(command)
  })

const main = async () => {
  const startedHere = SERVICES.filter((service) => !running(service))
  log(
    `W3 ${QUICK ? "(QUICK) " : ""}${
      new Date().toISOString()
    }: ${PODS} pod(s), ${SCOPES} scopes × ${PER_SCOPE} subscribers over ` +
      `${SUB_CONNECTIONS} connections, ${PUBLISHERS} publishers, topic ${TOPIC} (${PARTITIONS} partitions), ` +
      `${SECONDS} s per step, stop when p99 send→deliver > ${P99_MS} ms; nproc ${
        execFileSync("nproc").toString().trim()
      }`
  )
  // only what the pods use: all.sh would start OpenSearch and Jaeger too, and leave them running
  for (const service of SERVICES) sh([`scripts/services/${service}.sh`, "start"])
  sh(["scripts/services/kafka.sh", "topics"], {
    CHATIFY_KAFKA_TOPIC: TOPIC,
    CHATIFY_KAFKA_PARTITIONS: String(PARTITIONS)
  })
  log("building dist (tsc -b, incremental)")
  execFileSync("pnpm", ["run", "--silent", "build"], { cwd: ROOT, stdio: "inherit", timeout: 600_000 })

  const directories: Array<string> = []
  const pods: Array<Child> = []
  let generator: ChildProcess | undefined
  try {
    for (let i = 0; i < PODS; i++) {
      const dir = mkdtempSync(join(tmpdir(), "chatify-w3-"))
      directories.push(dir)
      // one after the other: the first applies the schema, the second finds it
      const pod = await startPod(`w3-pod-${i}`, dir)
      pods.push(pod)
      const podLogs = process.env["W3_POD_LOGS"]
      if (podLogs !== undefined) {
        const file = join(podLogs, `w3-pod-${i}.log`)
        pod.process.stdout?.on("data", (chunk: Buffer) => appendFileSync(file, chunk))
        pod.process.stderr?.on("data", (chunk: Buffer) => appendFileSync(file, chunk))
      }
      await awaitReady(pod.url)
    }
    const jvms = { kafka: servicePid("kafka"), cassandra: servicePid("cassandra"), redis: servicePid("redis") }
    log(
      `pods ${
        pods.map((p) => `pid ${p.pid} :${p.url}`).join(", ")
      }; kafka pid ${jvms.kafka}, cassandra pid ${jvms.cassandra}, redis pid ${jvms.redis}`
    )
    log(`API RSS at start: ${pods.map((p) => `${fmt(rssOf(p.pid) / 2 ** 20, 0)} MiB`).join(", ")}`)

    generator = fork(fileURLToPath(new URL("./loadgen.ts", import.meta.url)), [], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    const runId = crypto.randomUUID().slice(0, 8)
    await ask(generator, {
      type: "init",
      pods: pods.map((p) => `127.0.0.1:${p.url}`),
      runId,
      scopes: SCOPES,
      subscribersPerScope: PER_SCOPE,
      subscriberConnections: SUB_CONNECTIONS,
      publishers: PUBLISHERS
    }, 120_000)
    log(
      `connected: ${SUB_CONNECTIONS} subscriber connections (${
        SCOPES * PER_SCOPE
      } subscriptions), ${PUBLISHERS} publishers`
    )
    // warm-up (not reported): the JIT, connection pools, the first history buckets
    await ask(generator, {
      type: "step",
      step: 1_000_000,
      rate: RATES[0]!,
      seconds: WARMUP_SECONDS,
      drainSeconds: DRAIN_SECONDS
    }, (WARMUP_SECONDS + DRAIN_SECONDS + 60) * 1000)
    log(
      `warm-up: ${WARMUP_SECONDS} s at ${RATES[0]} sends/s; API RSS after it: ${
        pods.map((p) => `${fmt(rssOf(p.pid) / 2 ** 20, 0)} MiB`).join(", ")
      }`
    )
    log("")
    log(
      "| offered/s | acked/s | failed | ack p50/p99 ms | deliver p50/p99 ms (other pod) | delivered | history lag p50/max ms | API µs/send | API CPU % | kafka CPU % | cassandra CPU % | redis CPU % | gen CPU % | other CPU % | API RSS MiB | /health/ready max ms |"
    )
    log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    const genPid = generator.pid!
    // printed under the table: p99 send→deliver per second of each step, by send time
    const perSecond: Array<string> = []
    for (const [step, rate] of RATES.entries()) {
      const before = {
        at: performance.now(),
        pods: pods.map((p) => cpuMicros(p.pid)),
        kafka: jvms.kafka === undefined ? Number.NaN : cpuMicros(jvms.kafka),
        cassandra: jvms.cassandra === undefined ? Number.NaN : cpuMicros(jvms.cassandra),
        redis: jvms.redis === undefined ? Number.NaN : cpuMicros(jvms.redis),
        gen: cpuMicros(genPid),
        machine: machineBusyMicros()
      }
      // /health/ready of every pod, twice a second while the step runs: the slowest answer
      let probing = true
      const healthTimes: Array<number> = []
      const probes = pods.map(async (pod) => {
        while (probing) {
          const startedAt = performance.now()
          await fetch(`http://127.0.0.1:${pod.url}/health/ready`, { signal: AbortSignal.timeout(5_000) })
            .then((r) => r.arrayBuffer(), () => undefined)
          healthTimes.push(performance.now() - startedAt)
          await new Promise((resolve) => setTimeout(resolve, 500))
        }
      })
      const result = (await ask(
        generator,
        { type: "step", step, rate, seconds: SECONDS, drainSeconds: DRAIN_SECONDS },
        (SECONDS + DRAIN_SECONDS + 60) * 1000
      ).finally(() => {
        probing = false
      })) as StepResult
      await Promise.all(probes)
      const healthMax = healthTimes.reduce((m, t) => Math.max(m, t), 0)
      const wallMicros = (performance.now() - before.at) * 1000
      const podCpu = pods.reduce((sum, p, i) => sum + cpuMicros(p.pid) - before.pods[i]!, 0)
      const kafkaCpu = jvms.kafka === undefined ? Number.NaN : cpuMicros(jvms.kafka) - before.kafka
      const cassandraCpu = jvms.cassandra === undefined ? Number.NaN : cpuMicros(jvms.cassandra) - before.cassandra
      const redisCpu = jvms.redis === undefined ? Number.NaN : cpuMicros(jvms.redis) - before.redis
      const genCpu = cpuMicros(genPid) - before.gen
      // everything else on the machine (other work, the kernel's share of loopback networking)
      const otherCpu = machineBusyMicros() - before.machine - podCpu - (kafkaCpu || 0) - (cassandraCpu || 0) -
        (redisCpu || 0) - genCpu
      const pct = (micros: number) => fmt((micros / wallMicros) * 100, 0)
      const ackedPerSecond = result.acked / Math.max(result.sendSeconds, result.ackSeconds)
      const rss = pods.map((p) => fmt(rssOf(p.pid) / 2 ** 20, 0)).join(" / ")
      const deliveredPct = result.expectedDeliveries === 0 ? 100 : (result.delivered / result.expectedDeliveries) * 100
      log(
        `| ${fmt(rate, 0)} | ${fmt(ackedPerSecond, 0)} | ${result.failed + result.skipped} | ${fmt(result.ackP50)} / ${
          fmt(result.ackP99)
        } | ` +
          `${fmt(result.deliverP50)} / ${fmt(result.deliverP99)} | ${fmt(deliveredPct, 2)} % | ` +
          `${fmt(result.historyLagP50, 0)} / ${fmt(result.historyLagMax, 0)}${
            result.historyMissing > 0 ? ` (${result.historyMissing} missing)` : ""
          } | ` +
          `${fmt(podCpu / Math.max(1, result.acked), 0)} | ${pct(podCpu)} | ` +
          `${pct(kafkaCpu)} | ${pct(cassandraCpu)} | ${pct(redisCpu)} | ${pct(genCpu)} | ${
            pct(Math.max(0, otherCpu))
          } | ` +
          `${rss} | ${fmt(healthMax, 0)} |`
      )
      perSecond.push(`${fmt(rate, 0)}/s: ${result.deliverP99PerSecond.map((p99) => fmt(p99, 0)).join(" ")}`)
      if (result.firstFailure !== undefined) {
        log(
          `  (step ${step}: ${result.failed} failed, ${result.skipped} not sent (over 2 s outstanding); first: ${result.firstFailure})`
        )
      }
      if (result.deliverP99 > P99_MS || result.acked === 0 || deliveredPct < 99.9) {
        log("")
        log(
          `stopping: at ${rate} sends/s offered, p99 send→deliver ${fmt(result.deliverP99)} ms (target ${P99_MS} ms), ${
            fmt(deliveredPct, 2)
          } % delivered`
        )
        break
      }
    }
    log("")
    log("p99 send→deliver per second of each step (by send time, ms):")
    for (const line of perSecond) log(`  ${line}`)
  } finally {
    if (generator !== undefined && generator.exitCode === null) {
      generator.send({ type: "stop" } satisfies Command)
      await new Promise((resolve) => setTimeout(resolve, 200))
      generator.kill("SIGKILL")
    }
    await Promise.all(pods.map((p) => p.stop()))
    for (const dir of directories) rmSync(dir, { recursive: true, force: true })
    if (process.env["W3_KEEP_SERVICES"] !== "1") {
      for (const service of startedHere) sh([`scripts/services/${service}.sh`, "stop"])
    }
  }
}

await main()
process.exit(0)
