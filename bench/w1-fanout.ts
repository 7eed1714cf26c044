// W1: one scope, N subscribers over /rpc (one WebSocket each) and one sender (the @chatify/sdk client). Prints delivered
// messages/s, p50/p99 send→receive latency and server RSS per connection, for Chatify on the
// embedded default and, in the same run, for a bare `ws` relay (the floor), with their ratios.
//
//   pnpm bench:w1                      (W1_SUBSCRIBERS=1000 W1_MESSAGES=200 W1_IN_FLIGHT=4)
//
// Loopback only; every loop is bounded in count and time.
import { Effect } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { WebSocket } from "ws"
import { makeChatClient } from "@chatify/sdk/node"
import { fmt, percentile, rssOf, startProcess } from "./support.js"

const SUBSCRIBERS = Number(process.env["W1_SUBSCRIBERS"] ?? 1000)
const MESSAGES = Number(process.env["W1_MESSAGES"] ?? 200)
const IN_FLIGHT = Number(process.env["W1_IN_FLIGHT"] ?? 4)
const PHASE_TIMEOUT_MS = 120_000

interface Result {
  readonly name: string
  readonly deliveredPerSecond: number
  readonly p50: number
  readonly p99: number
  readonly rssPerConnection: number
  readonly delivered: number
}

class Recorder {
  readonly latencies = new Float64Array(SUBSCRIBERS * MESSAGES)
  count = 0
  lastAt = 0
  private readonly done: Promise<void>
  private resolve: () => void = () => {}
  constructor() {
    this.done = new Promise((resolve) => (this.resolve = resolve))
  }
  record(sentAt: number) {
    const now = performance.now()
    if (this.count < this.latencies.length) this.latencies[this.count] = now - sentAt
    this.count++
    this.lastAt = now
    if (this.count === this.latencies.length) this.resolve()
  }
  finished(timeoutMs: number) {
    return Promise.race([this.done, new Promise<void>((resolve) => setTimeout(resolve, timeoutMs))])
  }
  summary(name: string, startedAt: number, rssPerConnection: number): Result {
    const sorted = this.latencies.slice(0, Math.min(this.count, this.latencies.length)).sort()
    return {
      name,
      deliveredPerSecond: this.count / ((this.lastAt - startedAt) / 1000),
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      rssPerConnection,
      delivered: this.count
    }
  }
}

/** Sends MESSAGES texts carrying their send time, keeping IN_FLIGHT requests outstanding. */
const pump = async (send: (text: string) => Promise<void>) => {
  let next = 0
  const worker = async () => {
    while (next < MESSAGES) {
      next++
      await send(String(performance.now()))
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 1_000))

const chatify = async (): Promise<Result> => {
  const dataDirectory = mkdtempSync(join(tmpdir(), "chatify-bench-"))
  const server = await startProcess(
    [...(process.env["W1_PROFILE"] ? ["--cpu-prof", "--cpu-prof-dir=/tmp/prof"] : []), "packages/server/dist/main.js"],
    {
      HOST: "127.0.0.1",
      PORT: "0",
      POD_NAME: "bench",
      CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory,
      CHATIFY__RATELIMIT__LIMIT: String(MESSAGES * 10),
      // every subscriber of the bench is one anonymous caller (127.0.0.1): its subscriptions are reads
      CHATIFY__RATELIMIT__READLIMIT: "1000000000",
      // no load balancer to wait for on stop
      CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0",
      // every client of the bench connects from 127.0.0.1
      CHATIFY__LIMITS__MAXCONNECTIONSPERADDRESS: "1000000",
      CHATIFY__LIMITS__MAXCONNECTSPERSECONDPERADDRESS: "1000000"
    },
    /Listening on http:\/\/[^:]+:(\d+)/u
  )
  const url = `ws://127.0.0.1:${server.url}/rpc`
  const recorder = new Recorder()
  const sockets: Array<WebSocket> = []

  const program = Effect.gen(function*() {
    yield* Effect.promise(settle)
    const rssBefore = rssOf(server.pid)
    for (let i = 0; i < SUBSCRIBERS; i += 50) {
      const batch = Array.from({ length: Math.min(50, SUBSCRIBERS - i) }, () => rpcSubscriber(url, recorder))
      sockets.push(...(yield* Effect.promise(() => Promise.all(batch))))
    }
    yield* Effect.promise(settle)
    const rssPerConnection = (rssOf(server.pid) - rssBefore) / SUBSCRIBERS
    const sender = yield* makeChatClient({ url })
    const startedAt = performance.now()
    yield* Effect.promise(() =>
      pump((text) => Effect.runPromise(Effect.asVoid(sender.send({ scopeType: 0, scopeId: "w1", text }))))
    )
    yield* Effect.promise(() => recorder.finished(PHASE_TIMEOUT_MS))
    return recorder.summary("chatify (embedded, /rpc)", startedAt, rssPerConnection)
  })
  try {
    return await Effect.runPromise(Effect.scoped(program).pipe(Effect.timeout(PHASE_TIMEOUT_MS * 2)))
  } finally {
    for (const socket of sockets) socket.terminate()
    await server.stop()
    rmSync(dataDirectory, { recursive: true, force: true })
  }
}

/**
 * A subscriber that speaks the RPC wire protocol (ndjson Request / Chunk / Ack) directly, so the
 * client side costs the same as the floor's and the figures measure the servers, not the clients.
 */
const rpcSubscriber = (url: string, recorder: Recorder) =>
  new Promise<WebSocket>((resolve, reject) => {
    const socket = new WebSocket(url)
    socket.on("open", () =>
      socket.send(
        JSON.stringify({
          _tag: "Request",
          id: "1",
          tag: "Subscribe",
          payload: { scopeType: 0, scopeId: "w1" },
          headers: []
        }) +
          "\n"
      ))
    socket.on("message", (data) => {
      // ws hands a message over as one Buffer (binaryType nodebuffer)
      for (const line of (data as Buffer).toString().split("\n")) {
        if (line.length === 0) continue
        const message = JSON.parse(line) as {
          _tag: string
          values?: ReadonlyArray<{ _tag?: string; chatEvent?: { text: string } }>
        }
        if (message._tag !== "Chunk" || message.values === undefined) continue
        for (const value of message.values) {
          if (value._tag === "Subscribed") resolve(socket)
          else if (value.chatEvent !== undefined) recorder.record(Number(value.chatEvent.text))
        }
        socket.send(`{"_tag":"Ack","requestId":"1"}\n`)
      }
    })
    socket.on("error", reject)
  })

const openSocket = (url: string, onMessage: (text: string) => void) =>
  new Promise<WebSocket>((resolve, reject) => {
    const socket = new WebSocket(url)
    socket.on("message", (data) => {
      const text = (data as Buffer).toString() // one Buffer per message (binaryType nodebuffer)
      if (text === "subscribed") resolve(socket)
      else onMessage(text)
    })
    socket.on("error", reject)
  })

const baseline = async (): Promise<Result> => {
  const server = await startProcess(
    ["--import", "tsx", "bench/baseline-ws-server.ts"],
    {},
    /Listening on (ws:\/\/\S+)/u
  )
  const recorder = new Recorder()
  const sockets: Array<WebSocket> = []
  try {
    await settle()
    const rssBefore = rssOf(server.pid)
    for (let i = 0; i < SUBSCRIBERS; i += 50) {
      const batch = Array.from(
        { length: Math.min(50, SUBSCRIBERS - i) },
        () => openSocket(`${server.url}/subscribe`, (text) => recorder.record(Number(text)))
      )
      sockets.push(...(await Promise.all(batch)))
    }
    await settle()
    const rssPerConnection = (rssOf(server.pid) - rssBefore) / SUBSCRIBERS
    const sender = new WebSocket(`${server.url}/send`)
    await new Promise((resolve) => sender.once("open", resolve))
    const acks: Array<() => void> = []
    sender.on("message", () => acks.shift()?.())
    const startedAt = performance.now()
    await pump((text) =>
      new Promise<void>((resolve) => {
        acks.push(resolve)
        sender.send(text)
      })
    )
    await recorder.finished(PHASE_TIMEOUT_MS)
    sender.close()
    return recorder.summary("bare ws relay (floor)", startedAt, rssPerConnection)
  } finally {
    for (const socket of sockets) socket.terminate()
    await server.stop()
  }
}

const main = async () => {
  console.log(`W1: 1 scope, ${SUBSCRIBERS} subscribers, ${MESSAGES} messages, ${IN_FLIGHT} sends in flight, loopback`)
  const results = [await chatify(), await baseline()]
  const [ours, floor] = results as [Result, Result]
  console.log("")
  console.log("| target | delivered msg/s | p50 ms | p99 ms | server RSS / connection | delivered |")
  console.log("|---|---|---|---|---|---|")
  for (const r of results) {
    console.log(
      `| ${r.name} | ${fmt(r.deliveredPerSecond, 0)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${
        fmt(r.rssPerConnection / 1024)
      } KiB | ${r.delivered}/${SUBSCRIBERS * MESSAGES} |`
    )
  }
  console.log("")
  console.log(
    `ratios chatify/floor: throughput ${fmt(ours.deliveredPerSecond / floor.deliveredPerSecond, 2)}x, ` +
      `p50 ${fmt(ours.p50 / floor.p50, 2)}x, p99 ${fmt(ours.p99 / floor.p99, 2)}x, ` +
      `RSS/connection ${fmt(ours.rssPerConnection / floor.rssPerConnection, 2)}x`
  )
}

await main()
process.exit(0)
