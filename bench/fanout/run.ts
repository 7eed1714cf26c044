// `pnpm bench:fanout`: Socket.IO 4.8 and Chatify (/hubs/chat and /rpc) side by side under the same
// fan-out workloads, driven by the Go load generator in ./loadgen. Each server runs alone, pinned to
// core 0; the generator is pinned to core 1. See README.md next to this file.
//
// Loopback only; every load loop is bounded in count and time (the generator's plan, and a
// timeout on each generator run). Exits non-zero only when the harness itself fails.
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync
} from "node:fs"
import { availableParallelism, homedir, loadavg, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Either } from "effect"
import ts from "typescript"
import { QUICK, QUIET_WAIT_SECONDS, runTimeoutMs, type Plan, type TargetName, TARGETS, WORKLOADS } from "./config.js"
import { BUSY_PCT, printWorkload, TARGET_LABELS } from "./report.js"
import {
  decodeGeneratorLine,
  type IdleLine,
  type RestReading,
  type RunResult,
  type SetupLine,
  type StepLine
} from "./results.js"

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, "../..")
const LOADGEN_DIR = join(HERE, "loadgen")
const CACHE = join(process.env["CHATIFY_CACHE"] ?? join(homedir(), ".cache", "chatify"), "bench")
const LOADGEN_BIN = join(CACHE, "loadgen")
const CHATIFY_MAIN = join(ROOT, "packages/server/dist/main.js")
// inside bench/node_modules so that `socket.io` resolves from the transpiled file (and git ignores it)
/** Extra node flags for every server, e.g. `--cpu-prof --cpu-prof-dir=/tmp/p` (NODE_OPTIONS refuses --cpu-prof). */
const SERVER_NODE_ARGS = (process.env["FANOUT_SERVER_NODE_ARGS"] ?? "").split(" ").filter((arg) => arg !== "")
const SOCKETIO_JS = join(ROOT, "bench/node_modules/.cache/chatify-bench/socketio-server.mjs")
/** Where each server's output goes as well, one file per server run (e.g. with `--trace-gc`). */
const SERVER_OUTPUT_DIR = process.env["FANOUT_SERVER_OUTPUT_DIR"]

const log = (message: string) => process.stderr.write(`[bench:fanout] ${message}\n`)

class HarnessError extends Error {}

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms))

const run = (command: string, args: ReadonlyArray<string>, cwd: string) =>
  new Promise<{ code: number | null; output: string }>((done) => {
    const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.on("error", (error) => done({ code: -1, output: `${output}${String(error)}` }))
    child.on("close", (code) => done({ code, output }))
  })

const commandOutput = (command: string, args: ReadonlyArray<string>): string | undefined => {
  try {
    return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Preparation

/** Builds the generator into the cache when its sources (or the Go toolchain) changed. */
const ensureLoadgen = async () => {
  const goVersion = commandOutput("go", ["version"])
  if (goVersion === undefined) throw new HarnessError("`go` is not on PATH: the load generator is written in Go")
  const hash = createHash("sha256").update(goVersion)
  for (
    const file of readdirSync(LOADGEN_DIR).filter((f) => f.endsWith(".go") || f === "go.mod" || f === "go.sum").sort()
  ) {
    hash.update(file).update(readFileSync(join(LOADGEN_DIR, file)))
  }
  const digest = hash.digest("hex")
  const stamp = `${LOADGEN_BIN}.sha256`
  if (existsSync(LOADGEN_BIN) && existsSync(stamp) && readFileSync(stamp, "utf8") === digest) return
  log(`building the load generator (${goVersion}) into ${LOADGEN_BIN}`)
  mkdirSync(CACHE, { recursive: true })
  const built = await run("go", ["build", "-mod=readonly", "-trimpath", "-o", LOADGEN_BIN, "."], LOADGEN_DIR)
  if (built.code !== 0) throw new HarnessError(`go build failed:\n${built.output}`)
  writeFileSync(stamp, digest)
}

/** Builds the workspace when Chatify's dist is missing; the packages may be mid-edit, so retry. */
const ensureChatifyBuilt = async () => {
  if (!TARGETS.some((t) => t !== "socketio") || existsSync(CHATIFY_MAIN)) return
  for (let attempt = 1; attempt <= 3; attempt++) {
    log(`packages/server/dist is missing: pnpm run build (attempt ${attempt}/3)`)
    const built = await run("pnpm", ["run", "build"], ROOT)
    if (built.code === 0 && existsSync(CHATIFY_MAIN)) return
    log(`build failed:\n${built.output.split("\n").slice(-20).join("\n")}`)
    if (attempt < 3) await sleep(30_000)
  }
  throw new HarnessError("could not build Chatify (pnpm run build)")
}

/** Runs the Socket.IO server as plain JS, as Chatify's dist runs: no loader thread in its RSS or CPU. */
const prepareSocketIoServer = () => {
  const source = readFileSync(join(HERE, "socketio-server.ts"), "utf8")
  const { outputText } = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 }
  })
  mkdirSync(dirname(SOCKETIO_JS), { recursive: true })
  writeFileSync(SOCKETIO_JS, outputText)
}

interface Pinning {
  readonly server: ReadonlyArray<string>
  readonly generator: ReadonlyArray<string>
  readonly description: string
}

const pinningOf = (cpus: number): Pinning => {
  const unpinned = (why: string): Pinning => {
    log(`WARNING: ${why}: server and generator run unpinned and share the CPU; read the ratios, not the figures`)
    return { server: [], generator: [], description: `unpinned (${why})` }
  }
  if (cpus < 2) return unpinned(`nproc is ${cpus}`)
  if (commandOutput("taskset", ["-c", "0,1", "true"]) === undefined) return unpinned("taskset -c 0,1 is not available")
  return {
    server: ["taskset", "-c", "0"],
    generator: ["taskset", "-c", "1"],
    description: "server on core 0, generator on core 1"
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

interface Server {
  readonly pid: number
  readonly port: number
  readonly exitCode: () => number | null
  /** Warnings and errors the server logged since the last call, and the first of them. */
  readonly takeLogSummary: () => { count: number; first: string | undefined }
  readonly tail: () => string
  readonly stop: () => Promise<void>
}

const spawnPinned = (
  prefix: ReadonlyArray<string>,
  command: string,
  args: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv
): ChildProcess => {
  const [head, ...rest] = [...prefix, command, ...args]
  return spawn(head!, rest, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] })
}

const LISTENING = /Listening on (?:http|ws):\/\/[^\s:"]+:(\d+)/u
const PROBLEM = /"level":"(?:WARN|ERROR|FATAL)"/u

/** Starts a server and resolves once it printed its port; its output is drained (a full pipe would block it). */
const startServer = (prefix: ReadonlyArray<string>, args: ReadonlyArray<string>, env: Record<string, string>) =>
  new Promise<Server>((resolveServer, reject) => {
    const child = spawnPinned(prefix, process.execPath, [...SERVER_NODE_ARGS, ...args], { ...process.env, ...env })
    const copy = SERVER_OUTPUT_DIR === undefined
      ? undefined
      : createWriteStream(join(SERVER_OUTPUT_DIR, `server-${Date.now()}-${child.pid}.log`))
    const lines: Array<string> = []
    let partial = ""
    let port: number | undefined
    let problems = 0
    let firstProblem: string | undefined
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new HarnessError(`the server did not print its address within 60 s:\n${lines.join("\n")}`))
    }, 60_000)
    const onData = (chunk: Buffer) => {
      copy?.write(chunk)
      const text = partial + chunk.toString()
      const split = text.split("\n")
      partial = split.pop() ?? ""
      for (const line of split) {
        lines.push(line)
        if (lines.length > 40) lines.shift()
        if (port !== undefined && PROBLEM.test(line)) {
          problems++
          firstProblem ??= line
        }
        const found = port === undefined ? LISTENING.exec(line)?.[1] : undefined
        if (found !== undefined) {
          port = Number(found)
          clearTimeout(timer)
          resolveServer(server(port))
        }
      }
    }
    child.stdout?.on("data", onData)
    child.stderr?.on("data", onData)
    child.once("exit", (code) => {
      copy?.end()
      clearTimeout(timer)
      if (port === undefined) {
        reject(new HarnessError(`the server exited with ${code} before listening:\n${lines.join("\n")}`))
      }
    })
    const server = (listening: number): Server => ({
      pid: child.pid!,
      port: listening,
      exitCode: () => child.exitCode ?? (child.signalCode === null ? null : -1),
      takeLogSummary: () => {
        const summary = { count: problems, first: firstProblem }
        problems = 0
        firstProblem = undefined
        return summary
      },
      tail: () => lines.join("\n"),
      stop: () =>
        new Promise<void>((stopped) => {
          if (child.exitCode !== null || child.signalCode !== null) return stopped()
          const kill = setTimeout(() => child.kill("SIGKILL"), 20_000)
          child.once("exit", () => {
            clearTimeout(kill)
            stopped()
          })
          child.kill("SIGTERM")
        })
    })
  })

/** When the server's code was last compiled: the newest file under the workspace packages' dist/ (tsc leaves unchanged files alone). */
const newestBuild = (): Date => {
  let newest = 0
  for (const pkg of ["domain", "core", "adapters", "server"]) {
    const dist = join(ROOT, "packages", pkg, "dist")
    if (!existsSync(dist)) continue
    for (const entry of readdirSync(dist, { recursive: true, withFileTypes: true })) {
      if (entry.isFile() && entry.name.endsWith(".js")) {
        newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs)
      }
    }
  }
  return new Date(newest)
}

const startTarget = async (target: TargetName, pinning: Pinning): Promise<{ server: Server; cleanup: () => void }> => {
  if (target === "socketio") {
    const server = await startServer(pinning.server, [SOCKETIO_JS], { HOST: "127.0.0.1", PORT: "0" })
    return { server, cleanup: () => {} }
  }
  const dataDirectory = mkdtempSync(join(tmpdir(), "chatify-fanout-"))
  try {
    const server = await startServer(pinning.server, [CHATIFY_MAIN], {
      HOST: "127.0.0.1",
      PORT: "0",
      POD_NAME: "bench",
      CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory,
      CHATIFY__RATELIMIT__LIMIT: "100000000",
      // every subscriber of the bench is one anonymous caller (127.0.0.1): its subscriptions are reads
      CHATIFY__RATELIMIT__READLIMIT: "1000000000",
      // no load balancer to wait for on stop
      CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0",
      // every client of the bench connects from 127.0.0.1
      CHATIFY__LIMITS__MAXCONNECTIONSPERADDRESS: "1000000",
      CHATIFY__LIMITS__MAXCONNECTSPERSECONDPERADDRESS: "1000000"
    })
    return { server, cleanup: () => rmSync(dataDirectory, { recursive: true, force: true }) }
  } catch (error) {
    rmSync(dataDirectory, { recursive: true, force: true })
    throw error
  }
}

/** Runs the generator against one server; never throws for what the target does, only reports. */
const runGenerator = (target: TargetName, server: Server, plan: Plan, pinning: Pinning) =>
  new Promise<Omit<RunResult, "serverLog">>((resolveRun) => {
    const args = [
      "-target",
      target,
      "-url",
      `ws://127.0.0.1:${server.port}`,
      "-server-pid",
      String(server.pid),
      "-plan",
      JSON.stringify(plan)
    ]
    const profileDirectory = process.env["FANOUT_GEN_CPUPROFILE"]
    if (profileDirectory !== undefined && profileDirectory !== "") {
      mkdirSync(profileDirectory, { recursive: true })
      args.push("-cpuprofile", resolve(profileDirectory, `${plan.room}-${target}.pprof`))
    }
    const child = spawnPinned(pinning.generator, LOADGEN_BIN, args, process.env)
    let setup: SetupLine | undefined
    let idle: IdleLine | undefined
    const steps: Array<StepLine> = []
    let done = false
    let stdoutPartial = ""
    let stderrTail = ""
    let decodeError: string | undefined
    const timeoutMs = runTimeoutMs(plan)
    const timer = setTimeout(() => {
      decodeError ??= `the generator did not finish within ${Math.round(timeoutMs / 1000)} s`
      child.kill("SIGKILL")
    }, timeoutMs)
    child.stdout?.on("data", (chunk: Buffer) => {
      const split = (stdoutPartial + chunk.toString()).split("\n")
      stdoutPartial = split.pop() ?? ""
      for (const line of split) {
        if (line.trim() === "") continue
        const decoded = decodeGeneratorLine(line)
        if (Either.isLeft(decoded)) {
          decodeError ??= `unexpected generator output: ${line.slice(0, 300)}`
          continue
        }
        const value = decoded.right
        if (value.type === "setup") setup = value
        else if (value.type === "step") steps.push(value)
        else if (value.type === "idle") idle = value
        else done = true
      }
    })
    child.stderr?.on("data", (chunk: Buffer) => {
      process.stderr.write(chunk)
      stderrTail = (stderrTail + chunk.toString()).slice(-2000)
    })
    child.once("error", (error) => {
      decodeError ??= `could not start the generator: ${String(error)}`
    })
    child.once("close", (code) => {
      clearTimeout(timer)
      const serverExit = server.exitCode()
      const error = decodeError ??
        (serverExit !== null ? `the server exited (${serverExit}) during the run:\n${server.tail()}` : undefined) ??
        (code !== 0 || !done
          ? `the generator exited with ${code}: ${stderrTail.trim().split("\n").at(-1) ?? ""}`
          : undefined)
      resolveRun({ setup, steps, idle, error })
    })
  })

/** VmRSS of a process in bytes, undefined once it is gone. */
const rssOf = (pid: number): number | undefined => {
  try {
    const kib = /^VmRSS:\s+(\d+) kB$/mu.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]
    return kib === undefined ? undefined : Number(kib) * 1024
  } catch {
    return undefined
  }
}

/** The rest workload: the server's RSS 1 s after it listens, then each second for `seconds`, no client connected. */
const measureRest = async (server: Server, seconds: number): Promise<Omit<RunResult, "serverLog">> => {
  const failed = (error: string) => ({ setup: undefined, steps: [], idle: undefined, error })
  await sleep(1_000)
  const rssListening = rssOf(server.pid)
  if (rssListening === undefined) return failed(`the server exited:\n${server.tail()}`)
  let lowestRss = rssListening
  let rssAtRest = rssListening
  for (let second = 1; second < seconds; second++) {
    await sleep(1_000)
    const rss = rssOf(server.pid)
    if (rss === undefined) return failed(`the server exited:\n${server.tail()}`)
    rssAtRest = rss
    lowestRss = Math.min(lowestRss, rss)
  }
  const rest: RestReading = { rssListening, rssAtRest, lowestRss }
  return { setup: undefined, steps: [], idle: undefined, rest, error: undefined }
}

// ---------------------------------------------------------------------------------------------
// Main

/** CPU time all processes used, in seconds (/proc/stat; idle and iowait excluded). */
const busySeconds = (): number => {
  const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/u).slice(1, 9).map(Number)
  return fields.reduce((sum, value, i) => (i === 3 || i === 4 ? sum : sum + value), 0) / 100
}

/** How busy the machine is before we start, in % of one core: the other engineer's tests, a build… */
const backgroundLoad = async (): Promise<number> => {
  const before = busySeconds()
  await sleep(1_000)
  return (busySeconds() - before) * 100
}

/** Waits (at most FANOUT_WAIT_QUIET_SECONDS) until other processes leave the CPU alone. */
const waitForQuiet = async () => {
  if (QUIET_WAIT_SECONDS <= 0) return
  const until = Date.now() + QUIET_WAIT_SECONDS * 1000
  let load = await backgroundLoad()
  if (load < BUSY_PCT) return
  log(`the machine is busy (${load.toFixed(0)}% of one core): waiting up to ${QUIET_WAIT_SECONDS} s for it to go quiet`)
  while (load >= BUSY_PCT && Date.now() < until) load = await backgroundLoad()
  log(load < BUSY_PCT ? "quiet now" : `still busy (${load.toFixed(0)}%): going on`)
}

const cpuModel = () => /^model name\s*:\s*(.+)$/mu.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown"

const printHeader = (cpus: number, pinning: Pinning, background: number) => {
  const socketIoVersion =
    (JSON.parse(readFileSync(join(ROOT, "bench/node_modules/socket.io/package.json"), "utf8")) as { version: string })
      .version
  const commit = commandOutput("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"]) ?? "unknown"
  const dirty = (commandOutput("git", ["-C", ROOT, "status", "--porcelain", "--", "packages"]) ?? "") !== ""
  const built = existsSync(CHATIFY_MAIN) ? newestBuild().toISOString() : "not built"
  console.log(`# bench:fanout${QUICK ? " (QUICK=1: smoke sizes, not figures to compare)" : ""}`)
  console.log(`date:     ${new Date().toISOString()}`)
  console.log(`machine:  nproc ${cpus}, ${cpuModel()}, ${pinning.description}`)
  console.log(
    `load:     ${background.toFixed(0)}% of one core busy before the start (load average ${
      loadavg().map((l) => l.toFixed(2)).join(" ")
    })`
  )
  console.log(
    `software: node ${process.version}, socket.io ${socketIoVersion}, ${commandOutput("go", ["version"]) ?? "go ?"}`
  )
  console.log(
    `chatify:  ${commit}${dirty ? " + uncommitted changes under packages/" : ""}, dist built ${built}, embedded default`
  )
  console.log(`targets:  ${TARGETS.map((t) => TARGET_LABELS[t]).join(", ")}`)
}

const main = async () => {
  const cpus = Number(commandOutput("nproc", []) ?? availableParallelism())
  const pinning = pinningOf(cpus)
  await ensureLoadgen()
  await ensureChatifyBuilt()
  if (TARGETS.includes("socketio")) prepareSocketIoServer()
  const background = await backgroundLoad()
  if (background >= BUSY_PCT) {
    log(`WARNING: the machine is busy (${background.toFixed(0)}% of one core) before the start: figures will be noisy`)
  }
  printHeader(cpus, pinning, background)

  let failures = 0
  for (const workload of WORKLOADS) {
    const results = new Map<TargetName, RunResult>()
    for (const target of TARGETS) {
      await waitForQuiet()
      log(`${workload.name} against ${TARGET_LABELS[target]}`)
      const { cleanup, server } = await startTarget(target, pinning)
      try {
        server.takeLogSummary()
        const result = workload.plan.mode === "rest"
          ? await measureRest(server, workload.plan.stepSeconds)
          : await runGenerator(target, server, workload.plan, pinning)
        const serverLog = server.takeLogSummary()
        if (result.error !== undefined) {
          failures++
          log(`${workload.name} against ${TARGET_LABELS[target]} failed: ${result.error}`)
        }
        results.set(target, { ...result, serverLog })
      } finally {
        await server.stop()
        cleanup()
      }
      await sleep(1_000)
    }
    printWorkload(workload, results)
  }
  console.log("")
  if (failures > 0) {
    console.log(`${failures} run(s) could not finish: see FAILED above`)
    process.exitCode = 1
  }
}

try {
  await main()
} catch (error) {
  console.error(
    `bench:fanout: ${
      error instanceof HarnessError ? error.message : error instanceof Error ? error.stack : String(error)
    }`
  )
  process.exitCode = 1
}
