import { Duration, Effect, Either, Layer, Option } from "effect"
import {
  AnalyticsSettings,
  AnalyticsTopics,
  ChatEventSource,
  ChatHistory,
  ChatPolicy,
  ConsumerHealth,
  CoreSettings,
  PodIdentity,
  DefaultScopePolicy,
  PresenceHeartbeat,
  RateLimitViolationFeed,
  STATS_WRITER,
  statsWriter,
  VIOLATION_RELAY,
  violationRelay,
  awaitHistoryDrained,
  awaitRunning,
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
  MemoryReadRateLimiter,
  UuidV7IdGenerator
} from "@chatify/adapters/memory"
import {
  analyticsMigrations,
  CassandraClient,
  CassandraHistory,
  CassandraScopeStats,
  chatMigrations
} from "@chatify/adapters/cassandra"
import { KafkaLogLayer } from "@chatify/adapters/kafka"
import {
  parseRedisConnectionString,
  RedisClient,
  redisClientOptions,
  RedisPodRegistry,
  RedisPresence,
  RedisRateLimiter,
  RedisReadRateLimiter,
  RedisSendDeduplicator
} from "@chatify/adapters/redis"
import {
  lockDataDirectory,
  makeSqliteLogJournal,
  SqliteCheckpointer,
  SqliteHistory,
  SqliteScopeStats,
  SqliteSendDeduplicator
} from "@chatify/adapters/sqlite"
import type { DependencyUnavailable } from "@chatify/domain"
import { hostname } from "node:os"
import { InvalidConfiguration, type ServerConfig } from "./Config.js"
import { authenticatorFor } from "./Auth.js"
import { ClientAddresses } from "./ClientAddress.js"
import { Limits } from "./Limits.js"
import { Identities, ReadinessChecks, type ReadinessImpact, ShutdownGate } from "./Runtime.js"

/** Identity and policy: plain values every other layer may need. */
export const Foundation = (config: ServerConfig) =>
  Layer.mergeAll(
    Layer.succeed(PodIdentity, { podId: config.podId }),
    Layer.succeed(ChatPolicy, config.policy),
    CoreSettings.layer({
      subscriberBufferSize: config.subscriberBufferSize,
      broadcastGroupPrefix: config.broker.broadcastConsumerGroupPrefix,
      historyWriterGroup: config.broker.historyWriterConsumerGroup,
      // On Kafka and Cassandra the history writer gathers 100 ms, and under load up to 1 s (or 5,000
      // records), so a scope's messages share unlogged batches and offsets one commit: Cassandra's
      // CPU per message falls from ~970 µs in batches of 100 to ~130 µs in batches of 5,000
      // (`pnpm bench:history`), which decides how many sends a co-located box sustains.
      ...(config.broker.useInMemoryBroker ? {} : {
        historyBatchWindow: Duration.millis(100),
        historyBatchMaxWindow: Duration.seconds(1),
        historyBatchSize: 5_000
      })
    }),
    ReadinessChecks.layer,
    AnalyticsSettings.layer({
      operators: new Set(config.analytics.operators),
      statsWriterGroup: config.analytics.statsConsumerGroup,
      violationsGroupPrefix: config.analytics.violationsConsumerGroupPrefix,
      recentViolations: config.analytics.recentViolations
    }),
    Limits.layer(config.limits),
    ClientAddresses.layer(config.trustedProxies)
  )

/**
 * Registers a readiness check, bound to the services it asks (resolved when the layer is built):
 * "unready" for what a send needs, "degraded" for what it can do without (see ReadinessImpact).
 */
const ready = <R>(name: string, impact: ReadinessImpact, check: Effect.Effect<void, DependencyUnavailable, R>) =>
  Layer.effectDiscard(
    Effect.gen(function*() {
      const context = yield* Effect.context<R>()
      yield* (yield* ReadinessChecks).register({ name, impact, check: Effect.provide(check, context) })
    })
  )

/** A layer together with the readiness check that asks what it provides. */
const withReadiness = <A, E, R, R2>(
  layer: Layer.Layer<A, E, R>,
  name: string,
  impact: ReadinessImpact,
  check: Effect.Effect<void, DependencyUnavailable, R2>
) => Layer.merge(layer, ready(name, impact, check).pipe(Layer.provide(layer)))

/** The log: the embedded, journaled log in the data directory, or Kafka. */
const EventLog = (config: ServerConfig) => {
  const log = config.broker.useInMemoryBroker
    ? MemoryLogLayerFrom(
      Effect.flatMap(
        makeSqliteLogJournal({ dataDirectory: config.dataDirectory }),
        (journal) => makeMemoryLog({ partitions: config.broker.partitions, journal })
      )
    )
    : KafkaLogLayer({
      brokers: config.broker.bootstrapServers,
      clientId: `chatify-${config.podId}`,
      topic: config.broker.topicName,
      deadLetterTopic: config.broker.deadLetterTopicName,
      partitions: config.broker.partitions,
      createTopics: config.broker.createTopics,
      produceLinger: Duration.millis(config.broker.lingerMs),
      analyticsTopics: {
        windowStats: config.analytics.statsTopic,
        rateLimitEvents: config.analytics.rateLimitEventsTopic
      },
      // the broadcast consumer's group (see broadcastConsumer): one pod's alone, or pods sharing a
      // POD_NAME would each get only part of the events for their subscribers
      exclusiveGroup: `${config.broker.broadcastConsumerGroupPrefix}-${config.podId}`
    }).pipe(
      Layer.mapError((error) =>
        error._tag === "ConsumerGroupInUse"
          ? new InvalidConfiguration({
            message: `POD_NAME: another live pod already runs as ${config.podId} (${error.message}); ` +
              "give every pod its own POD_NAME"
          })
          : error
      )
    )
  const name = config.broker.useInMemoryBroker ? "event-log" : "kafka"
  // a send is an append to the log: without it this pod cannot take a send
  return withReadiness(
    log,
    name,
    "unready",
    Effect.flatMap(ChatEventSource, (source) => Effect.asVoid(source.endOffsets))
  )
}

/**
 * The history and the analytics job's window stats: SQLite in the data directory, or
 * Cassandra/ScyllaDB (one session for both) when contact points are set.
 */
const History = (config: ServerConfig) => {
  const history = Option.match(config.database, {
    onNone: () =>
      Layer.merge(
        SqliteHistory.layer({ dataDirectory: config.dataDirectory }),
        SqliteScopeStats.layer({ dataDirectory: config.dataDirectory })
      ),
    onSome: (database) =>
      Layer.merge(CassandraHistory.layer(), CassandraScopeStats.layer).pipe(Layer.provide(CassandraClient.layer({
        contactPoints: database.contactPoints,
        port: database.port,
        keyspace: database.keyspace,
        localDataCenter: database.localDataCenter,
        consistency: database.consistency,
        replication: { class: "SimpleStrategy", replicationFactor: database.replicationFactor },
        applySchemaOnStartup: database.applySchemaOnStartup,
        failFastOnSchemaError: database.failFastOnSchemaError,
        schemaMigrationTableName: database.schemaMigrationTableName,
        migrations: [...chatMigrations, ...analyticsMigrations]
      })))
  })
  // the history writer retries what the log holds until the store is back: sends go on
  return withReadiness(history, "history-store", "degraded", Effect.flatMap(ChatHistory, (h) => h.ping))
}

/**
 * The Redis client of CHATIFY__CACHING__CONNECTIONSTRING: the original's StackExchange form
 * (`host:port,password=…,user=…,ssl=true`, `[::1]:6379`) or a `redis://` URL. Read from the
 * environment, a string the parser refuses never gets here (the configuration is refused).
 */
const RedisClientFrom = (connectionString: string) =>
  Either.match(parseRedisConnectionString(connectionString), {
    onLeft: (error) =>
      Layer.fail(new InvalidConfiguration({ message: `CHATIFY__CACHING__CONNECTIONSTRING: ${error.message}` })),
    onRight: (connection) => RedisClient.layer(redisClientOptions(connection))
  })

/**
 * Rate limits, presence, pod identity and send de-duplication: in this process (de-duplication in
 * SQLite in the data directory), or shared across pods in Redis.
 */
const LimitsAndPresence = (config: ServerConfig) =>
  Option.match(config.caching, {
    onNone: () =>
      Layer.mergeAll(
        MemoryRateLimiter(config.rateLimit),
        MemoryReadRateLimiter(config.readRateLimit),
        MemoryPresence({ ttlMillis: Duration.toMillis(config.presenceTtl) }),
        // sends by clientMessageId: in the data directory, so a repeat is recognized after a restart too
        SqliteSendDeduplicator.layer({
          dataDirectory: config.dataDirectory,
          windowSeconds: config.idempotencyWindowSeconds
        })
      ),
    onSome: ({ connectionString }) => {
      const client = RedisClientFrom(connectionString)
      return Layer.mergeAll(
        RedisRateLimiter(config.rateLimit),
        // reads under keys of their own, failing open or closed as sends do
        RedisReadRateLimiter({ ...config.readRateLimit, failOpen: config.rateLimit.failOpen }),
        RedisPresence({ ttlMillis: Duration.toMillis(config.presenceTtl), podId: config.podId }),
        RedisPodRegistry({ host: hostname() }),
        // sends by clientMessageId, shared by every pod; fails open like the rate limiter
        RedisSendDeduplicator({ windowSeconds: config.idempotencyWindowSeconds }),
        // rate limits fail open (or refuse sends, CHATIFY__RATELIMIT__FAILOPEN=false), presence waits
        ready("redis", "degraded", Effect.flatMap(RedisClient, (redis) => redis.ping))
      ).pipe(Layer.provide(client))
    }
  })

/**
 * The embedded data directory, held by this process while the journal or the SQLite history use
 * it: a second process on the same directory refuses to start (see lockDataDirectory).
 */
const DataDirectoryLock = (config: ServerConfig) =>
  config.broker.useInMemoryBroker || Option.isNone(config.database)
    ? Layer.scopedDiscard(
      lockDataDirectory(config.dataDirectory).pipe(
        Effect.catchTag("DataDirectoryLocked", (locked) =>
          Effect.fail(
            new InvalidConfiguration({
              message: `CHATIFY__EMBEDDED__DATADIRECTORY: ${locked.message}; ` +
                "stop it or give this process a directory of its own"
            })
          ))
      )
    )
    : Layer.empty

/**
 * The adapters behind the ports, each picked by its configuration; the data directory locked
 * first. The SQLite databases of the embedded default (log journal, history, idempotency) share
 * one checkpoint worker, which starts with the first of them.
 */
export const Infrastructure = (config: ServerConfig) =>
  Layer.mergeAll(EventLog(config), History(config), LimitsAndPresence(config)).pipe(
    Layer.provide(Layer.merge(DataDirectoryLock(config), SqliteCheckpointer.layer))
  )

/** What every interface needs besides the infrastructure: fan-out, ids, authorization, health. */
export const ApplicationServices = (config: ServerConfig) =>
  Layer.mergeAll(
    MemoryFanout,
    UuidV7IdGenerator,
    DefaultScopePolicy,
    ConsumerHealth.layer,
    PresenceHeartbeat.layer,
    RateLimitViolationFeed.layer,
    ShutdownGate.layerWith(config.limits.maxSendsInFlight),
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
 *
 * The layer is built once the broadcast consumer runs (its start offsets fixed, its partitions
 * assigned), so the routes built after it acknowledge no subscription before: a subscription's
 * position is then never below where the broadcast starts, and every event after it arrives live.
 */
export const Consumers = (config: ServerConfig) =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      yield* Effect.forkScoped(supervise("broadcast", broadcastConsumer))
      yield* Effect.forkScoped(supervise("history-writer", historyWriter))
      // the analytics job's topics, in Kafka mode: its window stats stored, its violations relayed
      const analyticsTopics = yield* Effect.serviceOption(AnalyticsTopics)
      if (Option.isSome(analyticsTopics) && config.analytics.enabled) {
        const topics = analyticsTopics.value
        const withTopics = <A, E, R>(consumer: Effect.Effect<A, E, R>) =>
          Effect.provideService(consumer, AnalyticsTopics, topics)
        yield* Effect.forkScoped(supervise(STATS_WRITER, withTopics(statsWriter)))
        yield* Effect.forkScoped(supervise(VIOLATION_RELAY, withTopics(violationRelay)))
      }
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
      yield* awaitRunning("broadcast")
    })
  )
