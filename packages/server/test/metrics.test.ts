import { describe, expect, it } from "@effect/vitest"
import { NodeSocket } from "@effect/platform-node"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import {
  Effect,
  FastCheck,
  Layer,
  Logger,
  LogLevel,
  MetricBoundaries,
  MetricKey,
  MetricPair,
  MetricState,
  Option,
  Stream
} from "effect"
import parsePrometheusTextFormat, { type PrometheusFamily } from "parse-prometheus-text-format"
import { ChatRpcs } from "@chatify/domain"
import { formatValue, PROMETHEUS_CONTENT_TYPE, prometheusText, sanitizeName } from "../src/Metrics.js"
import { startTestServer } from "../src/testing.js"

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

const family = (families: ReadonlyArray<PrometheusFamily>, name: string) => {
  const found = families.find((candidate) => candidate.name === name)
  if (found === undefined) throw new Error(`no metric family ${name} in the exposition`)
  return found
}

/** The value of the sample whose labels include `labels` (0 when there is none yet). */
const sample = (families: ReadonlyArray<PrometheusFamily>, name: string, labels: Record<string, string> = {}) => {
  const match = family(families, name).metrics.find((metric) =>
    Object.entries(labels).every(([key, value]) => metric.labels?.[key] === value)
  )
  return match === undefined ? 0 : Number(match.value ?? match.count)
}

const labelValue = FastCheck.string({ unit: "binary", maxLength: 20 })

describe("Prometheus text exposition", () => {
  // the parser itself, on the format's reference example (escapes, +Inf, histogram): it reads the real format
  it("the parser reads the official format example", () => {
    const parsed = parsePrometheusTextFormat(
      [
        "# HELP http_requests_total The total number of HTTP requests.",
        "# TYPE http_requests_total counter",
        "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000",
        "msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9",
        "# TYPE http_request_duration_seconds histogram",
        "http_request_duration_seconds_bucket{le=\"0.05\"} 24054",
        "http_request_duration_seconds_bucket{le=\"+Inf\"} 144320",
        "http_request_duration_seconds_sum 53423",
        "http_request_duration_seconds_count 144320",
        ""
      ].join("\n")
    )
    expect(sample(parsed, "http_requests_total", { code: "200" })).toBe(1027)
    expect(family(parsed, "msdos_file_access_time_seconds").metrics[0]?.labels).toEqual({
      path: "C:\\DIR\\FILE.TXT",
      error: "Cannot find file:\n\"FILE.TXT\""
    })
    expect(family(parsed, "http_request_duration_seconds").metrics[0]?.buckets).toEqual({
      "0.05": "24054",
      "+Inf": "144320"
    })
  })

  it.prop(
    "counters and gauges with any label values and any finite values parse back to themselves",
    {
      name: FastCheck.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,20}$/u),
      labels: FastCheck.dictionary(FastCheck.stringMatching(/^[a-z][a-z0-9_]{0,10}$/u), labelValue, { maxKeys: 3 }),
      value: FastCheck.double({ noNaN: true, noDefaultInfinity: true }),
      help: FastCheck.string({ maxLength: 40 })
    },
    ({ help, labels, name, value }) => {
      // `le` and `quantile` mean something in histograms and summaries; a counter or gauge never uses them
      const tags = Object.entries(labels).filter(([key]) => key !== "le" && key !== "quantile")
      const key = MetricKey.tagged(MetricKey.gauge(`${name}_g`, { description: help }), "x", "1").pipe(
        (gauge) => tags.reduce((current, [tag, tagValue]) => MetricKey.tagged(current, tag, tagValue), gauge)
      )
      const counterKey = MetricKey.counter(`${name}_total`)
      const text = prometheusText([
        MetricPair.unsafeMake(key, MetricState.gauge(value)),
        MetricPair.unsafeMake(counterKey, MetricState.counter(Math.abs(value)))
      ])
      const parsed = parsePrometheusTextFormat(text)
      const gauge = family(parsed, `${name}_g`)
      expect(gauge.type).toBe("GAUGE")
      expect(gauge.metrics[0]?.labels).toEqual(Object.fromEntries([["x", "1"], ...tags]))
      expect(Number(gauge.metrics[0]?.value)).toBe(value)
      expect(family(parsed, `${name}_total`).type).toBe("COUNTER")
      expect(sample(parsed, `${name}_total`)).toBe(Math.abs(value))
    }
  )

  it.prop(
    "histograms parse back with cumulative buckets, +Inf equal to the count, and the sum",
    { observations: FastCheck.array(FastCheck.double({ min: 0, max: 100, noNaN: true }), { maxLength: 30 }) },
    ({ observations }) => {
      const boundaries = [0.5, 1, 10]
      const buckets = boundaries.map((boundary) =>
        [boundary, observations.filter((x) => x <= boundary).length] as const
      )
      const sum = observations.reduce((total, x) => total + x, 0)
      const state = MetricState.histogram({
        buckets,
        count: observations.length,
        min: Math.min(...observations),
        max: Math.max(...observations),
        sum
      })
      const text = prometheusText([
        MetricPair.unsafeMake(MetricKey.histogram("latency_seconds", MetricBoundaries.fromIterable(boundaries)), state)
      ])
      const [histogram] = family(parsePrometheusTextFormat(text), "latency_seconds").metrics
      expect(histogram?.buckets).toEqual({
        "0.5": String(buckets[0]?.[1]),
        "1": String(buckets[1]?.[1]),
        "10": String(buckets[2]?.[1]),
        "+Inf": String(observations.length)
      })
      expect(Number(histogram?.count)).toBe(observations.length)
      expect(Number(histogram?.sum)).toBe(sum)
    }
  )

  it.prop("names are sanitized to Prometheus' alphabet", { name: FastCheck.string() }, ({ name }) => {
    expect(sanitizeName(name)).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/u)
    expect(sanitizeName(name, true)).toMatch(/^[a-zA-Z_][a-zA-Z0-9_]*$/u)
  })

  it("writes infinities, NaN and negative zero as Prometheus does", () => {
    expect([Infinity, -Infinity, Number.NaN, -0, 1.5, BigInt(7)].map(formatValue)).toEqual([
      "+Inf",
      "-Inf",
      "NaN",
      "-0",
      "1.5",
      "7"
    ])
  })
})

describe("GET /metrics", () => {
  it.scopedLive("counts sends by outcome, their latency, deliveries, sockets and subscriptions", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const scrape = Effect.promise(async () => {
        const response = await fetch(`${server.httpUrl}/metrics`)
        expect(response.status).toBe(200)
        expect(response.headers.get("content-type")).toBe(PROMETHEUS_CONTENT_TYPE)
        return parsePrometheusTextFormat(await response.text())
      })
      const post = (body: unknown) =>
        Effect.promise(() =>
          fetch(`${server.httpUrl}/api/chat/send`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(body)
          }).then((response) => response.status)
        )
      const before = yield* scrape
      // every family is there from the start, at 0 where nothing happened yet
      for (
        const name of [
          "chatify_sends_total",
          "chatify_send_duration_seconds",
          "chatify_fanout_deliveries_total",
          "chatify_fanout_lag_seconds",
          "chatify_connected_sockets",
          "chatify_fanout_subscriptions",
          "chatify_consumer_lag_records",
          "chatify_history_writer_batch_records",
          "chatify_history_writer_batch_duration_seconds",
          "chatify_rate_limiter_fail_open_total",
          "chatify_log_sink_dropped_lines_total"
        ]
      ) {
        expect(family(before, name).name).toBe(name)
      }
      expect(family(before, "chatify_send_duration_seconds").type).toBe("HISTOGRAM")

      // a subscriber on /rpc, live once Subscribed arrives
      const context = yield* Layer.build(
        RpcClient.layerProtocolSocket().pipe(
          Layer.provide(NodeSocket.layerWebSocket(server.wsUrl)),
          Layer.provide(RpcSerialization.layerNdjson)
        )
      )
      const client = yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))
      const pull = yield* Stream.toPull(client.Subscribe({ scopeType: 0, scopeId: "metrics" }))
      yield* pull

      expect(yield* post({ scopeType: 0, scopeId: "metrics", text: "one" })).toBe(200)
      expect(yield* post({ scopeType: 0, scopeId: "metrics", text: "two" })).toBe(200)
      expect(yield* post({ scopeType: 0, scopeId: " ", text: "" })).toBe(400)
      // both events reached the subscriber (a pull may bring several at once)
      let received = 0
      while (received < 2) received += (yield* pull).length

      const after = yield* scrape
      const accepted = { outcome: "accepted" }
      const invalid = { outcome: "rejected", reason: "ValidationError" }
      expect(sample(after, "chatify_sends_total", accepted) - sample(before, "chatify_sends_total", accepted)).toBe(2)
      expect(sample(after, "chatify_sends_total", invalid) - sample(before, "chatify_sends_total", invalid)).toBe(1)
      expect(sample(after, "chatify_send_duration_seconds") - sample(before, "chatify_send_duration_seconds")).toBe(3)
      expect(
        sample(after, "chatify_fanout_deliveries_total") - sample(before, "chatify_fanout_deliveries_total")
      ).toBeGreaterThanOrEqual(2)
      expect(sample(after, "chatify_connected_sockets", { interface: "rpc" })).toBeGreaterThanOrEqual(1)
      expect(sample(after, "chatify_fanout_subscriptions")).toBeGreaterThanOrEqual(1)
      // the lag of the broadcast group per partition of the embedded log
      expect(
        family(after, "chatify_consumer_lag_records").metrics.some((metric) =>
          metric.labels?.["consumer"] === "broadcast" && metric.labels["partition"] !== undefined
        )
      ).toBe(true)
      expect(Option.isSome(Option.fromNullable(family(after, "chatify_fanout_lag_seconds").metrics[0]))).toBe(true)
    }).pipe(quiet))
})
