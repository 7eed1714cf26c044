/**
 * A slow or dead log cluster never slows a send: three servers, one logging to no sink, one to a
 * port nothing listens on, one to a server that accepts connections and never answers, take
 * interleaved sends, and their latencies are compared.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, FiberRef, HashSet, Option } from "effect"
import { createServer, type Socket } from "node:net"
import { type LogSinkService, makeLogSink } from "@chatify/adapters/logging"
import { type LogEnrichment, makeLineLogger } from "../src/Logging.js"
import { startTestServer } from "../src/testing.js"
import { freePort } from "./support/serverProcess.js"

const enrichment: LogEnrichment = { service: "chatapi", pod: "pod-test", environment: "test", pid: process.pid }

/** A TCP server that accepts every connection and never answers: a cluster that hangs. */
const hangingServer = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly close: () => void }>((resume) => {
    const sockets: Array<Socket> = []
    const server = createServer((socket) => sockets.push(socket))
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resume(Effect.succeed({
        url: `http://127.0.0.1:${port}`,
        close: () => {
          for (const socket of sockets) socket.destroy()
          server.close()
        }
      }))
    })
  }),
  (server) => Effect.sync(server.close)
)

const sinkTo = (uri: string) =>
  makeLogSink({
    uri,
    username: Option.none(),
    password: Option.none(),
    indexPrefix: "logs-chatify-unreachable",
    batchSize: 10,
    flushInterval: Duration.millis(50),
    // small, so that the lines of this test overflow it: proof that they reached the sink
    bufferSize: 20,
    retryFor: Duration.minutes(5),
    requestTimeout: Duration.seconds(30),
    shutdownTimeout: Duration.millis(200)
  }).pipe(Effect.provide(FetchHttpClient.layer))

/** A test server whose log lines (request lines included) go through the JSON logger to `sink`. */
const serverLoggingTo = (sink: Option.Option<LogSinkService>) =>
  Effect.locallyWith(
    startTestServer(),
    FiberRef.currentLoggers,
    () => HashSet.make(makeLineLogger("json", enrichment, sink))
  )

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0

describe("log sink with an unreachable cluster", () => {
  it.scopedLive(
    "sends are as fast as without a sink, whether the cluster refuses connections or never answers",
    () =>
      Effect.gen(function*() {
        const hanging = yield* hangingServer
        const deadSink = yield* sinkTo(`http://127.0.0.1:${yield* Effect.promise(freePort)}`)
        const hangingSink = yield* sinkTo(hanging.url)
        const servers = {
          none: yield* serverLoggingTo(Option.none()),
          dead: yield* serverLoggingTo(Option.some(deadSink)),
          hanging: yield* serverLoggingTo(Option.some(hangingSink))
        }
        const latencies: Record<keyof typeof servers, Array<number>> = { none: [], dead: [], hanging: [] }
        const send = (name: keyof typeof servers, i: number) =>
          Effect.promise(async () => {
            const started = performance.now()
            const response = await fetch(`${servers[name].httpUrl}/api/chat/send`, {
              method: "POST",
              headers: { "content-type": "application/json", "x-correlation-id": `dead-${name}-${i}` },
              body: JSON.stringify({ scopeType: 0, scopeId: "general", text: `message ${i}` })
            })
            await response.arrayBuffer()
            latencies[name].push(performance.now() - started)
            expect(response.status).toBe(200)
          })
        const order: ReadonlyArray<keyof typeof servers> = ["none", "dead", "hanging"]
        // warm-up, then interleaved rounds (rotating who goes first) so that load on the machine hits all three alike
        for (let i = 0; i < 5; i++) for (const name of order) yield* send(name, i)
        for (const name of order) latencies[name].length = 0
        for (let i = 0; i < 40; i++) {
          for (let j = 0; j < order.length; j++) yield* send(order[(i + j) % order.length] ?? "none", i)
        }
        const baseline = median(latencies.none)
        // the request lines did reach both sinks (and overflowed their buffers of 20)
        expect(deadSink.dropped()).toBeGreaterThan(0)
        expect(hangingSink.dropped()).toBeGreaterThan(0)
        expect(median(latencies.dead)).toBeLessThan(baseline * 1.5 + 2)
        expect(median(latencies.hanging)).toBeLessThan(baseline * 1.5 + 2)
        // nothing waits on the request timeout of the hanging cluster
        expect(Math.max(...latencies.hanging)).toBeLessThan(5_000)
      }),
    { timeout: 120_000 }
  )
})
