import { Layer } from "effect"
import type { ChatEventProducer, ChatEventSource, DeadLetters } from "@chatify/core"
import type { DependencyUnavailable } from "@chatify/domain"
import { KafkaClientLayer, type KafkaOptions, type KafkaTopicError } from "./KafkaClient.js"
import { KafkaDeadLettersLayer } from "./KafkaDeadLetters.js"
import { type ConsumerGroupInUse, KafkaExclusiveGroupLayer } from "./KafkaExclusiveGroup.js"
import { KafkaProducerLayer } from "./KafkaProducer.js"
import { KafkaSourceLayer } from "./KafkaSource.js"

export * from "./KafkaClient.js"
export * from "./KafkaDeadLetters.js"
export * from "./KafkaExclusiveGroup.js"
export * from "./KafkaProducer.js"
export * from "./KafkaSource.js"

/**
 * The producer, source and dead-letter ports over one Kafka client (one admin connection). With
 * `exclusiveGroup` (a pod's broadcast group), startup refuses while another live process is in it.
 */
export const KafkaLogLayer = (
  options: KafkaOptions & { readonly exclusiveGroup?: string | undefined }
): Layer.Layer<
  ChatEventProducer | ChatEventSource | DeadLetters,
  DependencyUnavailable | KafkaTopicError | ConsumerGroupInUse
> =>
  Layer.mergeAll(
    KafkaProducerLayer,
    KafkaSourceLayer,
    KafkaDeadLettersLayer,
    options.exclusiveGroup === undefined ? Layer.empty : KafkaExclusiveGroupLayer(options.exclusiveGroup)
  ).pipe(Layer.provide(KafkaClientLayer(options)))
