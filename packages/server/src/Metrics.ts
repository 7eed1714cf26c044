/**
 * GET /metrics: every Effect Metric of the process in the Prometheus text exposition format
 * (version 0.0.4), written here from Effect's own snapshot: @effect/opentelemetry's Prometheus
 * route would need the OpenTelemetry SDK for what is a small encoder.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Duration, Effect, Layer, Metric, MetricLabel, type MetricPair, MetricState } from "effect"
import {
  ChatEventSource,
  consumerLagRecords,
  CoreSettings,
  fanoutSubscriptions,
  LocalFanout,
  PodIdentity,
  registerCoreMetrics
} from "@chatify/core"
import { LogSinkDroppedLines } from "@chatify/adapters/logging"
import {
  rateLimiterFailOpenTotal,
  readRateLimiterFailOpenTotal,
  sendDeduplicatorFailOpenTotal
} from "@chatify/adapters/redis"

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

/** Open WebSockets by interface (`rpc`, `signalr`), counted by the gateway as they open and close. */
export const connectedSockets = Metric.gauge("chatify_connected_sockets", {
  description: "Open WebSocket connections by interface"
})

/** The labels of connectedSockets per interface, made once (see recordSend in core for why). */
export const socketLabels = {
  rpc: [MetricLabel.make("interface", "rpc")],
  signalr: [MetricLabel.make("interface", "signalr")]
} as const

type FamilyType = "counter" | "gauge" | "histogram" | "summary"

interface Family {
  readonly type: FamilyType
  readonly help: string | undefined
  readonly lines: Array<string>
}

/** A metric or label name as Prometheus allows it: [a-zA-Z_:][a-zA-Z0-9_:]* (no colon in labels). */
export const sanitizeName = (name: string, label = false): string => {
  const cleaned = name.replace(label ? /[^a-zA-Z0-9_]/gu : /[^a-zA-Z0-9_:]/gu, "_")
  return cleaned === "" || /^[0-9]/u.test(cleaned) ? `_${cleaned}` : cleaned
}

const escapeLabelValue = (value: string) => value.replace(/\\/gu, "\\\\").replace(/\n/gu, "\\n").replace(/"/gu, "\\\"")
const escapeHelp = (value: string) => value.replace(/\\/gu, "\\\\").replace(/\n/gu, "\\n")

/** A sample value: integers and decimals as JavaScript writes them, ±Inf, NaN and -0 as Prometheus (Go) does. */
export const formatValue = (value: number | bigint): string =>
  typeof value === "bigint"
    ? value.toString()
    : Number.isNaN(value)
    ? "NaN"
    : value === Number.POSITIVE_INFINITY
    ? "+Inf"
    : value === Number.NEGATIVE_INFINITY
    ? "-Inf"
    : Object.is(value, -0)
    ? "-0"
    : String(value)

const labelSet = (labels: ReadonlyArray<readonly [string, string]>): string =>
  labels.length === 0
    ? ""
    : `{${labels.map(([key, value]) => `${sanitizeName(key, true)}="${escapeLabelValue(value)}"`).join(",")}}`

/**
 * The Prometheus text format of a metric snapshot: one family per name (HELP, TYPE, then its
 * samples), histograms with cumulative `_bucket`s up to `+Inf`, `_sum` and `_count`. Frequencies
 * become counters with a `key` label.
 */
export const prometheusText = (pairs: Iterable<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, Family>()
  const familyOf = (name: string, type: FamilyType, help: string | undefined): Family | undefined => {
    const existing = families.get(name)
    if (existing !== undefined) return existing.type === type ? existing : undefined // a name is one type
    const family: Family = { type, help, lines: [] }
    families.set(name, family)
    return family
  }
  for (const { metricKey, metricState } of pairs) {
    const name = sanitizeName(metricKey.name)
    const help = metricKey.description._tag === "Some" ? metricKey.description.value : undefined
    const tags = metricKey.tags.map((tag): readonly [string, string] => [tag.key, tag.value])
    if (MetricState.isCounterState(metricState)) {
      familyOf(name, "counter", help)?.lines.push(`${name}${labelSet(tags)} ${formatValue(metricState.count)}`)
    } else if (MetricState.isGaugeState(metricState)) {
      familyOf(name, "gauge", help)?.lines.push(`${name}${labelSet(tags)} ${formatValue(metricState.value)}`)
    } else if (MetricState.isHistogramState(metricState)) {
      const lines = familyOf(name, "histogram", help)?.lines
      if (lines === undefined) continue
      for (const [boundary, count] of metricState.buckets) {
        if (!Number.isFinite(boundary)) continue // +Inf is written below from the count
        lines.push(`${name}_bucket${labelSet([...tags, ["le", formatValue(boundary)]])} ${formatValue(count)}`)
      }
      lines.push(`${name}_bucket${labelSet([...tags, ["le", "+Inf"]])} ${formatValue(metricState.count)}`)
      lines.push(`${name}_sum${labelSet(tags)} ${formatValue(metricState.sum)}`)
      lines.push(`${name}_count${labelSet(tags)} ${formatValue(metricState.count)}`)
    } else if (MetricState.isSummaryState(metricState)) {
      const lines = familyOf(name, "summary", help)?.lines
      if (lines === undefined) continue
      for (const [quantile, value] of metricState.quantiles) {
        if (value._tag === "None") continue
        lines.push(`${name}${labelSet([...tags, ["quantile", formatValue(quantile)]])} ${formatValue(value.value)}`)
      }
      lines.push(`${name}_sum${labelSet(tags)} ${formatValue(metricState.sum)}`)
      lines.push(`${name}_count${labelSet(tags)} ${formatValue(metricState.count)}`)
    } else if (MetricState.isFrequencyState(metricState)) {
      const lines = familyOf(name, "counter", help)?.lines
      if (lines === undefined) continue
      for (const [key, count] of metricState.occurrences) {
        lines.push(`${name}${labelSet([...tags, ["key", key]])} ${formatValue(count)}`)
      }
    }
  }
  let text = ""
  for (const [name, family] of families) {
    if (family.help !== undefined && family.help.trim() !== "") text += `# HELP ${name} ${escapeHelp(family.help)}\n`
    text += `# TYPE ${name} ${family.type}\n`
    for (const line of family.lines) text += `${line}\n`
  }
  return text
}

/** How long a scrape waits for the log's offsets before it answers without the consumer lag. */
const LAG_TIMEOUT = Duration.seconds(2)

/**
 * GET /metrics. A scrape first sets the gauges that are read rather than counted: subscriptions,
 * and each consumer group's lag per partition (the log's end offsets minus the group's commits).
 */
export const MetricsRoute = Layer.scopedDiscard(
  Effect.gen(function*() {
    const router = yield* HttpLayerRouter.HttpRouter
    const fanout = yield* LocalFanout
    const source = yield* ChatEventSource
    const settings = yield* CoreSettings
    const { podId } = yield* PodIdentity
    // series shown at 0 from the start, not only after their first update
    registerCoreMetrics()
    for (
      const metric of [
        LogSinkDroppedLines,
        rateLimiterFailOpenTotal,
        readRateLimiterFailOpenTotal,
        sendDeduplicatorFailOpenTotal
      ]
    ) {
      metric.register()
    }
    for (const labels of Object.values(socketLabels)) connectedSockets.unsafeValue(labels)
    const groups = [
      ["broadcast", `${settings.broadcastGroupPrefix}-${podId}`],
      ["history-writer", settings.historyWriterGroup]
    ] as const
    const consumerLag = Effect.gen(function*() {
      const ends = yield* source.endOffsets
      for (const [consumer, groupId] of groups) {
        const committed = yield* source.committedOffsets(groupId)
        for (const [partition, end] of ends) {
          const lag = Math.max(0, end - (committed.get(partition) ?? 0))
          consumerLagRecords.unsafeUpdate(lag, [
            MetricLabel.make("consumer", consumer),
            MetricLabel.make("partition", String(partition))
          ])
        }
      }
    }).pipe(
      Effect.timeout(LAG_TIMEOUT),
      Effect.catchAll((error) => Effect.logDebug("/metrics: consumer lag not read", error))
    )
    yield* router.add(
      "GET",
      "/metrics",
      Effect.gen(function*() {
        yield* Metric.set(fanoutSubscriptions, yield* fanout.subscriberCount)
        yield* consumerLag
        return HttpServerResponse.text(prometheusText(yield* Metric.snapshot), { contentType: PROMETHEUS_CONTENT_TYPE })
      })
    )
  })
)
