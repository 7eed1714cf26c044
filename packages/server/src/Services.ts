import { Duration, Effect, Layer } from "effect"
import {
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
import { makeSqliteLogJournal, SqliteHistory } from "@chatify/adapters/sqlite"
import type { ServerConfig } from "./Config.js"
import { authenticatorFor } from "./Auth.js"
import { Identities, ShutdownGate } from "./Runtime.js"

/** The embedded default: a journaled in-process log, SQLite history, in-memory limits and presence. */
export const EmbeddedInfrastructure = (config: ServerConfig) =>
  Layer.mergeAll(
    MemoryLogLayerFrom(
      Effect.flatMap(makeSqliteLogJournal({ dataDirectory: config.dataDirectory }), (journal) =>
        makeMemoryLog({ partitions: config.broker.partitions, journal }))
    ),
    SqliteHistory.layer({ dataDirectory: config.dataDirectory }),
    MemoryRateLimiter(config.rateLimit),
    MemoryPresence({ ttlMillis: Duration.toMillis(config.presenceTtl) })
  )

/** What every interface needs besides the infrastructure: policy, identity, settings, health. */
export const ApplicationServices = (config: ServerConfig) =>
  Layer.mergeAll(
    MemoryFanout,
    UuidV7IdGenerator,
    DefaultScopePolicy,
    Layer.succeed(PodIdentity, { podId: config.podId }),
    Layer.succeed(ChatPolicy, config.policy),
    CoreSettings.layer({
      subscriberBufferSize: config.subscriberBufferSize,
      broadcastGroupPrefix: config.broker.broadcastConsumerGroupPrefix
    }),
    ConsumerHealth.layer,
    PresenceHeartbeat.layer,
    ShutdownGate.layer,
    Identities.layer,
    authenticatorFor(config.auth)
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
