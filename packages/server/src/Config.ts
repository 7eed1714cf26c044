import { Config, ConfigError, ConfigProvider, Data, Duration, Effect, Either, Layer, LogLevel, Option } from "effect"
import { hostname } from "node:os"
import { consistencyName, parseConsistency } from "@chatify/adapters/cassandra"
import { defaultLogSinkTuning } from "@chatify/adapters/logging"
import { parseRedisConnectionString } from "@chatify/adapters/redis"
import { HISTORY_WRITER_GROUP, STATS_WRITER_GROUP } from "@chatify/core"
import { defaultPolicyLimits, type PolicyLimits } from "@chatify/domain"
import { authConfig, type AuthSettings } from "./Auth.js"
import { parseTrustedProxy } from "./ClientAddress.js"
import { defaultLimitSettings, type LimitSettings } from "./Limits.js"
import type { LoggingSettings } from "./Logging.js"

export interface DatabaseConfig {
  readonly contactPoints: ReadonlyArray<string>
  readonly port: number
  readonly keyspace: string
  readonly localDataCenter: string
  readonly consistency: string
  readonly replicationFactor: number
  readonly applySchemaOnStartup: boolean
  readonly failFastOnSchemaError: boolean
  readonly schemaMigrationTableName: string
}

/** Everything the server reads from its environment (names as in the original design, `__` as delimiter). */
export interface ServerConfig {
  readonly port: number
  readonly host: string
  readonly podId: string
  readonly broker: {
    readonly useInMemoryBroker: boolean
    /** Kafka brokers; required (and only used) when the in-memory broker is off. */
    readonly bootstrapServers: ReadonlyArray<string>
    readonly topicName: string
    readonly deadLetterTopicName: string
    readonly partitions: number
    readonly broadcastConsumerGroupPrefix: string
    /** The history writers' consumer group, one for every pod of a deployment. */
    readonly historyWriterConsumerGroup: string
    /** Create missing topics at startup instead of refusing to start (development). */
    readonly createTopics: boolean
    /** Least time between two produce requests' starts; sends within it share one (linger.ms). */
    readonly lingerMs: number
  }
  readonly dataDirectory: string
  readonly policy: PolicyLimits
  /**
   * How long a send with a clientMessageId is remembered (CHATIFY__CHAT__IDEMPOTENCYWINDOWSECONDS):
   * a repeat by the same sender within it returns the first result and writes nothing.
   */
  readonly idempotencyWindowSeconds: number
  readonly rateLimit: { readonly limit: number; readonly windowSeconds: number; readonly failOpen: boolean }
  /**
   * Reads (Subscribe, History, Presence) per caller in a window of their own
   * (CHATIFY__RATELIMIT__READLIMIT / __READWINDOWSECONDS), counted as sends are; fails open as they do.
   */
  readonly readRateLimit: { readonly limit: number; readonly windowSeconds: number }
  /** Cassandra/ScyllaDB (CHATIFY__DATABASE__CONTACTPOINTS) for the history; none = SQLite. */
  readonly database: Option.Option<DatabaseConfig>
  /** Redis (CHATIFY__CACHING__CONNECTIONSTRING) for rate limits, presence and pod identity; none = in memory. */
  readonly caching: Option.Option<{ readonly connectionString: string }>
  readonly presenceTtl: Duration.Duration
  readonly subscriberBufferSize: number
  readonly shutdownGrace: Duration.Duration
  /**
   * From SIGTERM, how long the pod keeps serving with /health/ready at 503 before the drain starts:
   * the time load balancers (Kubernetes endpoints) take to stop routing here.
   */
  readonly shutdownDrainDelay: Duration.Duration
  /** JWT settings; none means anonymous identities, as in the original design. */
  readonly auth: Option.Option<AuthSettings>
  /** CHATIFY__LIMITS__*: what one client may hold or send at most. */
  readonly limits: LimitSettings
  /** Proxies whose X-Forwarded-For is believed (CHATIFY__HTTP__TRUSTEDPROXIES): addresses or CIDR ranges. */
  readonly trustedProxies: ReadonlyArray<string>
  /** CHATIFY__ANALYTICS__*: the analytics job's topics (read in Kafka mode) and who may watch violations. */
  readonly analytics: AnalyticsConfig
}

export interface AnalyticsConfig {
  /** Read the job's topics (Kafka mode only); CHATIFY__ANALYTICS__ENABLED, default true. */
  readonly enabled: boolean
  readonly statsTopic: string
  readonly rateLimitEventsTopic: string
  readonly statsConsumerGroup: string
  readonly violationsConsumerGroupPrefix: string
  readonly recentViolations: number
  /** User ids (the token's sub) allowed to call RateLimitViolations. */
  readonly operators: ReadonlyArray<string>
}

// Validation sits inside Config.nested(…, name) so that its error carries the key's path.
const positiveInt = (name: string, fallback: number) =>
  Config.nested(
    Config.integer().pipe(Config.validate({ message: "must be a positive integer", validation: (n) => n > 0 })),
    name
  ).pipe(Config.withDefault(fallback))

const nonEmpty = (name: string, fallback: string) =>
  Config.nested(
    Config.string().pipe(Config.validate({ message: "must not be empty", validation: (s) => s.trim().length > 0 })),
    name
  ).pipe(Config.withDefault(fallback))

/** A duration in seconds, 0 or more, fractions allowed (0.5). */
const seconds = (name: string, fallback: number) =>
  Config.nested(
    Config.number().pipe(
      Config.validate({
        message: "must be a number of seconds, 0 or more",
        validation: (n) => Number.isFinite(n) && n >= 0
      })
    ),
    name
  ).pipe(Config.withDefault(fallback), Config.map(Duration.seconds))

/**
 * The Redis connection string, refused at startup when it says something the client would not
 * honour (several endpoints, an unbracketed IPv6 address, an unknown option) instead of misreading it.
 */
const redisConnectionString = (name: string) =>
  Config.nested(
    Config.nonEmptyString().pipe(
      Config.mapOrFail((text) =>
        Either.match(parseRedisConnectionString(text), {
          onLeft: (error) => Either.left(ConfigError.InvalidData([], error.message)),
          onRight: () => Either.right(text)
        })
      )
    ),
    name
  )

/**
 * Every history write runs at this level: ANY acknowledges a write no replica holds (a read
 * cannot find it), SERIAL and LOCAL_SERIAL are only for the Paxos phase of lightweight
 * transactions and are refused by Cassandra for a plain write.
 */
const NOT_FOR_WRITES: ReadonlyArray<string> = ["ANY", "SERIAL", "LOCAL_SERIAL"]

const writeConsistency = (name: string, fallback: string) =>
  Config.nested(
    Config.string().pipe(
      Config.mapOrFail((text) => {
        const level = parseConsistency(text)
        if (Option.isNone(level)) {
          return Either.left(ConfigError.InvalidData([], `"${text}" is not a consistency level`))
        }
        const cqlName = consistencyName(level.value)
        return NOT_FOR_WRITES.includes(cqlName)
          ? Either.left(
            ConfigError.InvalidData(
              [],
              `${cqlName} cannot be used for the history's writes (ANY, SERIAL and LOCAL_SERIAL are refused); use LOCAL_QUORUM, QUORUM, ONE, …`
            )
          )
          : Either.right(text)
      })
    ),
    name
  ).pipe(Config.withDefault(fallback))

export const serverConfig: Config.Config<ServerConfig> = Config.all({
  port: Config.nested(
    Config.integer().pipe(
      Config.validate({ message: "must be a TCP port (0 picks a free one)", validation: (n) => n >= 0 && n <= 65535 })
    ),
    "PORT"
  ).pipe(Config.withDefault(8080)),
  host: nonEmpty("HOST", "0.0.0.0"),
  podId: nonEmpty("POD_NAME", hostname()),
  chatify: Config.nested(
    Config.all({
      broker: Config.nested(
        Config.all({
          useInMemoryBroker: Config.option(Config.boolean("USEINMEMORYBROKER")),
          bootstrapServers: Config.option(Config.array(Config.nonEmptyString(), "BOOTSTRAPSERVERS")),
          topicName: nonEmpty("TOPICNAME", "chat-events"),
          deadLetterTopicName: Config.option(Config.nonEmptyString("DEADLETTERTOPICNAME")),
          createTopics: Config.boolean("CREATETOPICS").pipe(Config.withDefault(false)),
          partitions: positiveInt("PARTITIONS", 3),
          broadcastConsumerGroupPrefix: nonEmpty("BROADCASTCONSUMERGROUPPREFIX", "chatify-broadcast"),
          historyWriterConsumerGroup: nonEmpty("HISTORYWRITERCONSUMERGROUP", HISTORY_WRITER_GROUP),
          lingerMs: Config.nested(
            Config.integer().pipe(
              Config.validate({
                message: "must be a whole number of milliseconds, 0 or more",
                validation: (n) => n >= 0
              })
            ),
            "LINGERMS"
          ).pipe(Config.withDefault(5))
        }),
        "MESSAGEBROKER"
      ),
      dataDirectory: Config.nested(nonEmpty("DATADIRECTORY", "./data"), "EMBEDDED"),
      policy: Config.nested(
        Config.all({
          maxIdLength: positiveInt("MAXIDLENGTH", defaultPolicyLimits.maxIdLength),
          maxTextLength: positiveInt("MAXTEXTLENGTH", defaultPolicyLimits.maxTextLength)
        }),
        "CHAT"
      ),
      idempotencyWindowSeconds: Config.nested(positiveInt("IDEMPOTENCYWINDOWSECONDS", 300), "CHAT"),
      rateLimit: Config.nested(
        Config.all({
          limit: positiveInt("LIMIT", 100),
          windowSeconds: positiveInt("WINDOWSECONDS", 60),
          failOpen: Config.boolean("FAILOPEN").pipe(Config.withDefault(true))
        }),
        "RATELIMIT"
      ),
      readRateLimit: Config.nested(
        Config.all({
          limit: positiveInt("READLIMIT", 600),
          windowSeconds: positiveInt("READWINDOWSECONDS", 60)
        }),
        "RATELIMIT"
      ),
      caching: Config.nested(Config.option(redisConnectionString("CONNECTIONSTRING")), "CACHING"),
      database: Config.nested(
        Config.all({
          contactPoints: Config.option(Config.array(Config.nonEmptyString(), "CONTACTPOINTS")),
          port: positiveInt("PORT", 9042),
          keyspace: nonEmpty("KEYSPACE", "chatify"),
          localDataCenter: nonEmpty("LOCALDATACENTER", "datacenter1"),
          consistency: writeConsistency("CONSISTENCY", "LOCAL_QUORUM"),
          replicationFactor: positiveInt("REPLICATIONFACTOR", 1)
        }),
        "DATABASE"
      ),
      scylla: Config.nested(
        Config.all({
          applySchemaOnStartup: Config.boolean("APPLYSCHEMAONSTARTUP").pipe(Config.withDefault(true)),
          failFastOnSchemaError: Config.boolean("FAILFASTONSCHEMAERROR").pipe(Config.withDefault(true)),
          schemaMigrationTableName: nonEmpty("SCHEMAMIGRATIONTABLENAME", "schema_migrations")
        }),
        "SCYLLA"
      ),
      presenceTtlSeconds: Config.nested(positiveInt("TTLSECONDS", 300), "PRESENCE"),
      subscriberBufferSize: Config.nested(positiveInt("SUBSCRIBERBUFFERSIZE", 8192), "FANOUT"),
      shutdownGraceSeconds: Config.nested(positiveInt("GRACESECONDS", 10), "SHUTDOWN"),
      shutdownDrainDelay: Config.nested(seconds("DRAINDELAYSECONDS", 5), "SHUTDOWN"),
      limits: Config.nested(
        Config.all({
          maxFrameBytes: positiveInt("MAXFRAMEBYTES", defaultLimitSettings.maxFrameBytes),
          maxBodyBytes: positiveInt("MAXBODYBYTES", defaultLimitSettings.maxBodyBytes),
          maxInboundBytes: positiveInt("MAXINBOUNDBYTES", defaultLimitSettings.maxInboundBytes),
          maxConcurrentRequestsPerConnection: positiveInt(
            "MAXCONCURRENTREQUESTSPERCONNECTION",
            defaultLimitSettings.maxConcurrentRequestsPerConnection
          ),
          maxSubscriptionsPerConnection: positiveInt(
            "MAXSUBSCRIPTIONSPERCONNECTION",
            defaultLimitSettings.maxSubscriptionsPerConnection
          ),
          maxConnectionsPerAddress: positiveInt(
            "MAXCONNECTIONSPERADDRESS",
            defaultLimitSettings.maxConnectionsPerAddress
          ),
          maxConnectsPerSecondPerAddress: positiveInt(
            "MAXCONNECTSPERSECONDPERADDRESS",
            defaultLimitSettings.maxConnectsPerSecondPerAddress
          ),
          subscriptionAckTimeoutSeconds: positiveInt(
            "SUBSCRIPTIONACKTIMEOUTSECONDS",
            defaultLimitSettings.subscriptionAckTimeoutSeconds
          ),
          maxSendsInFlight: positiveInt("MAXSENDSINFLIGHT", defaultLimitSettings.maxSendsInFlight)
        }),
        "LIMITS"
      ),
      analytics: Config.nested(
        Config.all({
          enabled: Config.boolean("ENABLED").pipe(Config.withDefault(true)),
          statsTopic: nonEmpty("SCOPESTATSTOPIC", "chat-analytics"),
          rateLimitEventsTopic: nonEmpty("RATELIMITEVENTSTOPIC", "chat-rate-limit-events"),
          statsConsumerGroup: nonEmpty("STATSCONSUMERGROUP", STATS_WRITER_GROUP),
          violationsConsumerGroupPrefix: nonEmpty("VIOLATIONSCONSUMERGROUPPREFIX", "chatify-violations"),
          recentViolations: positiveInt("RECENTVIOLATIONS", 100),
          operators: Config.array(Config.nonEmptyString(), "OPERATORS").pipe(Config.withDefault([]))
        }),
        "ANALYTICS"
      ),
      trustedProxies: Config.nested(
        Config.array(
          Config.string().pipe(
            Config.validate({
              message: "must be IP addresses or CIDR ranges (10.0.0.0/8, fd00::/8), comma-separated",
              validation: (entry) => parseTrustedProxy(entry) !== undefined
            })
          ),
          "TRUSTEDPROXIES"
        ).pipe(Config.withDefault([])),
        "HTTP"
      )
    }),
    "CHATIFY"
  ),
  auth: authConfig
}).pipe(
  Config.map(({ auth, chatify, host, podId, port }): ServerConfig => ({
    port,
    host,
    podId,
    broker: {
      // unset: Kafka exactly when brokers are configured (unset endpoints mean the embedded default)
      useInMemoryBroker: Option.getOrElse(
        chatify.broker.useInMemoryBroker,
        () => Option.isNone(chatify.broker.bootstrapServers)
      ),
      bootstrapServers: Option.getOrElse(chatify.broker.bootstrapServers, () => []),
      topicName: chatify.broker.topicName,
      deadLetterTopicName: Option.getOrElse(
        chatify.broker.deadLetterTopicName,
        () => `${chatify.broker.topicName}-dlq`
      ),
      partitions: chatify.broker.partitions,
      broadcastConsumerGroupPrefix: chatify.broker.broadcastConsumerGroupPrefix,
      historyWriterConsumerGroup: chatify.broker.historyWriterConsumerGroup,
      createTopics: chatify.broker.createTopics,
      lingerMs: chatify.broker.lingerMs
    },
    dataDirectory: chatify.dataDirectory,
    policy: chatify.policy,
    idempotencyWindowSeconds: chatify.idempotencyWindowSeconds,
    rateLimit: chatify.rateLimit,
    readRateLimit: chatify.readRateLimit,
    caching: Option.map(chatify.caching, (connectionString) => ({ connectionString })),
    database: Option.map(chatify.database.contactPoints, (contactPoints) => ({
      contactPoints,
      port: chatify.database.port,
      keyspace: chatify.database.keyspace,
      localDataCenter: chatify.database.localDataCenter,
      consistency: chatify.database.consistency,
      replicationFactor: chatify.database.replicationFactor,
      ...chatify.scylla
    })),
    presenceTtl: Duration.seconds(chatify.presenceTtlSeconds),
    subscriberBufferSize: chatify.subscriberBufferSize,
    shutdownGrace: Duration.seconds(chatify.shutdownGraceSeconds),
    shutdownDrainDelay: chatify.shutdownDrainDelay,
    auth,
    limits: chatify.limits,
    trustedProxies: chatify.trustedProxies,
    analytics: chatify.analytics
  }))
)

/** The `service` of every log line, and the last part of the default index prefix (as in the original). */
export const LOG_SERVICE_NAME = "chatapi"

/** A duration in seconds, more than 0, fractions allowed. */
const positiveSeconds = (name: string, fallback: number) =>
  Config.nested(
    Config.number().pipe(
      Config.validate({
        message: "must be a number of seconds above 0",
        validation: (n) => Number.isFinite(n) && n > 0
      })
    ),
    name
  ).pipe(Config.withDefault(fallback), Config.map(Duration.seconds))

const httpUrl = (name: string) =>
  Config.nested(
    Config.string().pipe(
      Config.validate({
        message: "must be an http:// or https:// URL (the Elasticsearch/OpenSearch endpoint)",
        validation: (text) => URL.canParse(text) && ["http:", "https:"].includes(new URL(text).protocol)
      })
    ),
    name
  )

/** Elasticsearch index names: lowercase, none of \\ / * ? " < > | , # : or a space, not starting with - _ + */
const indexPrefix = (name: string, fallback: string) =>
  Config.nested(
    Config.string().pipe(
      Config.validate({
        message: "must be a lowercase index name prefix (no spaces or \\/*?\"<>|,#:, not starting with -, _ or +)",
        validation: (text) => /^[a-z0-9][^A-Z\s\\/*?"<>|,#:]*$/u.test(text) && text.length <= 200
      })
    ),
    name
  ).pipe(Config.withDefault(fallback))

/**
 * How and where the server logs (CHATIFY__LOGGING__*), read before anything else so that every line,
 * a configuration error included, is written by it. FORMAT is json unless stdout is a terminal;
 * URI (with USERNAME and PASSWORD) turns the Elasticsearch/OpenSearch sink on; ENVIRONMENT
 * (CHATIFY__ENVIRONMENT, else NODE_ENV) is each line's `environment`.
 */
export const loggingConfig = (stdoutIsTerminal: boolean): Config.Config<LoggingSettings> =>
  Config.all({
    pod: nonEmpty("POD_NAME", hostname()),
    chatify: Config.nested(
      Config.all({
        environment: Config.option(Config.nonEmptyString("ENVIRONMENT")),
        logging: Config.nested(
          Config.all({
            format: Config.literal("json", "pretty")("FORMAT").pipe(
              Config.withDefault(stdoutIsTerminal ? "pretty" : "json")
            ),
            level: Config.logLevel("LEVEL").pipe(Config.withDefault(LogLevel.Info)),
            uri: Config.option(httpUrl("URI")),
            username: Config.option(Config.nonEmptyString("USERNAME")),
            password: Config.option(Config.redacted("PASSWORD")),
            indexPrefix: indexPrefix("INDEXPREFIX", `logs-chatify-${LOG_SERVICE_NAME}`),
            batchSize: positiveInt("BATCHSIZE", defaultLogSinkTuning.batchSize),
            bufferSize: positiveInt("BUFFERSIZE", defaultLogSinkTuning.bufferSize),
            flushInterval: positiveSeconds(
              "FLUSHINTERVALSECONDS",
              Duration.toSeconds(defaultLogSinkTuning.flushInterval)
            ),
            retryFor: positiveSeconds("RETRYSECONDS", Duration.toSeconds(defaultLogSinkTuning.retryFor)),
            requestTimeout: positiveSeconds(
              "REQUESTTIMEOUTSECONDS",
              Duration.toSeconds(defaultLogSinkTuning.requestTimeout)
            )
          }),
          "LOGGING"
        )
      }),
      "CHATIFY"
    ),
    nodeEnv: Config.option(Config.nonEmptyString("NODE_ENV"))
  }).pipe(
    Config.map(({ chatify: { environment, logging }, nodeEnv, pod }): LoggingSettings => ({
      format: logging.format,
      minimumLevel: logging.level,
      enrichment: {
        service: LOG_SERVICE_NAME,
        pod,
        environment: Option.getOrElse(Option.orElse(environment, () => nodeEnv), () => "production"),
        pid: process.pid
      },
      sink: Option.map(logging.uri, (uri) => ({
        uri,
        username: logging.username,
        password: logging.password,
        indexPrefix: logging.indexPrefix,
        batchSize: logging.batchSize,
        flushInterval: logging.flushInterval,
        bufferSize: logging.bufferSize,
        retryFor: logging.retryFor,
        requestTimeout: logging.requestTimeout,
        shutdownTimeout: defaultLogSinkTuning.shutdownTimeout
      }))
    }))
  )

/** Environment variables map onto config paths with `__`: CHATIFY__MESSAGEBROKER__PARTITIONS. */
export const envConfigProvider = Layer.setConfigProvider(ConfigProvider.fromEnv({ pathDelim: "__", seqDelim: "," }))

/** A config error as one line per problem, naming each environment variable. */
export const describeConfigError = (error: ConfigError.ConfigError): string => {
  const lines: Array<string> = []
  const walk = (e: ConfigError.ConfigError): void => {
    switch (e._op) {
      case "And":
      case "Or":
        walk(e.left)
        walk(e.right)
        return
      case "InvalidData":
      case "MissingData":
      case "SourceUnavailable":
      case "Unsupported":
        lines.push(`${e.path.join("__")}: ${e.message}`)
    }
  }
  walk(error)
  return Array.from(new Set(lines)).join("\n")
}

/** Reads the configuration, failing with a message that names each offending key. */
export const loadServerConfig = Effect.gen(function*() {
  const result = yield* Effect.either(serverConfig)
  if (Either.isLeft(result)) {
    return yield* Effect.fail(new InvalidConfiguration({ message: describeConfigError(result.left) }))
  }
  const config = result.right
  if (!config.broker.useInMemoryBroker && config.broker.bootstrapServers.length === 0) {
    return yield* Effect.fail(
      new InvalidConfiguration({
        message:
          "CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: required when CHATIFY__MESSAGEBROKER__USEINMEMORYBROKER is false"
      })
    )
  }
  if (config.broker.useInMemoryBroker && Option.isSome(config.database)) {
    // the embedded log's offsets belong to one process and its data directory: written to a shared
    // Cassandra they collide with another pod's (or a lost directory's) in chat_messages_by_offset
    return yield* Effect.fail(
      new InvalidConfiguration({
        message: "CHATIFY__DATABASE__CONTACTPOINTS: a Cassandra history needs the Kafka log " +
          "(CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS): the embedded log's offsets are local to this process " +
          "and would collide in chat_messages_by_offset"
      })
    )
  }
  return config
})

export class InvalidConfiguration extends Data.TaggedError("InvalidConfiguration")<{ readonly message: string }> {}
