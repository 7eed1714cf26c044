/**
 * A test file's own analytics setup on the real Kafka of scripts/services: run-scoped topic, group
 * and pod names (so runs never see each other's records), the server configuration for Kafka mode
 * with analytics on and HS256 authentication, and the removal of those topics and groups afterwards.
 */
import { Effect, Option } from "effect"
import { withAdmin } from "../../../adapters/test/support/kafkaAdmin.js"
import { endpoints } from "../../../adapters/test/support/services.js"
import type { ServerConfig } from "../../src/Config.js"
import { hs256TestAuth } from "../../src/testing.js"

export interface AnalyticsRun {
  readonly topic: string
  readonly statsTopic: string
  readonly violationsTopic: string
  readonly statsGroup: string
  readonly violationsPrefix: string
  readonly broadcastPrefix: string
  readonly historyGroup: string
  readonly pod: string
}

/** Names for one run, all starting with `chatify-{name}-` and ending with a random run id. */
export const analyticsRun = (name: string): AnalyticsRun & { readonly id: string } => {
  const id = crypto.randomUUID().replaceAll("-", "").slice(0, 10)
  return {
    id,
    topic: `chatify-${name}-events-${id}`,
    statsTopic: `chatify-${name}-stats-${id}`,
    violationsTopic: `chatify-${name}-violations-${id}`,
    statsGroup: `chatify-${name}-stats-writer-${id}`,
    violationsPrefix: `chatify-${name}-violations-${id}`,
    broadcastPrefix: `chatify-${name}-broadcast-${id}`,
    historyGroup: `chatify-${name}-history-${id}`,
    pod: `${name}-${id}`
  }
}

/** A server in Kafka mode with analytics on: the chat topic (and, with createTopics, the outputs) made by the API. */
export const analyticsServerConfig = (
  run: AnalyticsRun,
  options: { readonly secret: string; readonly operators: ReadonlyArray<string>; readonly partitions: number }
): Partial<ServerConfig> => ({
  podId: run.pod,
  broker: {
    useInMemoryBroker: false,
    bootstrapServers: [endpoints.kafka],
    topicName: run.topic,
    deadLetterTopicName: `${run.topic}-dlq`,
    partitions: options.partitions,
    broadcastConsumerGroupPrefix: run.broadcastPrefix,
    historyWriterConsumerGroup: run.historyGroup,
    createTopics: true,
    lingerMs: 5
  },
  auth: Option.some(hs256TestAuth(options.secret)),
  analytics: {
    enabled: true,
    statsTopic: run.statsTopic,
    rateLimitEventsTopic: run.violationsTopic,
    statsConsumerGroup: run.statsGroup,
    violationsConsumerGroupPrefix: run.violationsPrefix,
    recentViolations: 100,
    operators: options.operators
  }
})

/** Deletes the run's topics and its server's groups (and `moreGroups`), ignoring what is gone already. */
export const removeAnalyticsRun = (run: AnalyticsRun, moreGroups: ReadonlyArray<string> = []): Promise<void> =>
  Effect.runPromise(
    withAdmin(async (admin) => {
      await admin.deleteTopics({ topics: [run.topic, `${run.topic}-dlq`, run.statsTopic, run.violationsTopic] })
        .catch(() => undefined)
      await admin.deleteGroups([
        run.statsGroup,
        `${run.violationsPrefix}-${run.pod}`,
        `${run.broadcastPrefix}-${run.pod}`,
        run.historyGroup,
        ...moreGroups
      ]).catch(() => undefined)
    }).pipe(Effect.ignore)
  )
