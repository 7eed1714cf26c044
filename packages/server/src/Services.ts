import { Duration, Effect, Layer, Option } from "effect"
import {
  ChatEventSource,
  ChatHistory,
  ChatPolicy,
  ConsumerHealth,
  CoreSettings,
  PodIdentity,
  DefaultScopePolicy,
  PresenceHeartbeat,
  awaitHistoryDrained,
  broadcastConsumer,
  historyWriter,
  supervise
} from "@chatify/core"
import {
  makeMemoryLog,
  MemoryFanout,
  MemoryLogLayerFrom,
  MemoryPresence,
  MemoryRateLimiter,
  UuidV7IdGenerator
} from "@chatify/adapters/memory"
import { CassandraHistory } from "@chatify/adapters/cassandra"
import { KafkaLogLayer } from "@chatify/adapters/kafka"
import { RedisClient, type RedisClientOptions, RedisPodRegistry, RedisPresence, RedisRateLimiter } from "@chatify/adapters/redis"
import { makeSqliteLogJournal, SqliteHistory } from "@chatify/adapters/sqlite"
import type { DependencyUnavailable } from "@chatify/domain"
import { hostname } from "node:os"
import type { ServerConfig } from "./Config.js"
import { authenticatorFor } from "./Auth.js"
import { Identities, ReadinessChecks, ShutdownGate } from "./Runtime.js"

/** Identity and policy: plain values every other layer may need. */
export const Foundation = (config: ServerConfig) =>
  Layer.mergeAll(
    Layer.succeed(PodIdentity, { podId: config.podId }),
    Layer.succeed(ChatPolicy, config.policy),
    CoreSettings.layer({
      subscriberBufferSize: config.subscriberBufferSize,
      broadcastGroupPrefix: config.broker.broadcastConsumerGroupPrefix,
      // On Kafka and Cassandra a write is a network round trip: the history writer gathers 100 ms
      // (or 1,000 records), so a scope's messages share unlogged batches and offsets one commit.
      ...(config.broker.useInMemoryBroker ? {} : { historyBatchWindow: Duration.millis(100), historyBatchSize: 1_000 })
    }),
    ReadinessChecks.layer
  )

/** Registers a readiness check, bound to the services it asks (resolved when the layer is built). */
const ready = <R>(name: string, check: Effect.Effect<void, DependencyUnavailable, R>) =>
  Layer.effectDiscard(
    Effect.gen(function*() {
      const context = yield* Effect.context<R>()
      yield* (yield* ReadinessChecks).register({ name, check: Effect.provide(check, context) })
    })
  )

/** A layer together with the readiness check that asks what it provides. */
const withReadiness = <A, E, R, R2>(
  layer: Layer.Layer<A, E, R>,
  name: string,
  check: Effect.Effect<void, DependencyUnavailable, R2>
) => Layer.merge(layer, ready(name, check).pipe(Layer.provide(layer)))

/** The log: the embedded, journaled log in the data directory, or Kafka. */
const EventLog = (config: ServerConfig) => {
  const log = config.broker.useInMemoryBroker
    ? MemoryLogLayerFrom(
      Effect.flatMap(makeSqliteLogJournal({ dataDirectory: config.dataDirectory }), (journal) =>
        makeMemoryLog({ partitions: config.broker.partitions, journal }))
    )
    : KafkaLogLayer({
      brokers: config.broker.bootstrapServers,
      clientId: `chatify-${config.podId}`,
      topic: config.broker.topicName,
      deadLetterTopic: config.broker.deadLetterTopicName,
      partitions: config.broker.partitions,
      createTopics: config.broker.createTopics
    })
  const name = config.broker.useInMemoryBroker ? "event-log" : "kafka"
  return withReadiness(log, name, Effect.flatMap(ChatEventSource, (source) => Effect.asVoid(source.endOffsets)))
}

/** The history: SQLite in the data directory, or Cassandra/ScyllaDB when contact points are set. */
const History = (config: ServerConfig) => {
  const history = Option.match(config.database, {
    onNone: () => SqliteHistory.layer({ dataDirectory: config.dataDirectory }),
    onSome: (database) =>
      CassandraHistory.layerWithClient({
        contactPoints: database.contactPoints,
        port: database.port,
        keyspace: database.keyspace,
        localDataCenter: database.localDataCenter,
        consistency: database.consistency,
        replication: { class: "SimpleStrategy", replicationFactor: database.replicationFactor },
        applySchemaOnStartup: database.applySchemaOnStartup,
        failFastOnSchemaError: database.failFastOnSchemaError,
        schemaMigrationTableName: database.schemaMigrationTableName
      })
  })
  return withReadiness(history, "history-store", Effect.flatMap(ChatHistory, (h) => h.ping))
}

/** `host:port[,password=…]` (the original's StackExchange form) or a `redis://` URL. */
export const redisOptionsFrom = (connectionString: string): RedisClientOptions => {
  if (/^rediss?:\/\//u.test(connectionString)) return { url: connectionString }
  const [endpoint = "", ...settings] = connectionString.split(",").map((part) => part.trim())
  const password = settings.find((setting) => setting.toLowerCase().startsWith("password="))?.slice("password=".length)
  const [host = "127.0.0.1", port = "6379"] = endpoint.split(":")
  const auth = password === undefined ? "" : `:${encodeURIComponent(password)}@`
  return { url: `redis://${auth}${host}:${port}` }
}

/** Rate limits, presence and pod identity: in memory, or shared across pods in Redis. */
const LimitsAndPresence = (config: ServerConfig) =>
  Option.match(config.caching, {
    onNone: () =>
      Layer.merge(MemoryRateLimiter(config.rateLimit), MemoryPresence({ ttlMillis: Duration.toMillis(config.presenceTtl) })),
    onSome: ({ connectionString }) => {
      const client = RedisClient.layer(redisOptionsFrom(connectionString))
      return Layer.mergeAll(
        RedisRateLimiter(config.rateLimit),
        RedisPresence({ ttlMillis: Duration.toMillis(config.presenceTtl), podId: config.podId }),
        RedisPodRegistry({ host: hostname() }),
        ready("redis", Effect.flatMap(RedisClient, (redis) => redis.ping))
      ).pipe(Layer.provide(client))
    }
  })

/** The adapters behind the ports, each picked by its configuration. */
export const Infrastructure = (config: ServerConfig) =>
  Layer.mergeAll(EventLog(config), History(config), LimitsAndPresence(config))

/** What every interface needs besides the infrastructure: fan-out, ids, authorization, health. */
export const ApplicationServices = (config: ServerConfig) =>
  Layer.mergeAll(
    MemoryFanout,
    UuidV7IdGenerator,
    DefaultScopePolicy,
    ConsumerHealth.layer,
    PresenceHeartbeat.layer,
    ShutdownGate.layer,
    Identities.layer,
    authenticatorFor(config.auth)
  )

/** Every service of a server, without the HTTP part: for tests and tools that drive core directly. */
export const ServerServices = (config: ServerConfig) =>
  ApplicationServices(config).pipe(
    Layer.provideMerge(Infrastructure(config)),
    Layer.provideMerge(Foundation(config))
  )

/**
 * The broadcast consumer and the history writer, supervised. On shutdown the history writer gets
 * a bounded grace to store what the log already holds before it is stopped.
 */
export const Consumers = (config: ServerConfig) =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      yield* Effect.forkScoped(supervise("broadcast", broadcastConsumer))
      yield* Effect.forkScoped(supervise("history-writer", historyWriter))
      yield* Effect.addFinalizer(() =>
        awaitHistoryDrained(config.shutdownGrace).pipe(
          Effect.flatMap((drained) =>
            drained
              ? Effect.logInfo("History writer drained")
              : Effect.logWarning("History writer did not drain in time; it resumes from its commit on restart")
          ),
          Effect.ignore
        )
      )
    })
  )
