/**
 * The use cases' and consumers' metrics (Effect Metrics, named by Prometheus' conventions: base
 * units, `_total` counters, `_seconds` durations). The server exposes them at GET /metrics.
 * Tagged variants are made once here: tagging per update would make a metric key per call.
 */
import { Metric, MetricBoundaries, MetricLabel } from "effect"
import type { SendError } from "@chatify/domain"

const sendsTotal = Metric.counter("chatify_sends_total", {
  description: "Sends by outcome: accepted, or rejected with the reason (the typed error)",
  incremental: true
})

// Label arrays made once: a metric caches its hook per labels array, so an update with one of
// these is a lookup and an increment (Metric.tagged would make a new array, and key, per update).
const NO_LABELS: ReadonlyArray<MetricLabel.MetricLabel> = []
const ACCEPTED = [MetricLabel.make("outcome", "accepted")]
const rejectedWith = (
  reason: SendError["_tag"]
) => [MetricLabel.make("outcome", "rejected"), MetricLabel.make("reason", reason)]
/** The labels per rejection reason; the Record type keeps it exhaustive over SendError. */
const REJECTED: Readonly<Record<SendError["_tag"], ReadonlyArray<MetricLabel.MetricLabel>>> = {
  ValidationError: rejectedWith("ValidationError"),
  Unauthenticated: rejectedWith("Unauthenticated"),
  Forbidden: rejectedWith("Forbidden"),
  Conflict: rejectedWith("Conflict"),
  RateLimited: rejectedWith("RateLimited"),
  DependencyUnavailable: rejectedWith("DependencyUnavailable"),
  Timeout: rejectedWith("Timeout"),
  Unexpected: rejectedWith("Unexpected")
}

/** Latency buckets from 0.5 ms to about 16 s, doubling. */
const latencyBoundaries = MetricBoundaries.exponential({ start: 0.0005, factor: 2, count: 16 })

export const sendDurationSeconds = Metric.histogram(
  "chatify_send_duration_seconds",
  latencyBoundaries,
  "Time from a send's start to its answer (accepted or rejected)"
)

export const fanoutDeliveriesTotal = Metric.counter("chatify_fanout_deliveries_total", {
  description: "Events handed to this pod's subscribers (one per subscriber per event)",
  incremental: true
})

export const fanoutLagSeconds = Metric.histogram(
  "chatify_fanout_lag_seconds",
  latencyBoundaries,
  "Per broadcast batch, the age of its oldest event when it reached this pod's fan-out"
)

export const historyBatchRecords = Metric.histogram(
  "chatify_history_writer_batch_records",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 12 }),
  "Records per history writer batch"
)

export const historyBatchDurationSeconds = Metric.histogram(
  "chatify_history_writer_batch_duration_seconds",
  latencyBoundaries,
  "Time to store one history writer batch and commit its offsets"
)

/** Records a consumer group has yet to read, per partition (set when /metrics is scraped). */
export const consumerLagRecords = Metric.gauge("chatify_consumer_lag_records", {
  description: "Records in the log the consumer group has not processed yet, per partition"
})

/** Live subscriptions in this pod's fan-out (set when /metrics is scraped). */
export const fanoutSubscriptions = Metric.gauge("chatify_fanout_subscriptions", {
  description: "Live scope subscriptions on this pod"
})

/** Counts a send's outcome and observes its duration (synchronous: two hook updates). */
export const recordSend = (outcome: "accepted" | SendError["_tag"], seconds: number): void => {
  sendsTotal.unsafeUpdate(1, outcome === "accepted" ? ACCEPTED : REJECTED[outcome])
  sendDurationSeconds.unsafeUpdate(seconds, NO_LABELS)
}

/** Counts one broadcast batch's deliveries and observes its lag (synchronous, once per batch). */
export const recordFanout = (deliveries: number, lagSeconds: number): void => {
  fanoutDeliveriesTotal.unsafeUpdate(deliveries, NO_LABELS)
  fanoutLagSeconds.unsafeUpdate(lagSeconds, NO_LABELS)
}

/** Observes one history writer batch. */
export const recordHistoryBatch = (records: number, seconds: number): void => {
  historyBatchRecords.unsafeUpdate(records, NO_LABELS)
  historyBatchDurationSeconds.unsafeUpdate(seconds, NO_LABELS)
}

/** Registers this module's unlabelled series (and accepted sends), so /metrics shows them at 0 before any update. */
export const registerCoreMetrics = (): void => {
  sendsTotal.unsafeValue(ACCEPTED)
  for (
    const metric of [
      sendDurationSeconds,
      fanoutDeliveriesTotal,
      fanoutLagSeconds,
      historyBatchRecords,
      historyBatchDurationSeconds
    ]
  ) {
    metric.unsafeValue(NO_LABELS)
  }
  fanoutSubscriptions.unsafeValue(NO_LABELS)
}
