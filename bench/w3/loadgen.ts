// W3 load generator (a child process of run.ts, driven over IPC): subscriber and publisher
// connections over /rpc spread over the pods, speaking @effect/rpc's ndjson wire protocol directly
// and cheaply (no JSON.parse per delivered event: a marker in each text carries the step, the
// publisher's pod and the send time). Every loop is bounded in count and time.
import { WebSocket } from "ws"

export interface InitCommand {
  readonly type: "init"
  readonly pods: ReadonlyArray<string>
  readonly runId: string
  readonly scopes: number
  readonly subscribersPerScope: number
  readonly subscriberConnections: number
  readonly publishers: number
}
export interface StepCommand {
  readonly type: "step"
  readonly step: number
  readonly rate: number
  readonly seconds: number
  /** How long after the last send deliveries and acks may still arrive. */
  readonly drainSeconds: number
}
export type Command = InitCommand | StepCommand | { readonly type: "stop" }

export interface StepResult {
  readonly type: "result"
  readonly step: number
  readonly offered: number
  readonly sent: number
  readonly skipped: number
  readonly acked: number
  readonly failed: number
  readonly firstFailure: string | undefined
  readonly sendSeconds: number
  readonly ackSeconds: number
  readonly ackP50: number
  readonly ackP99: number
  readonly expectedDeliveries: number
  readonly delivered: number
  readonly otherPodDelivered: number
  readonly deliverP50: number
  readonly deliverP99: number
  readonly deliverMax: number
  /** p99 send→deliver (other pod) of the sends made in each second of the step: a slow second shows. */
  readonly deliverP99PerSecond: ReadonlyArray<number>
  readonly historySamples: number
  readonly historyMissing: number
  readonly historyLagP50: number
  readonly historyLagMax: number
}

const percentile = (values: Array<number>, p: number): number => {
  if (values.length === 0) return Number.NaN
  const sorted = Float64Array.from(values).sort()
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const open = (url: string) =>
  new Promise<WebSocket>((resolve, reject) => {
    const socket = new WebSocket(url, { perMessageDeflate: false })
    const timer = setTimeout(() => reject(new Error(`no connection to ${url} within 10 s`)), 10_000)
    socket.once("open", () => {
      clearTimeout(timer)
      resolve(socket)
    })
    socket.once("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })

const requestIdOf = (line: string): string | undefined => {
  const at = line.indexOf(`"requestId":"`)
  if (at < 0) return undefined
  const from = at + 13
  return line.slice(from, line.indexOf(`"`, from))
}

const MARKER = "w3~"

/** Per step counters shared by every connection. */
class Recorder {
  step = -1
  delivered = 0
  otherPodDelivered = 0
  deliverLatencies: Array<number> = []
  /** The send time of each timed delivery, by index with deliverLatencies. */
  deliverSentAt: Array<number> = []
  reset(step: number) {
    this.step = step
    this.delivered = 0
    this.otherPodDelivered = 0
    this.deliverLatencies = []
    this.deliverSentAt = []
  }
}

const recorder = new Recorder()

/** The timed deliveries' latencies by the second of the step their message was sent in (the last takes the rest). */
const bySendSecond = (from: Recorder, startedAt: number, seconds: number): Array<Array<number>> => {
  const buckets = Array.from({ length: Math.max(1, Math.floor(seconds)) }, () => new Array<number>())
  for (let i = 0; i < from.deliverLatencies.length; i++) {
    const second = Math.floor((from.deliverSentAt[i]! - startedAt) / 1000)
    buckets[Math.min(buckets.length - 1, Math.max(0, second))]!.push(from.deliverLatencies[i]!)
  }
  return buckets
}

/** A connection holding several Subscribe streams; acks every chunk, counts the markers in it. */
const subscriberConnection = async (url: string, pod: number, scopeIds: ReadonlyArray<string>) => {
  const socket = await open(url)
  let subscribed = 0
  let resolveAll: () => void = () => {}
  const allSubscribed = new Promise<void>((resolve) => (resolveAll = resolve))
  socket.on("message", (data: Buffer) => {
    const text = data.toString("utf8")
    const now = performance.now()
    let acks = ""
    for (const line of text.split("\n")) {
      if (line.length === 0) continue
      if (line.startsWith(`{"_tag":"Chunk"`)) {
        const id = requestIdOf(line)
        if (id !== undefined) acks += `{"_tag":"Ack","requestId":"${id}"}\n`
        if (subscribed < scopeIds.length && line.includes(`"_tag":"Subscribed"`)) {
          subscribed += line.split(`"_tag":"Subscribed"`).length - 1
          if (subscribed >= scopeIds.length) resolveAll()
        }
        let at = line.indexOf(MARKER)
        while (at >= 0) {
          // w3~<step>~<pod>~<sendTime>~
          const a = at + MARKER.length
          const b = line.indexOf("~", a)
          const c = line.indexOf("~", b + 1)
          const d = line.indexOf("~", c + 1)
          const step = Number(line.slice(a, b))
          if (step === recorder.step) {
            recorder.delivered++
            // with one pod there is no other pod: every delivery is timed
            if (Number(line.slice(b + 1, c)) !== pod || podCount === 1) {
              recorder.otherPodDelivered++
              const sentAt = Number(line.slice(c + 1, d))
              recorder.deliverLatencies.push(now - sentAt)
              recorder.deliverSentAt.push(sentAt)
            }
          }
          at = line.indexOf(MARKER, d)
        }
      } else if (line.startsWith(`{"_tag":"Exit"`) && !line.includes(`"Success"`)) {
        process.stderr.write(`subscription ended: ${line.slice(0, 300)}\n`)
      }
    }
    if (acks.length > 0) socket.send(acks)
  })
  scopeIds.forEach((scopeId, i) => {
    socket.send(
      JSON.stringify({
        _tag: "Request",
        id: String(i + 1),
        tag: "Subscribe",
        payload: { scopeType: 0, scopeId },
        headers: []
      }) +
        "\n"
    )
  })
  await Promise.race([
    allSubscribed,
    sleep(30_000).then(() => {
      throw new Error(`only ${subscribed}/${scopeIds.length} subscriptions confirmed on ${url} within 30 s`)
    })
  ])
  return socket
}

interface Pending {
  readonly sentAt: number
  readonly scopeId: string
}

/** One publisher: Send requests, each acknowledged by an Exit with the EnrichedChatEvent. */
class Publisher {
  nextId = 1
  readonly pending = new Map<string, Pending>()
  acked = 0
  failed = 0
  firstFailure: string | undefined
  lastAckAt = 0
  ackLatencies: Array<number> = []
  /** The next acknowledged send to sample for history lag, when wanted. */
  sampleNext: ((event: SampledEvent) => void) | undefined
  constructor(readonly socket: WebSocket, readonly pod: number) {
    socket.on("message", (data: Buffer) => {
      const now = performance.now()
      for (const line of data.toString("utf8").split("\n")) {
        if (!line.startsWith(`{"_tag":"Exit"`)) continue
        const id = requestIdOf(line)
        const pending = id === undefined ? undefined : this.pending.get(id)
        if (id === undefined || pending === undefined) continue
        this.pending.delete(id)
        if (line.includes(`"exit":{"_tag":"Success"`)) {
          this.acked++
          this.lastAckAt = now
          this.ackLatencies.push(now - pending.sentAt)
          if (this.sampleNext !== undefined) {
            const take = this.sampleNext
            this.sampleNext = undefined
            const { value } =
              (JSON.parse(line) as { exit: { value: { chatEvent: { messageId: string }; offset: number } } }).exit
            take({
              messageId: value.chatEvent.messageId,
              offset: value.offset,
              scopeId: pending.scopeId,
              sentAt: pending.sentAt,
              pod: this.pod
            })
          }
        } else {
          this.failed++
          this.firstFailure ??= line.slice(0, 400)
        }
      }
    })
  }
  send(scopeId: string, text: string) {
    const id = String(this.nextId++)
    this.pending.set(id, { sentAt: performance.now(), scopeId })
    this.socket.send(
      `{"_tag":"Request","id":"${id}","tag":"Send","payload":{"scopeType":0,"scopeId":"${scopeId}","text":"${text}"},"headers":[]}\n`
    )
  }
  reset() {
    this.acked = 0
    this.failed = 0
    this.firstFailure = undefined
    this.ackLatencies = []
  }
}

interface SampledEvent {
  readonly messageId: string
  readonly offset: number
  readonly scopeId: string
  readonly sentAt: number
  readonly pod: number
}

/** History RPCs on one connection per pod, to see when a sampled message becomes readable. */
class HistoryReader {
  nextId = 1
  readonly waiting = new Map<string, (line: string) => void>()
  constructor(readonly socket: WebSocket) {
    socket.on("message", (data: Buffer) => {
      for (const line of data.toString("utf8").split("\n")) {
        const id = line.startsWith(`{"_tag":"Exit"`) ? requestIdOf(line) : undefined
        const resolve = id === undefined ? undefined : this.waiting.get(id)
        if (id !== undefined && resolve !== undefined) {
          this.waiting.delete(id)
          resolve(line)
        }
      }
    })
  }
  /**
   * Whether the history holds the message: it is on the newest page, or that page holds only later
   * messages of its scope (same partition, higher offsets: the writer stores a partition in order).
   */
  contains(scopeId: string, messageId: string, offset: number): Promise<boolean> {
    const id = String(this.nextId++)
    return new Promise<boolean>((resolve) => {
      this.waiting.set(id, (line) => {
        if (line.includes(messageId)) return resolve(true)
        const offsets = Array.from(line.matchAll(/"offset":(\d+)/gu), (m) => Number(m[1]))
        resolve(offsets.length > 0 && Math.min(...offsets) > offset)
      })
      this.socket.send(
        JSON.stringify({
          _tag: "Request",
          id,
          tag: "History",
          payload: { scopeType: 0, scopeId, limit: 20 },
          headers: []
        }) +
          "\n"
      )
    })
  }
}

const publishers: Array<Publisher> = []
const readers: Array<HistoryReader> = []
const sockets: Array<WebSocket> = []
let scopeIds: Array<string> = []
let subscribersPerScope = 0
let podCount = 1

const init = async (command: InitCommand) => {
  scopeIds = Array.from({ length: command.scopes }, (_, i) => `w3-${command.runId}-${i}`)
  subscribersPerScope = command.subscribersPerScope
  podCount = command.pods.length
  const rpc = (pod: number) => `ws://${command.pods[pod % command.pods.length]}/rpc`
  // subscription r of scope s goes to connection (s * perScope + r) % connections, on pod connection % pods
  const perConnection: Array<Array<string>> = Array.from({ length: command.subscriberConnections }, () => [])
  scopeIds.forEach((scopeId, s) => {
    for (let r = 0; r < command.subscribersPerScope; r++) {
      perConnection[(s * command.subscribersPerScope + r) % command.subscriberConnections]!.push(scopeId)
    }
  })
  for (let from = 0; from < perConnection.length; from += 20) {
    const batch = perConnection.slice(from, from + 20).map((scopes, j) => {
      const c = from + j
      return subscriberConnection(rpc(c), c % command.pods.length, scopes)
    })
    sockets.push(...(await Promise.all(batch)))
  }
  for (let p = 0; p < command.publishers; p++) {
    const socket = await open(rpc(p))
    sockets.push(socket)
    publishers.push(new Publisher(socket, p % command.pods.length))
  }
  for (let pod = 0; pod < command.pods.length; pod++) {
    const socket = await open(rpc(pod))
    sockets.push(socket)
    readers.push(new HistoryReader(socket))
  }
}

const MAX_OUTSTANDING_SECONDS = 2

const runStep = async (command: StepCommand): Promise<StepResult> => {
  recorder.reset(command.step)
  for (const p of publishers) p.reset()
  const historyLags: Array<number> = []
  let historyMissing = 0
  const historyChecks: Array<Promise<void>> = []
  const sampleHistory = (event: SampledEvent) => {
    // read from the other pod when there is one
    const reader = readers[(event.pod + 1) % readers.length]!
    historyChecks.push((async () => {
      const deadline = performance.now() + 15_000
      while (performance.now() < deadline) {
        if (await reader.contains(event.scopeId, event.messageId, event.offset)) {
          historyLags.push(performance.now() - event.sentAt)
          return
        }
        await sleep(100)
      }
      historyMissing++
    })())
  }

  const startedAt = performance.now()
  const endAt = startedAt + command.seconds * 1000
  const maxOutstanding = Math.max(1_000, command.rate * MAX_OUTSTANDING_SECONDS)
  let offered = 0
  let sent = 0
  let skipped = 0
  let nextSample = startedAt + 250
  let turn = 0
  while (true) {
    const now = performance.now()
    if (now >= endAt) break
    const due = Math.floor(((now - startedAt) / 1000) * command.rate)
    let outstanding = 0
    for (const p of publishers) outstanding += p.pending.size
    while (offered < due) {
      const i = offered++
      if (outstanding >= maxOutstanding) {
        skipped++
        continue
      }
      const publisher = publishers[i % publishers.length]!
      const scopeId = scopeIds[Math.floor(i / publishers.length) % scopeIds.length]!
      publisher.send(
        scopeId,
        `${MARKER}${command.step}~${publisher.pod}~${
          performance.now().toFixed(3)
        }~ lorem ipsum dolor sit amet, consectetur adipiscing elit`
      )
      outstanding++
      sent++
    }
    if (now >= nextSample) {
      nextSample = now + 1_000
      const publisher = publishers[turn++ % publishers.length]!
      publisher.sampleNext = sampleHistory
    }
    await sleep(2)
  }
  const sendSeconds = (performance.now() - startedAt) / 1000
  for (const p of publishers) p.sampleNext = undefined

  // drain: until every send is answered and every expected delivery arrived, bounded
  const drainUntil = performance.now() + command.drainSeconds * 1000
  while (performance.now() < drainUntil) {
    const acked = publishers.reduce((n, p) => n + p.acked, 0)
    const answered = publishers.every((p) => p.pending.size === 0)
    if (answered && recorder.delivered >= acked * subscribersPerScope) break
    await sleep(20)
  }
  await Promise.all(historyChecks)

  const acked = publishers.reduce((n, p) => n + p.acked, 0)
  const lastAckAt = Math.max(...publishers.map((p) => p.lastAckAt))
  const ackLatencies = publishers.flatMap((p) => p.ackLatencies)
  // sends never answered within the drain count as failed too
  const unanswered = publishers.reduce((n, p) => n + p.pending.size, 0)
  for (const p of publishers) p.pending.clear()
  return {
    type: "result",
    step: command.step,
    offered,
    sent,
    skipped,
    acked,
    failed: publishers.reduce((n, p) => n + p.failed, 0) + unanswered,
    firstFailure: publishers.find((p) => p.firstFailure !== undefined)?.firstFailure ??
      (unanswered > 0 ? `${unanswered} sends unanswered ${command.drainSeconds} s after the step` : undefined),
    sendSeconds,
    ackSeconds: (Math.max(lastAckAt, startedAt) - startedAt) / 1000,
    ackP50: percentile(ackLatencies, 50),
    ackP99: percentile(ackLatencies, 99),
    expectedDeliveries: acked * subscribersPerScope,
    delivered: recorder.delivered,
    otherPodDelivered: recorder.otherPodDelivered,
    deliverP50: percentile(recorder.deliverLatencies, 50),
    deliverP99: percentile(recorder.deliverLatencies, 99),
    deliverMax: recorder.deliverLatencies.reduce((m, v) => Math.max(m, v), 0),
    deliverP99PerSecond: bySendSecond(recorder, startedAt, sendSeconds).map((latencies) => percentile(latencies, 99)),
    historySamples: historyLags.length + historyMissing,
    historyMissing,
    historyLagP50: percentile(historyLags, 50),
    historyLagMax: historyLags.reduce((m, v) => Math.max(m, v), 0)
  }
}

process.on("message", (message: Command) => {
  const reply = (value: unknown) => process.send?.(value)
  if (message.type === "init") {
    init(message).then(
      () => reply({ type: "ready" }),
      (error: unknown) => reply({ type: "error", message: String(error) })
    )
  } else if (message.type === "step") {
    runStep(message).then(reply, (error: unknown) => reply({ type: "error", message: String(error) }))
  } else {
    for (const socket of sockets) socket.terminate()
    process.exit(0)
  }
})
process.on("disconnect", () => process.exit(0))
