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
        createTopics: false
      })
      expect(config.dataDirectory).toBe("./data")
      expect(config.policy).toEqual({ maxIdLength: 256, maxTextLength: 4096 })
      expect(config.rateLimit).toEqual({ limit: 100, windowSeconds: 60, failOpen: true })
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
        CHATIFY__EMBEDDED__DATADIRECTORY: "/var/lib/chatify",
        CHATIFY__CHAT__MAXIDLENGTH: "64",
        CHATIFY__CHAT__MAXTEXTLENGTH: "1000",
        CHATIFY__RATELIMIT__LIMIT: "5",
        CHATIFY__RATELIMIT__WINDOWSECONDS: "10",
        CHATIFY__RATELIMIT__FAILOPEN: "false",
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
        createTopics: false
      })
      expect(config.dataDirectory).toBe("/var/lib/chatify")
      expect(config.policy).toEqual({ maxIdLength: 64, maxTextLength: 1000 })
      expect(config.rateLimit).toEqual({ limit: 5, windowSeconds: 10, failOpen: false })
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
        withEnv({ PORT: "70000", CHATIFY__MESSAGEBROKER__PARTITIONS: "0", CHATIFY__RATELIMIT__LIMIT: "lots" }),
        Effect.flip
      )
      expect(error.message).toContain("PORT")
      expect(error.message).toContain("CHATIFY__MESSAGEBROKER__PARTITIONS")
      expect(error.message).toContain("CHATIFY__RATELIMIT__LIMIT")
    }))

  it.effect("needs brokers when the in-memory broker is switched off, naming the key", () =>
    Effect.gen(function*() {
      const error = yield* loadServerConfig.pipe(withEnv({ CHATIFY__MESSAGEBROKER__USEINMEMORYBROKER: "false" }), Effect.flip)
      expect(error.message).toContain("CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS")
      const explicit = yield* loadServerConfig.pipe(
        withEnv({ CHATIFY__MESSAGEBROKER__USEINMEMORYBROKER: "true", CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: "k:9092" })
      )
      expect(explicit.broker.useInMemoryBroker).toBe(true)
    }))
})
