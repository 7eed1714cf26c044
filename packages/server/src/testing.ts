/**
 * An embedded Chatify for tests, on 127.0.0.1 and a free port with its own data directory: for
 * this repository's tests and for other services that want a real chat server in theirs.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import { Context, Duration, Effect, Layer, Option, Schedule, type Scope, Redacted } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { HISTORY_WRITER_GROUP, STATS_WRITER_GROUP } from "@chatify/core"
import { defaultPolicyLimits } from "@chatify/domain"
import type { AuthSettings } from "./Auth.js"
import type { ServerConfig } from "./Config.js"
import { defaultLimitSettings } from "./Limits.js"
import { ChatServer, NodeServer } from "./Server.js"

export interface TestServer {
  readonly port: number
  /** The RPC WebSocket endpoint, e.g. ws://127.0.0.1:40123/rpc */
  readonly wsUrl: string
  /** The HTTP base, e.g. http://127.0.0.1:40123 */
  readonly httpUrl: string
  readonly dataDirectory: string
  readonly config: ServerConfig
}

/** A fresh directory under the OS temp dir, removed with the scope. */
export const makeTempDirectory = (prefix = "chatify-sdk-"): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), prefix))),
    (directory) => Effect.promise(() => rm(directory, { recursive: true, force: true }))
  )

/** The embedded server's configuration for tests: no meaningful rate limits, short shutdown grace, no drain delay. */
export const testServerConfig = (dataDirectory: string, overrides: Partial<ServerConfig> = {}): ServerConfig => ({
  port: 0,
  host: "127.0.0.1",
  podId: "pod-test",
  broker: {
    useInMemoryBroker: true,
    bootstrapServers: [],
    topicName: "chat-events",
    deadLetterTopicName: "chat-events-dlq",
    partitions: 3,
    broadcastConsumerGroupPrefix: "chatify-broadcast",
    historyWriterConsumerGroup: HISTORY_WRITER_GROUP,
    createTopics: false,
    lingerMs: 5
  },
  dataDirectory,
  policy: defaultPolicyLimits,
  idempotencyWindowSeconds: 300,
  rateLimit: { limit: 1_000_000, windowSeconds: 60, failOpen: true },
  readRateLimit: { limit: 1_000_000, windowSeconds: 60 },
  caching: Option.none(),
  database: Option.none(),
  presenceTtl: Duration.seconds(300),
  subscriberBufferSize: 8192,
  shutdownGrace: Duration.seconds(5),
  // no load balancer routes to a test server: shutdown drains at once
  shutdownDrainDelay: Duration.zero,
  auth: Option.none(),
  limits: defaultLimitSettings,
  trustedProxies: [],
  analytics: {
    enabled: true,
    statsTopic: "chat-analytics",
    rateLimitEventsTopic: "chat-rate-limit-events",
    statsConsumerGroup: STATS_WRITER_GROUP,
    violationsConsumerGroupPrefix: "chatify-violations",
    recentViolations: 100,
    operators: []
  },
  ...overrides
})

/** Polls GET /health/ready until it answers 200; the server is usable from then on. */
export const awaitReady = (httpUrl: string, within: Duration.DurationInput = "15 seconds"): Effect.Effect<void> =>
  Effect.tryPromise(() => fetch(`${httpUrl}/health/ready`).then((response) => response.status)).pipe(
    Effect.orElseSucceed(() => 0),
    Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (status) => status === 200 }),
    Effect.timeoutFail({ duration: within, onTimeout: () => new Error(`${httpUrl} did not become ready`) }),
    Effect.orDie,
    Effect.asVoid
  )

/**
 * Starts `ChatServer` on 127.0.0.1, port 0, and waits until it is ready. It stops when the scope
 * closes; pass `dataDirectory` to restart on the data of an earlier server.
 */
export const startTestServer = (
  options: { readonly dataDirectory?: string; readonly config?: Partial<ServerConfig> } = {}
): Effect.Effect<TestServer, never, Scope.Scope> =>
  Effect.gen(function*() {
    const dataDirectory = options.dataDirectory ?? (yield* makeTempDirectory())
    const config = testServerConfig(dataDirectory, options.config)
    const context = yield* Layer.build(
      ChatServer(config).pipe(Layer.provideMerge(NodeServer(config)))
    ).pipe(Effect.orDie)
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("the test server is not on TCP")
    const httpUrl = `http://127.0.0.1:${address.port}`
    yield* awaitReady(httpUrl)
    return { port: address.port, wsUrl: `ws://127.0.0.1:${address.port}/rpc`, httpUrl, dataDirectory, config }
  })

/** HS256 authentication with a shared secret and no clock skew, as tests want it. */
export const hs256TestAuth = (secret: string): AuthSettings => ({
  keys: { _tag: "Secret", secret: Redacted.make(secret) },
  issuer: undefined,
  audience: undefined,
  algorithms: undefined,
  clockSkewSeconds: 0,
  requireExpiration: true
})
