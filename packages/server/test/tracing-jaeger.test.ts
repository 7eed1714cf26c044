/**
 * One send, one trace, across two pods, checked in a real Jaeger (scripts/services/jaeger.sh): two
 * server processes on the real Kafka of scripts/services/kafka.sh, both exporting over OTLP/HTTP,
 * history embedded (SQLite; the history writers share one group, so the write happens on whichever
 * pod holds the partition). A REST send to pod A with a known X-Correlation-ID must come back from
 * Jaeger's query API as one trace holding the HTTP request, the use case, the produce (pod A), the
 * fan-out on pod B (via the `traceparent` Kafka header) and the history write; the consumer-side
 * log lines of both pods carry the sender's correlation id (the `x-correlation-id` header).
 * A third pod, on Cassandra, takes an /rpc send on the WebSocket fast path: its trace must have
 * RpcServer's span above the use case, as RpcServer's own path has, and the Cassandra append.
 */
import { NodeSocket } from "@effect/platform-node"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Schedule, Schema } from "effect"
import { ChatRpcs, EnrichedChatEvent } from "@chatify/domain"
import { endpoints, ensureService } from "../../adapters/test/support/services.js"
import { awaitReady } from "../src/testing.js"
import { makePodFleet } from "./support/podFleet.js"
import type { ServerProcess } from "./support/serverProcess.js"

/** A pod from source on a loaded box: Kafka group joins and schema checks before it is ready. */
const POD_START = "90 seconds"
const run = crypto.randomUUID().replaceAll("-", "").slice(0, 10)
const TOPIC = `chatify-traces-${run}`
const GROUP_PREFIX = `chatify-traces-broadcast-${run}`
const HISTORY_GROUP = `chatify-traces-history-${run}`
// this run's own service name: Jaeger keeps traces of earlier runs in memory
const SERVICE = `chatify-trace-test-${run}`
const PODS = [`traces-a-${run}`, `traces-b-${run}`] as const
// the /rpc + Cassandra case: one pod of its own, with its own service name and keyspace
const RPC_SERVICE = `${SERVICE}-rpc`
const RPC_POD = `traces-rpc-${run}`
const KEYSPACE = `chatify_traces_${run}`
// its own topic and history group too: the two-pod case's writers (SQLite) must not store its send
const RPC_TOPIC = `${TOPIC}-rpc`
const RPC_HISTORY_GROUP = `${HISTORY_GROUP}-rpc`

const fleet = makePodFleet({
  topics: [TOPIC, RPC_TOPIC],
  groups: [...[...PODS, RPC_POD].map((pod) => `${GROUP_PREFIX}-${pod}`), HISTORY_GROUP, RPC_HISTORY_GROUP],
  keyspaces: [KEYSPACE]
})

beforeAll(
  () => Promise.all([ensureService("kafka"), ensureService("jaeger"), ensureService("cassandra")]),
  600_000
)

afterAll(() => fleet.stop(), 120_000)

const startPod = (podName: string, extra: Record<string, string> = {}) =>
  fleet.start(podName, {
    CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: endpoints.kafka,
    CHATIFY__MESSAGEBROKER__TOPICNAME: TOPIC,
    CHATIFY__MESSAGEBROKER__CREATETOPICS: "true",
    CHATIFY__MESSAGEBROKER__BROADCASTCONSUMERGROUPPREFIX: GROUP_PREFIX,
    CHATIFY__MESSAGEBROKER__HISTORYWRITERCONSUMERGROUP: HISTORY_GROUP,
    CHATIFY__TRACING__OTLPENDPOINT: endpoints.jaeger.otlp,
    CHATIFY__TRACING__SERVICENAME: SERVICE,
    CHATIFY__TRACING__EXPORTINTERVALSECONDS: "0.5",
    CHATIFY__LOGGING__FORMAT: "json",
    CHATIFY__LOGGING__LEVEL: "Debug",
    CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0",
    ...extra
  })

const decodeEvent = Schema.decodeUnknownSync(EnrichedChatEvent)

// Jaeger's query API (/api/traces): the part of its answer this test reads
const JaegerTag = Schema.Struct({ key: Schema.String, value: Schema.Unknown })
const JaegerSpan = Schema.Struct({
  traceID: Schema.String,
  spanID: Schema.String,
  operationName: Schema.String,
  processID: Schema.String,
  references: Schema.Array(Schema.Struct({ refType: Schema.String, spanID: Schema.String, traceID: Schema.String })),
  tags: Schema.Array(JaegerTag)
})
const JaegerTraces = Schema.Struct({
  data: Schema.Array(Schema.Struct({
    traceID: Schema.String,
    spans: Schema.Array(JaegerSpan),
    processes: Schema.Record({ key: Schema.String, value: Schema.Struct({ tags: Schema.Array(JaegerTag) }) })
  }))
})
type JaegerTrace = (typeof JaegerTraces.Type)["data"][number]

const tracesOf = (service: string, tags: Record<string, string>) =>
  Effect.tryPromise(async () => {
    const query = new URLSearchParams({ service, tags: JSON.stringify(tags), lookback: "1h", limit: "100" })
    const response = await fetch(`${endpoints.jaeger.query}/api/traces?${query.toString()}`)
    // no trace yet answers 200 with an empty list, an unknown service 404 or an empty list
    if (response.status === 404) return []
    if (response.status !== 200) throw new Error(`jaeger: ${response.status} ${await response.text()}`)
    return (await Schema.decodeUnknownPromise(JaegerTraces)(await response.json())).data
  })

/** The pod (POD_NAME) whose process exported a span. */
const podOf = (trace: JaegerTrace, processID: string) =>
  trace.processes[processID]?.tags.find((tag) => tag.key === "service.instance.id")?.value

/** JSON log lines of a pod's output. */
const logLines = (pod: ServerProcess): ReadonlyArray<Record<string, unknown>> =>
  pod.output().split("\n").flatMap((line) => {
    if (!line.startsWith("{")) return []
    try {
      return [JSON.parse(line) as Record<string, unknown>]
    } catch {
      return []
    }
  })

describe("traces in Jaeger, Kafka mode, two pods", () => {
  it.scopedLive(
    "a REST send is one trace: request, use case and produce on pod A, fan-out on pod B, the history write; consumer logs carry its correlation id",
    () =>
      Effect.gen(function*() {
        const [podA, podB] = PODS.map((name) => startPod(name)) as [ServerProcess, ServerProcess]
        const [a, b] = yield* Effect.all([Effect.promise(() => podA.listening), Effect.promise(() => podB.listening)], {
          concurrency: 2
        })
        yield* Effect.all([awaitReady(a, POD_START), awaitReady(b, POD_START)], { concurrency: 2 })

        const correlationId = `trace-${run}`
        const response = yield* Effect.promise(() =>
          fetch(`${a}/api/chat/send`, {
            method: "POST",
            headers: { "content-type": "application/json", "x-correlation-id": correlationId },
            body: JSON.stringify({ scopeType: 0, scopeId: `traces-${run}`, text: "traced" })
          })
        )
        expect(response.status).toBe(200)
        const sent = decodeEvent(yield* Effect.promise(() => response.json()))
        const traceparent = response.headers.get("traceparent")

        // the spans arrive in Jaeger over a few export intervals; wait until every expected one is there
        const expected = [
          "Chat.send",
          "KafkaProducer.produce",
          "ChatBroadcast.fanout",
          "ChatHistoryWriter.store",
          "SqliteHistory.append"
        ]
        let seen: ReadonlyArray<string> = []
        const trace = yield* tracesOf(SERVICE, { correlationId }).pipe(
          Effect.flatMap((traces) => {
            seen = traces.flatMap((t) => t.spans.map((s) => `${t.traceID.slice(0, 8)}:${s.operationName}`))
            const found = traces.find((t) => t.spans.some((s) => s.operationName === "Chat.send"))
            const complete = found !== undefined &&
              expected.every((name) => found.spans.some((s) => s.operationName === name)) &&
              // both pods' fan-outs (pod B's is the one the send's pod did not do)
              found.spans.filter((s) => s.operationName === "ChatBroadcast.fanout").length >= 2
            return complete ? Effect.succeed(found) : Effect.fail(new Error("incomplete"))
          }),
          Effect.retry(Schedule.spaced("250 millis")),
          Effect.timeoutFail({
            duration: "45 seconds",
            onTimeout: () =>
              new Error(
                `no complete trace in Jaeger for ${correlationId} (traceparent ${traceparent}); spans: ${
                  seen.join(", ")
                }`
              )
          }),
          Effect.orDie
        )
        const spans = trace.spans
        const byName = (name: string) => spans.filter((s) => s.operationName === name)
        const names = spans.map((s) => s.operationName)

        // one trace: every span, on both pods, shares the trace id of the REST request
        expect(new Set(spans.map((s) => s.traceID))).toEqual(new Set([trace.traceID]))
        const httpRequest = spans.find((s) => s.operationName.startsWith("http.server POST"))
        expect(httpRequest, `spans: ${names.join(", ")}`).toBeDefined()
        const [send] = byName("Chat.send")
        const [produce] = byName("KafkaProducer.produce")
        expect(send?.references.map((r) => r.spanID)).toContain(httpRequest?.spanID)
        expect(produce?.references.map((r) => r.spanID)).toContain(send?.spanID)
        expect(podOf(trace, httpRequest!.processID)).toBe(PODS[0])
        expect(podOf(trace, produce!.processID)).toBe(PODS[0])

        // the consumers continue the produce span (its traceparent in the record's headers)
        const fanouts = byName("ChatBroadcast.fanout")
        expect(new Set(fanouts.map((s) => podOf(trace, s.processID)))).toEqual(new Set(PODS))
        const [store] = byName("ChatHistoryWriter.store")
        for (const consumed of [...fanouts, store!]) {
          expect(consumed.references.map((r) => r.spanID)).toContain(produce!.spanID)
          expect(consumed.tags).toContainEqual({ key: "correlationId", value: correlationId })
          expect(consumed.tags).toContainEqual({ key: "messaging.kafka.offset", value: sent.offset })
        }

        // the history writer's store of this one event runs its adapter call in the send's trace
        const [append] = byName("SqliteHistory.append")
        expect(append?.references.map((r) => r.spanID)).toContain(store?.spanID)
        expect(podOf(trace, append!.processID)).toBe(podOf(trace, store!.processID))

        // the consumer-side log lines carry the sender's correlation id (pod B's fan-out, the
        // writer on whichever pod stored it) and the ids of the trace they ran in
        const consumerLines = (pod: ServerProcess) =>
          logLines(pod).filter((line) => line["consumer"] !== undefined && line["correlationId"] === correlationId)
        const fanoutOnB = consumerLines(podB).filter((line) => line["consumer"] === "broadcast")
        expect(fanoutOnB.length).toBeGreaterThan(0)
        expect(fanoutOnB.map((line) => line["traceId"])).toContain(trace.traceID)
        expect([...consumerLines(podA), ...consumerLines(podB)].map((line) => line["consumer"])).toContain(
          "history-writer"
        )

        // the readiness probes above made no trace (they would be most of them, every few seconds)
        const everything = yield* Effect.orDie(tracesOf(SERVICE, {}))
        const probes = everything.flatMap((t) => t.spans).filter((s) => s.operationName.startsWith("http.server GET"))
        expect(probes).toEqual([])
      }),
    { timeout: 150_000 }
  )

  it.scopedLive(
    "an /rpc send on the WebSocket fast path has RpcServer's span, and a Cassandra history write shows in its trace",
    () =>
      Effect.gen(function*() {
        const pod = startPod(RPC_POD, {
          CHATIFY__TRACING__SERVICENAME: RPC_SERVICE,
          CHATIFY__MESSAGEBROKER__TOPICNAME: RPC_TOPIC,
          CHATIFY__MESSAGEBROKER__HISTORYWRITERCONSUMERGROUP: RPC_HISTORY_GROUP,
          CHATIFY__DATABASE__CONTACTPOINTS: endpoints.cassandra.host,
          CHATIFY__DATABASE__PORT: String(endpoints.cassandra.port),
          CHATIFY__DATABASE__KEYSPACE: KEYSPACE
        })
        const base = yield* Effect.promise(() => pod.listening)
        yield* awaitReady(base, POD_START)

        // a bare RPC client, anonymous as the pod is: its sends take the fast path (see RpcSocketProtocol)
        const context = yield* Layer.build(
          RpcClient.layerProtocolSocket().pipe(
            Layer.provide(NodeSocket.layerWebSocket(`${base.replace(/^http/u, "ws")}/rpc`)),
            Layer.provide(RpcSerialization.layerNdjson)
          )
        )
        const client = yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))
        const sent = yield* client.Send({ scopeType: 0, scopeId: `traces-rpc-${run}`, text: "traced over /rpc" })

        const expected = [
          "RpcServer.Send",
          "Chat.send",
          "KafkaProducer.produce",
          "ChatHistoryWriter.store",
          "CassandraHistory.append"
        ]
        let seen: ReadonlyArray<string> = []
        const trace = yield* tracesOf(RPC_SERVICE, {}).pipe(
          Effect.flatMap((traces) => {
            seen = traces.flatMap((t) => t.spans.map((s) => `${t.traceID.slice(0, 8)}:${s.operationName}`))
            const found = traces.find((t) => t.spans.some((s) => s.operationName === "RpcServer.Send"))
            return found !== undefined && expected.every((name) => found.spans.some((s) => s.operationName === name))
              ? Effect.succeed(found)
              : Effect.fail(new Error("incomplete"))
          }),
          Effect.retry(Schedule.spaced("250 millis")),
          Effect.timeoutFail({
            duration: "45 seconds",
            onTimeout: () => new Error(`no complete /rpc trace in Jaeger; spans: ${seen.join(", ")}`)
          }),
          Effect.orDie
        )
        const only = (name: string) => {
          const spans = trace.spans.filter((s) => s.operationName === name)
          expect(spans, name).toHaveLength(1)
          return spans[0]!
        }
        const rpc = only("RpcServer.Send")
        const send = only("Chat.send")
        const produce = only("KafkaProducer.produce")
        const store = only("ChatHistoryWriter.store")
        const append = only("CassandraHistory.append")
        // as on RpcServer's path: the call's span, with its request id, holds the use case
        expect(rpc.tags.map((tag) => tag.key)).toContain("requestId")
        expect(send.references.map((r) => r.spanID)).toContain(rpc.spanID)
        expect(produce.references.map((r) => r.spanID)).toContain(send.spanID)
        expect(store.references.map((r) => r.spanID)).toContain(produce.spanID)
        expect(store.tags).toContainEqual({ key: "messaging.kafka.offset", value: sent.offset })
        expect(append.references.map((r) => r.spanID)).toContain(store.spanID)
        expect(new Set(trace.spans.map((s) => s.traceID))).toEqual(new Set([trace.traceID]))
      }),
    { timeout: 150_000 }
  )
})
