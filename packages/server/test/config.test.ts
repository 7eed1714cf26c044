import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Option } from "effect"
import { loadServerConfig } from "../src/index.js"

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)), { pathDelim: "__" }))

describe("server configuration", () => {
  it.effect("defaults to the embedded broker with the original design's names and limits", () =>
    Effect.gen(function*() {
      const config = yield* loadServerConfig.pipe(withEnv({ POD_NAME: "pod-a" }))
      expect(config.port).toBe(8080)
      expect(config.podId).toBe("pod-a")
      expect(config.broker).toEqual({
        useInMemoryBroker: true,
        bootstrapServers: [],
        topicName: "chat-events",
        deadLetterTopicName: "chat-events-dlq",
        partitions: 3,
        broadcastConsumerGroupPrefix: "chatify-broadcast",
        historyWriterConsumerGroup: "chatify-chat-history-writer",
        createTopics: false,
        lingerMs: 5
      })
      expect(config.dataDirectory).toBe("./data")
      expect(config.limits.maxSendsInFlight).toBe(1_000)
      expect(config.policy).toEqual({ maxIdLength: 256, maxTextLength: 4096 })
      expect(config.rateLimit).toEqual({ limit: 100, windowSeconds: 60, failOpen: true })
      expect(config.readRateLimit).toEqual({ limit: 600, windowSeconds: 60 })
      expect(config.caching).toEqual(Option.none())
      expect(config.database).toEqual(Option.none())
      expect(Duration.toSeconds(config.presenceTtl)).toBe(300)
    }))

  it.effect("reads every key from the environment with __ as the path delimiter", () =>
    Effect.gen(function*() {
      const config = yield* loadServerConfig.pipe(withEnv({
        PORT: "9000",
        POD_NAME: "pod-b",
        CHATIFY__MESSAGEBROKER__TOPICNAME: "events",
        CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: "kafka-0:9092,kafka-1:9092",
        CHATIFY__MESSAGEBROKER__PARTITIONS: "12",
        CHATIFY__MESSAGEBROKER__BROADCASTCONSUMERGROUPPREFIX: "bc",
        CHATIFY__MESSAGEBROKER__HISTORYWRITERCONSUMERGROUP: "hw",
        CHATIFY__MESSAGEBROKER__LINGERMS: "0",
        CHATIFY__LIMITS__MAXSENDSINFLIGHT: "250",
        CHATIFY__EMBEDDED__DATADIRECTORY: "/var/lib/chatify",
        CHATIFY__CHAT__MAXIDLENGTH: "64",
        CHATIFY__CHAT__MAXTEXTLENGTH: "1000",
        CHATIFY__RATELIMIT__LIMIT: "5",
        CHATIFY__RATELIMIT__WINDOWSECONDS: "10",
        CHATIFY__RATELIMIT__FAILOPEN: "false",
        CHATIFY__RATELIMIT__READLIMIT: "50",
        CHATIFY__RATELIMIT__READWINDOWSECONDS: "5",
        CHATIFY__CACHING__CONNECTIONSTRING: "chatify-redis:6379",
        CHATIFY__DATABASE__CONTACTPOINTS: "scylla-a,scylla-b",
        CHATIFY__DATABASE__PORT: "19042",
        CHATIFY__DATABASE__KEYSPACE: "chat",
        CHATIFY__SCYLLA__APPLYSCHEMAONSTARTUP: "false",
        CHATIFY__SCYLLA__FAILFASTONSCHEMAERROR: "false",
        CHATIFY__PRESENCE__TTLSECONDS: "30",
        CHATIFY__FANOUT__SUBSCRIBERBUFFERSIZE: "100",
        CHATIFY__SHUTDOWN__GRACESECONDS: "3"
      }))
      expect(config.port).toBe(9000)
      expect(config.broker).toEqual({
        useInMemoryBroker: false,
        bootstrapServers: ["kafka-0:9092", "kafka-1:9092"],
        topicName: "events",
        deadLetterTopicName: "events-dlq",
        partitions: 12,
        broadcastConsumerGroupPrefix: "bc",
        historyWriterConsumerGroup: "hw",
        createTopics: false,
        lingerMs: 0
      })
      expect(config.dataDirectory).toBe("/var/lib/chatify")
      expect(config.limits.maxSendsInFlight).toBe(250)
      expect(config.policy).toEqual({ maxIdLength: 64, maxTextLength: 1000 })
      expect(config.rateLimit).toEqual({ limit: 5, windowSeconds: 10, failOpen: false })
      expect(config.readRateLimit).toEqual({ limit: 50, windowSeconds: 5 })
      expect(config.caching).toEqual(Option.some({ connectionString: "chatify-redis:6379" }))
      expect(config.database).toEqual(Option.some({
        contactPoints: ["scylla-a", "scylla-b"],
        port: 19042,
        keyspace: "chat",
        localDataCenter: "datacenter1",
        consistency: "LOCAL_QUORUM",
        replicationFactor: 1,
        applySchemaOnStartup: false,
        failFastOnSchemaError: false,
        schemaMigrationTableName: "schema_migrations"
      }))
      expect(Duration.toSeconds(config.presenceTtl)).toBe(30)
      expect(config.subscriberBufferSize).toBe(100)
      expect(Duration.toSeconds(config.shutdownGrace)).toBe(3)
    }))

  it.effect("fails with a message naming every bad key", () =>
    Effect.gen(function*() {
      const error = yield* loadServerConfig.pipe(
        withEnv({
          PORT: "70000",
          CHATIFY__MESSAGEBROKER__PARTITIONS: "0",
          CHATIFY__MESSAGEBROKER__LINGERMS: "-1",
          CHATIFY__RATELIMIT__LIMIT: "lots"
        }),
        Effect.flip
      )
      expect(error.message).toContain("PORT")
      expect(error.message).toContain(
        "CHATIFY__MESSAGEBROKER__LINGERMS: must be a whole number of milliseconds, 0 or more"
      )
      expect(error.message).toContain("CHATIFY__MESSAGEBROKER__PARTITIONS")
      expect(error.message).toContain("CHATIFY__RATELIMIT__LIMIT")
    }))

  it.effect("refuses a read limit or read window that is not a positive integer, naming the variable", () =>
    Effect.gen(function*() {
      const error = yield* loadServerConfig.pipe(
        withEnv({ CHATIFY__RATELIMIT__READLIMIT: "0", CHATIFY__RATELIMIT__READWINDOWSECONDS: "a minute" }),
        Effect.flip
      )
      expect(error.message).toContain("CHATIFY__RATELIMIT__READLIMIT: must be a positive integer")
      expect(error.message).toContain("CHATIFY__RATELIMIT__READWINDOWSECONDS")
    }))

  it.effect("needs brokers when the in-memory broker is switched off, naming the key", () =>
    Effect.gen(function*() {
      const error = yield* loadServerConfig.pipe(
        withEnv({ CHATIFY__MESSAGEBROKER__USEINMEMORYBROKER: "false" }),
        Effect.flip
      )
      expect(error.message).toContain("CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS")
      const explicit = yield* loadServerConfig.pipe(
        withEnv({
          CHATIFY__MESSAGEBROKER__USEINMEMORYBROKER: "true",
          CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: "k:9092"
        })
      )
      expect(explicit.broker.useInMemoryBroker).toBe(true)
    }))
})

describe("configurations the server refuses to start with", () => {
  // the refusal's message; a configuration that loads shows as "(accepted)" (not flipped: a test
  // failing on a flipped ServerConfig would have to print it)
  const refusal = (env: Record<string, string>) =>
    loadServerConfig.pipe(
      withEnv(env),
      Effect.match({ onFailure: (error) => error.message, onSuccess: () => "(accepted)" })
    )

  it.effect("the embedded log with a Cassandra history: its process-local offsets would collide", () =>
    Effect.gen(function*() {
      const message = yield* refusal({ CHATIFY__DATABASE__CONTACTPOINTS: "scylla-a" })
      expect(message).toMatch(/^CHATIFY__DATABASE__CONTACTPOINTS: .*CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS/u)
      expect(message.split("\n")).toHaveLength(1)
      const explicit = yield* refusal({
        CHATIFY__MESSAGEBROKER__USEINMEMORYBROKER: "true",
        CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: "k:9092",
        CHATIFY__DATABASE__CONTACTPOINTS: "scylla-a"
      })
      expect(explicit).toMatch(/^CHATIFY__DATABASE__CONTACTPOINTS: /u)
      // with Kafka it is the production setup
      const production = yield* loadServerConfig.pipe(
        withEnv({ CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: "k:9092", CHATIFY__DATABASE__CONTACTPOINTS: "scylla-a" })
      )
      expect(Option.isSome(production.database)).toBe(true)
    }))

  const kafkaAndCassandra = {
    CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: "k:9092",
    CHATIFY__DATABASE__CONTACTPOINTS: "scylla-a"
  }

  it.effect("a write consistency level that cannot be used for writes (ANY, SERIAL, LOCAL_SERIAL), or no level at all", () =>
    Effect.gen(function*() {
      for (const level of ["ANY", "SERIAL", "LOCAL_SERIAL", "any", "localSerial", "local-serial"]) {
        const message = yield* refusal({ ...kafkaAndCassandra, CHATIFY__DATABASE__CONSISTENCY: level })
        expect(message).toMatch(
          /^CHATIFY__DATABASE__CONSISTENCY: (ANY|SERIAL|LOCAL_SERIAL) cannot be used for the history's writes/u
        )
      }
      expect(yield* refusal({ ...kafkaAndCassandra, CHATIFY__DATABASE__CONSISTENCY: "MOSTLY" })).toBe(
        "CHATIFY__DATABASE__CONSISTENCY: \"MOSTLY\" is not a consistency level"
      )
      for (const level of ["ONE", "QUORUM", "LOCAL_QUORUM", "local_one", "EACH_QUORUM", "ALL"]) {
        const config = yield* loadServerConfig.pipe(
          withEnv({ ...kafkaAndCassandra, CHATIFY__DATABASE__CONSISTENCY: level })
        )
        expect(Option.map(config.database, (d) => d.consistency)).toEqual(Option.some(level))
      }
    }))

  it.effect("a Redis connection string the client would misread: several endpoints, a bare IPv6 address, unknown options", () =>
    Effect.gen(function*() {
      const refused = (connectionString: string) => refusal({ CHATIFY__CACHING__CONNECTIONSTRING: connectionString })
      expect(yield* refused("redis-a:6379,redis-b:6379")).toMatch(
        /^CHATIFY__CACHING__CONNECTIONSTRING: several endpoints \(redis-a:6379, redis-b:6379\) are not supported/u
      )
      expect(yield* refused("::1")).toMatch(/^CHATIFY__CACHING__CONNECTIONSTRING: .*\[::1\]:6379/u)
      expect(yield* refused("redis:6379,ssl=yes")).toBe("CHATIFY__CACHING__CONNECTIONSTRING: ssl must be true or false")
      const unknown = yield* refused("redis:6379,password=s3cret,serviceName=mymaster")
      expect(unknown).toMatch(/^CHATIFY__CACHING__CONNECTIONSTRING: option "serviceName" is not supported/u)
      expect(unknown).not.toContain("s3cret")
      expect(yield* refused("redis://:s3cret@redis:6379,other:6379")).not.toContain("s3cret")
      // what the original design's deployments write is read
      for (
        const ok of ["chatify-redis:6379", "[::1]:6379,ssl=true,user=chatify,password=p=w", "redis://127.0.0.1:6379/2"]
      ) {
        const config = yield* loadServerConfig.pipe(withEnv({ CHATIFY__CACHING__CONNECTIONSTRING: ok }))
        expect(config.caching).toEqual(Option.some({ connectionString: ok }))
      }
    }))
})
