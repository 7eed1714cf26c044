// The tables `pnpm bench:fanout` prints: one per workload, a row per target, and under each
// Chatify row its ratio to Socket.IO's figure in the same run.
import type { TargetName, Workload } from "./config.js"
import type { RunResult, StepLine } from "./results.js"

export const TARGET_LABELS: Record<TargetName, string> = {
  socketio: "socket.io 4.8",
  signalr: "chatify /hubs/chat",
  rpc: "chatify /rpc",
  "rpc-noack": "chatify /rpc?acks=none"
}

/** The generator's own core is this busy or more: its figures may be the generator's limits. */
export const SATURATED_PCT = 90

/**
 * Other processes (and kernel work charged to no process, e.g. part of loopback networking) used
 * this much CPU, in % of one core, during a measurement: it competed with the server.
 */
export const BUSY_PCT = 15

type Cell = string
type Row = ReadonlyArray<Cell>

const DASH = "—"

const fixed = (n: number | null | undefined, digits: number): Cell =>
  n === null || n === undefined || !Number.isFinite(n)
    ? DASH
    : n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

const adaptive = (n: number | null | undefined): Cell =>
  n === null || n === undefined || !Number.isFinite(n)
    ? DASH
    : fixed(n, Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2)

/** Offered rates are usually whole numbers: no decimals then. */
const rate = (n: number | null | undefined): Cell =>
  n !== null && n !== undefined && Number.isInteger(n) ? fixed(n, 0) : adaptive(n)

const mib = (bytes: number | null | undefined): Cell =>
  fixed(bytes === null || bytes === undefined ? null : bytes / 2 ** 20, 1)

/** `value / base` as "2.41×"; "∞" when only the base is zero, "—" when either is missing or both are zero. */
const ratio = (value: number | null | undefined, base: number | null | undefined): Cell => {
  if (value === null || value === undefined || base === null || base === undefined) return DASH
  if (!Number.isFinite(value) || !Number.isFinite(base)) return DASH
  if (base === 0) return value === 0 ? DASH : "∞"
  const r = value / base
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`
}

const printTable = (headers: Row, rows: ReadonlyArray<Row>) => {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (row: Row) =>
    row.map((cell, i) => (i === 0 || i === row.length - 1 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(
      "  "
    ).trimEnd()
  console.log(line(headers))
  console.log(widths.map((w) => "-".repeat(w)).join("  "))
  for (const row of rows) console.log(row.length === 0 ? "" : line(row))
}

const truncate = (text: string, max = 110) => (text.length > max ? `${text.slice(0, max - 1)}…` : text)

const usPerDelivery = (
  s: StepLine
) => (s.serverCpuSeconds === null || s.delivered === 0 ? null : (s.serverCpuSeconds * 1e6) / s.delivered)

const stepNotes = (s: StepLine, run: RunResult): Array<string> => {
  const notes: Array<string> = []
  if (s.genCpuPct !== null && s.genCpuPct >= SATURATED_PCT) notes.push("generator saturated")
  if (s.otherCpuPct !== null && s.otherCpuPct >= BUSY_PCT) notes.push("machine busy (other CPU)")
  if (run.setup !== undefined && run.setup.subscribed < run.setup.subscribers) {
    notes.push(`only ${run.setup.subscribed}/${run.setup.subscribers} subscribed`)
  }
  if (s.disconnects > 0) notes.push(`${s.disconnects} disconnects`)
  if (s.sendFailed > 0) notes.push(`${s.sendFailed} sends refused`)
  const unanswered = s.sent - s.acked - s.sendFailed
  if (unanswered > 0) notes.push(`${unanswered} sends unanswered`)
  if (!s.quiet) notes.push("still delivering 15 s after the step")
  if (s.firstError !== undefined) notes.push(`${s.errors} errors, first: ${truncate(s.firstError, 80)}`)
  return notes
}

const STEP_HEADERS: Row = [
  "target",
  "offered/s",
  "delivered/s",
  "loss %",
  "p50 ms",
  "p99 ms",
  "max ms",
  "srv µs/deliv",
  "srv CPU %",
  "srv RSS MiB",
  "gen CPU %",
  "other CPU %",
  "notes"
]

const stepRow = (label: string, s: StepLine, run: RunResult): Row => [
  label,
  rate(s.offeredRate),
  fixed(s.deliveredPerSec, 0),
  fixed(s.lossPct, 2),
  adaptive(s.p50Ms),
  adaptive(s.p99Ms),
  adaptive(s.maxMs),
  adaptive(usPerDelivery(s)),
  fixed(s.serverCpuPct, 0),
  mib(s.serverRss),
  fixed(s.genCpuPct, 0),
  fixed(s.otherCpuPct, 0),
  stepNotes(s, run).join("; ")
]

const stepRatioRow = (s: StepLine, base: StepLine): Row => [
  "  ÷ socket.io",
  "",
  ratio(s.deliveredPerSec, base.deliveredPerSec),
  ratio(s.lossPct, base.lossPct),
  ratio(s.p50Ms, base.p50Ms),
  ratio(s.p99Ms, base.p99Ms),
  ratio(s.maxMs, base.maxMs),
  ratio(usPerDelivery(s), usPerDelivery(base)),
  ratio(s.serverCpuPct, base.serverCpuPct),
  ratio(s.serverRss, base.serverRss),
  "",
  "",
  ""
]

const failedRow = (label: string, run: RunResult | undefined, width: number): Row => [
  label,
  ...Array.from({ length: width - 2 }, () => DASH),
  `FAILED: ${truncate(run?.error ?? "no result")}`
]

type Results = ReadonlyMap<TargetName, RunResult>

/** W1 and W2: a block of rows per offered rate. */
const printSteps = (results: Results) => {
  const rows: Array<Row> = []
  const steps = Math.max(0, ...[...results.values()].map((r) => r.steps.length))
  for (let i = 0; i < steps; i++) {
    if (i > 0) rows.push([])
    const base = results.get("socketio")?.steps[i]
    for (const [target, run] of results) {
      const s = run.steps[i]
      if (s === undefined) {
        rows.push(failedRow(TARGET_LABELS[target], run, STEP_HEADERS.length))
        continue
      }
      rows.push(stepRow(TARGET_LABELS[target], s, run))
      if (target !== "socketio" && base !== undefined) rows.push(stepRatioRow(s, base))
    }
  }
  if (steps === 0) {
    for (const [target, run] of results) rows.push(failedRow(TARGET_LABELS[target], run, STEP_HEADERS.length))
  }
  printTable(STEP_HEADERS, rows)
}

const passes = (s: StepLine, limitMs: number) =>
  s.lossPct === 0 && s.p99Ms !== null && s.p99Ms <= limitMs && s.samples > 0

const whyFailed = (s: StepLine, limitMs: number): string => {
  const reasons: Array<string> = []
  if (s.lossPct === null || s.lossPct > 0) reasons.push(`loss ${fixed(s.lossPct, 2)}%`)
  if (s.p99Ms === null || s.p99Ms > limitMs) reasons.push(`p99 ${adaptive(s.p99Ms)} ms`)
  return reasons.join(", ")
}

/** The ceiling: the last step that passed before the first that did not. */
const printCeiling = (results: Results, limitMs: number) => {
  const headers: Row = [
    "target",
    "ceiling msg/s",
    "deliveries/s",
    "p99 ms",
    "srv µs/deliv",
    "srv CPU %",
    "srv RSS MiB",
    "failed at",
    "gen CPU % max",
    "other CPU % max",
    "notes"
  ]
  interface Ceiling {
    readonly best: StepLine | undefined
    readonly failed: StepLine | undefined
  }
  const ceilingOf = (run: RunResult): Ceiling => {
    const failedIndex = run.steps.findIndex((s) => !passes(s, limitMs))
    const passed = failedIndex < 0 ? run.steps : run.steps.slice(0, failedIndex)
    return { best: passed.at(-1), failed: failedIndex < 0 ? undefined : run.steps[failedIndex] }
  }
  const base = results.get("socketio")
  const baseCeiling = base === undefined ? undefined : ceilingOf(base).best
  const rows: Array<Row> = []
  const details: Array<string> = []
  for (const [target, run] of results) {
    if (run.steps.length === 0) {
      rows.push(failedRow(TARGET_LABELS[target], run, headers.length))
      continue
    }
    const { best, failed } = ceilingOf(run)
    const genMax = Math.max(...run.steps.map((s) => s.genCpuPct ?? 0))
    const otherMax = Math.max(...run.steps.map((s) => s.otherCpuPct ?? 0))
    const notes = [
      ...(genMax >= SATURATED_PCT ? ["generator saturated"] : []),
      ...(otherMax >= BUSY_PCT ? ["machine busy (other CPU)"] : []),
      ...(failed === undefined ? ["never failed: the ceiling is above the last rate tried"] : []),
      ...(best === undefined ? [`failed at the first rate`] : []),
      ...(run.error === undefined ? [] : [`error: ${truncate(run.error, 80)}`])
    ]
    rows.push([
      TARGET_LABELS[target],
      best === undefined ? "< " + rate(run.steps[0]?.offeredRate) : rate(best.offeredRate),
      fixed(best?.deliveredPerSec, 0),
      adaptive(best?.p99Ms),
      adaptive(best === undefined ? null : usPerDelivery(best)),
      fixed(best?.serverCpuPct, 0),
      mib(best?.serverRss),
      failed === undefined ? DASH : `${rate(failed.offeredRate)}/s: ${whyFailed(failed, limitMs)}`,
      fixed(genMax, 0),
      fixed(otherMax, 0),
      notes.join("; ")
    ])
    if (target !== "socketio" && baseCeiling !== undefined && best !== undefined) {
      rows.push([
        "  ÷ socket.io",
        ratio(best.offeredRate, baseCeiling.offeredRate),
        ratio(best.deliveredPerSec, baseCeiling.deliveredPerSec),
        ratio(best.p99Ms, baseCeiling.p99Ms),
        ratio(usPerDelivery(best), usPerDelivery(baseCeiling)),
        ratio(best.serverCpuPct, baseCeiling.serverCpuPct),
        ratio(best.serverRss, baseCeiling.serverRss),
        "",
        "",
        "",
        ""
      ])
    }
    details.push(
      `  ${TARGET_LABELS[target]}: ` +
        run.steps
          .map((s) =>
            `${rate(s.offeredRate)}/s → ${fixed(s.deliveredPerSec, 0)}/s p99 ${adaptive(s.p99Ms)} ms loss ${
              fixed(s.lossPct, 2)
            }% ` +
            `gen ${fixed(s.genCpuPct, 0)}% ${passes(s, limitMs) ? "ok" : "FAIL"}`
          )
          .join(" | ")
    )
  }
  printTable(headers, rows)
  console.log("steps:")
  for (const line of details) console.log(line)
}

const printIdle = (results: Results) => {
  const headers: Row = [
    "target",
    "connect+sub s",
    "per s",
    "srv CPU ms/conn",
    "RSS before MiB",
    "RSS after MiB",
    "KiB/conn",
    "gen CPU %",
    "other CPU %",
    "notes"
  ]
  const rows: Array<Row> = []
  const base = results.get("socketio")?.idle
  const perSecond = (i: { timedConnected: number; timedSeconds: number | null }) =>
    i.timedSeconds === null || i.timedSeconds === 0 ? null : i.timedConnected / i.timedSeconds
  const cpuPerConnection = (i: { timedConnected: number; serverCpuSeconds: number | null }) =>
    i.serverCpuSeconds === null || i.timedConnected === 0 ? null : (i.serverCpuSeconds * 1000) / i.timedConnected
  for (const [target, run] of results) {
    const idle = run.idle
    if (idle === undefined) {
      rows.push(failedRow(TARGET_LABELS[target], run, headers.length))
      continue
    }
    const notes = [
      ...(idle.genCpuPct !== null && idle.genCpuPct >= SATURATED_PCT ? ["generator saturated"] : []),
      ...(idle.otherCpuPct !== null && idle.otherCpuPct >= BUSY_PCT ? ["machine busy (other CPU)"] : []),
      ...(idle.timedConnected < idle.timedConnections
        ? [`only ${idle.timedConnected}/${idle.timedConnections} timed ones subscribed`]
        : []),
      ...(idle.connected < idle.connections ? [`only ${idle.connected}/${idle.connections} subscribed`] : []),
      ...(idle.disconnects > 0 ? [`${idle.disconnects} disconnects`] : []),
      ...(idle.firstError === undefined ? [] : [`${idle.errors} errors, first: ${truncate(idle.firstError, 80)}`])
    ]
    rows.push([
      TARGET_LABELS[target],
      fixed(idle.timedSeconds, 2),
      fixed(perSecond(idle), 0),
      adaptive(cpuPerConnection(idle)),
      mib(idle.rssBefore),
      mib(idle.rssAfter),
      fixed(idle.rssPerConnection === null ? null : idle.rssPerConnection / 1024, 1),
      fixed(idle.genCpuPct, 0),
      fixed(idle.otherCpuPct, 0),
      notes.join("; ")
    ])
    if (target !== "socketio" && base !== undefined) {
      rows.push([
        "  ÷ socket.io",
        ratio(idle.timedSeconds, base.timedSeconds),
        ratio(perSecond(idle), perSecond(base)),
        ratio(cpuPerConnection(idle), cpuPerConnection(base)),
        ratio(idle.rssBefore, base.rssBefore),
        ratio(idle.rssAfter, base.rssAfter),
        ratio(idle.rssPerConnection, base.rssPerConnection),
        "",
        "",
        ""
      ])
    }
  }
  printTable(headers, rows)
}

const printRest = (results: Results) => {
  const headers: Row = ["target", "RSS listening MiB", "RSS at rest MiB", "lowest MiB", "notes"]
  const rows: Array<Row> = []
  const base = results.get("socketio")?.rest
  for (const [target, run] of results) {
    const rest = run.rest
    if (rest === undefined) {
      rows.push(failedRow(TARGET_LABELS[target], run, headers.length))
      continue
    }
    rows.push([TARGET_LABELS[target], mib(rest.rssListening), mib(rest.rssAtRest), mib(rest.lowestRss), ""])
    if (target !== "socketio" && base !== undefined) {
      rows.push([
        "  ÷ socket.io",
        ratio(rest.rssListening, base.rssListening),
        ratio(rest.rssAtRest, base.rssAtRest),
        ratio(rest.lowestRss, base.lowestRss),
        ""
      ])
    }
  }
  printTable(headers, rows)
}

export const printWorkload = (workload: Workload, results: Results) => {
  console.log("")
  console.log(`## ${workload.title}`)
  const plan = workload.plan
  if (plan.mode === "fanout") {
    console.log(
      `   ${plan.stepSeconds} s per rate, ${plan.textBytes}-byte texts, loss = not delivered ${plan.graceSeconds} s after the last send, ` +
        `latency = send → receive (every message below 20k deliveries/s, else 1 in 16)`
    )
  }
  console.log("")
  if (plan.stopOnFail) printCeiling(results, plan.p99LimitMs)
  else if (plan.mode === "idle") printIdle(results)
  else if (plan.mode === "rest") printRest(results)
  else printSteps(results)
  const setups = [...results].flatMap(([target, { setup }]) =>
    setup === undefined
      ? []
      : [`${TARGET_LABELS[target]} ${fixed(setup.seconds, 1)} s (${setup.subscribed}/${setup.subscribers})`]
  )
  if (setups.length > 0) console.log(`subscribed in: ${setups.join(" · ")}`)
  for (const [target, run] of results) {
    if (run.serverLog.count === 0) continue
    console.log(
      `${TARGET_LABELS[target]} logged ${run.serverLog.count} warnings/errors; first: ${
        truncate(run.serverLog.first ?? "", 300)
      }`
    )
  }
}
