/**
 * The Elasticsearch/OpenSearch log sink against a real OpenSearch node (scripts/services/opensearch.sh):
 * the server process ships its request lines, findable by correlation id in today's index, and
 * lines logged while the node is down arrive once it is back (or are counted as dropped).
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { type ChildProcess, execFile } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Duration, Effect, Metric, Option } from "effect"
import { indexName, LogSinkDroppedLines, makeLogSink, type LogSinkSettings } from "@chatify/adapters/logging"
import { endpoints, ensureService } from "../../adapters/test/support/services.js"
import { startServerProcess } from "./support/serverProcess.js"

const opensearch = endpoints.opensearch
const script = fileURLToPath(new URL("../../../scripts/services/opensearch.sh", import.meta.url))
const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
const children: Array<ChildProcess> = []
const directories: Array<string> = []

beforeAll(() => ensureService("opensearch"), 180_000)
afterAll(async () => {
  for (const child of children.splice(0)) child.kill("SIGKILL")
  for (const dir of directories.splice(0)) rmSync(dir, { recursive: true, force: true })
  // this run's indices and index templates, so that runs do not pile up in the node's data
  for (const prefix of [`logs-chatify-test-${runId}`, `logs-chatify-restart-${runId}`]) {
    await fetch(`${opensearch}/${prefix}-*`, { method: "DELETE" }).catch(() => undefined)
    await fetch(`${opensearch}/_index_template/${prefix}`, { method: "DELETE" }).catch(() => undefined)
  }
})

const opensearchScript = (action: "start" | "stop") =>
  new Promise<void>((resolve, reject) => {
    execFile("bash", [script, action], { timeout: 180_000 }, (error, _stdout, stderr) =>
      error === null ? resolve() : reject(new Error(`opensearch.sh ${action}: ${error.message}\n${stderr}`)))
  })

interface Hit {
  readonly _source: Record<string, unknown>
}

/**
 * Documents of `index` matching the query string `q` (after a refresh), or [] while the index does
 * not exist or cannot answer yet (a new index whose shards have not started answers 503, no `hits`).
 */
const search = async (index: string, q: string): Promise<ReadonlyArray<Hit>> => {
  await fetch(`${opensearch}/${index}/_refresh`, { method: "POST" })
  const response = await fetch(`${opensearch}/${index}/_search?size=1000&q=${encodeURIComponent(q)}`)
  if (!response.ok) return []
  const body = (await response.json()) as { hits: { hits: ReadonlyArray<Hit> } }
  return body.hits.hits
}

/** Polls `read` until `done` holds (every 250 ms, for `withinMs` at most); returns the last reading. */
const waitUntil = async <A>(read: () => Promise<A>, done: (a: A) => boolean, withinMs: number): Promise<A> => {
  const deadline = Date.now() + withinMs
  let last = await read()
  while (!done(last) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    last = await read()
  }
  return last
}

describe("log sink to OpenSearch", () => {
  it(
    "a send with X-Correlation-ID: t-123 is findable by correlationId:t-123 in today's index; the last lines ship at shutdown",
    async () => {
      const prefix = `logs-chatify-test-${runId}`
      const dataDirectory = mkdtempSync(join(tmpdir(), "chatify-logs-"))
      directories.push(dataDirectory)
      const server = startServerProcess({
        CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory,
        CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0",
        CHATIFY__LOGGING__URI: opensearch,
        CHATIFY__LOGGING__INDEXPREFIX: prefix,
        // nothing ships on the interval during this test: what arrives was sent at shutdown
        CHATIFY__LOGGING__FLUSHINTERVALSECONDS: "600",
        CHATIFY__ENVIRONMENT: "test",
        POD_NAME: "pod-logs"
      }, children)
      const base = await server.listening
      const response = await fetch(`${base}/api/chat/send`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-correlation-id": "t-123" },
        body: JSON.stringify({ scopeType: 0, scopeId: "general", text: "hello logs" })
      })
      expect(response.status).toBe(200)
      const today = indexName(prefix, Date.now())
      server.child.kill("SIGTERM")
      expect(await server.exited).toBe(0)

      // stdout: one JSON object per line (stdout is a pipe here, so json is the default)
      const stdoutLines = server.output().split("\n").filter((line) => line.length > 0)
      for (const line of stdoutLines) {
        expect(JSON.parse(line)).toMatchObject({
          service: "chatapi",
          pod: "pod-logs",
          environment: "test",
          pid: server.child.pid
        })
      }

      const hits = await waitUntil(() => search(today, "correlationId:t-123"), (found) => found.length > 0, 20_000)
      expect(hits.map((hit) => hit._source)).toContainEqual(
        expect.objectContaining({
          correlationId: "t-123",
          level: "INFO",
          method: "POST",
          path: "/api/chat/send",
          status: 200,
          service: "chatapi",
          pod: "pod-logs",
          environment: "test"
        })
      )
      // the lines of the shutdown itself were shipped by the last flush
      const shutdown = await search(today, "message:\"draining in-flight sends\"")
      expect(shutdown.length).toBe(1)
      // the index template mapped ids as keywords and the timestamp as a date
      const mapping = (await (await fetch(`${opensearch}/${today}/_mapping`)).json()) as Record<
        string,
        { mappings: { properties: Record<string, { type: string }> } }
      >
      const properties = mapping[today]?.mappings.properties
      expect(properties?.["correlationId"]?.type).toBe("keyword")
      expect(properties?.["pod"]?.type).toBe("keyword")
      expect(properties?.["@timestamp"]?.type).toBe("date")
    },
    120_000
  )

  it(
    "survives the node being stopped and restarted: buffered lines arrive, or the drop counter says how many did not",
    async () => {
      const settings = (bufferSize: number): LogSinkSettings => ({
        uri: opensearch,
        username: Option.none(),
        password: Option.none(),
        indexPrefix: `logs-chatify-restart-${runId}`,
        batchSize: 50,
        flushInterval: Duration.millis(100),
        bufferSize,
        retryFor: Duration.minutes(5),
        requestTimeout: Duration.seconds(5),
        shutdownTimeout: Duration.seconds(5)
      })
      const index = indexName(`logs-chatify-restart-${runId}`, Date.now())
      const line = (sink: string, seq: number) =>
        JSON.stringify({ "@timestamp": new Date().toISOString(), level: "INFO", message: `line ${seq}`, sink, seq })
      const count = (sink: string) => search(index, `sink:${sink}`).then((hits) => hits.length)

      await Effect.runPromise(
        Effect.gen(function*() {
          const droppedBefore = (yield* Metric.value(LogSinkDroppedLines)).count
          // "roomy" holds everything logged during the outage, "tight" only its last 10 lines
          const roomy = yield* makeLogSink(settings(1_000))
          const tight = yield* makeLogSink(settings(10))
          for (let seq = 0; seq < 10; seq++) {
            roomy.offer(Date.now(), line("roomy", seq))
            tight.offer(Date.now(), line("tight", seq))
          }
          const shippedBefore = yield* Effect.promise(() =>
            waitUntil(() => Promise.all([count("roomy"), count("tight")]), ([r, t]) => r === 10 && t === 10, 30_000)
          )
          expect(shippedBefore).toEqual([10, 10])

          yield* Effect.promise(() => opensearchScript("stop"))
          const startedOffering = performance.now()
          for (let seq = 10; seq < 50; seq++) {
            roomy.offer(Date.now(), line("roomy", seq))
            tight.offer(Date.now(), line("tight", seq))
          }
          // logging while the node is away costs what it always costs: no waiting on the cluster
          expect(performance.now() - startedOffering).toBeLessThan(50)
          yield* Effect.promise(() => opensearchScript("start"))

          const [roomyStored, tightStored] = yield* Effect.promise(() =>
            waitUntil(
              () => Promise.all([count("roomy"), count("tight")]),
              ([r, t]) => r === 50 && t + tight.dropped() === 50,
              60_000
            )
          )
          expect(roomyStored).toBe(50)
          expect(roomy.dropped()).toBe(0)
          // the tight buffer kept the newest 10 of the 40 lines and counted the other 30
          expect(tight.dropped()).toBe(30)
          expect(tightStored).toBe(20)
          const stored = (yield* Effect.promise(() => search(index, "sink:tight"))).map((hit) =>
            Number(hit._source["seq"])
          )
          expect(stored.filter((seq) => seq >= 10).sort((a, b) => a - b)).toEqual([
            40,
            41,
            42,
            43,
            44,
            45,
            46,
            47,
            48,
            49
          ])
          expect((yield* Metric.value(LogSinkDroppedLines)).count - droppedBefore).toBe(tight.dropped())
        }).pipe(Effect.scoped, Effect.provide(FetchHttpClient.layer))
      )
    },
    240_000
  )
})
