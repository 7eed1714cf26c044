import { Layer } from "effect"
import type { AnalyticsTopics, ChatEventProducer, ChatEventSource, DeadLetters } from "@chatify/core"
import type { DependencyUnavailable } from "@chatify/domain"
import { KafkaAnalyticsTopicsLayer } from "./KafkaAnalyticsTopics.js"
import { KafkaClientLayer, type KafkaOptions, type KafkaTopicError } from "./KafkaClient.js"
import { KafkaDeadLettersLayer } from "./KafkaDeadLetters.js"
import { type ConsumerGroupInUse, KafkaExclusiveGroupLayer } from "./KafkaExclusiveGroup.js"
import { KafkaProducerLayer } from "./KafkaProducer.js"
import { KafkaSourceLayer } from "./KafkaSource.js"

export * from "./KafkaAnalyticsTopics.js"
export * from "./KafkaClient.js"
export * from "./KafkaDeadLetters.js"
export * from "./KafkaExclusiveGroup.js"
export * from "./KafkaProducer.js"
export * from "./KafkaSource.js"

/** The analytics job's output topics, by default those the job writes. */
export interface AnalyticsTopicNames {
  readonly windowStats: string
  readonly rateLimitEvents: string
}
export const DEFAULT_ANALYTICS_TOPICS: AnalyticsTopicNames = {
  windowStats: "chat-analytics",
  rateLimitEvents: "chat-rate-limit-events"
}

/**
 * The producer, source and dead-letter ports over one Kafka client (one admin connection), and the
 * analytics job's topics on it (looked for only when read). With `exclusiveGroup` (a pod's broadcast
 * group), startup refuses while another live process is in it.
 */
export const KafkaLogLayer = (
  options: KafkaOptions & {
    readonly exclusiveGroup?: string | undefined
    readonly analyticsTopics?: AnalyticsTopicNames | undefined
  }
): Layer.Layer<
  AnalyticsTopics | ChatEventProducer | ChatEventSource | DeadLetters,
  DependencyUnavailable | KafkaTopicError | ConsumerGroupInUse
> =>
  Layer.mergeAll(
    KafkaProducerLayer,
    KafkaSourceLayer,
    KafkaDeadLettersLayer,
    KafkaAnalyticsTopicsLayer(options.analyticsTopics ?? DEFAULT_ANALYTICS_TOPICS),
    options.exclusiveGroup === undefined ? Layer.empty : KafkaExclusiveGroupLayer(options.exclusiveGroup)
  ).pipe(Layer.provide(KafkaClientLayer(options)))
