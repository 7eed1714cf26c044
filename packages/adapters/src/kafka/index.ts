import { Layer } from "effect"
import type { ChatEventProducer, ChatEventSource, DeadLetters } from "@chatify/core"
import type { DependencyUnavailable } from "@chatify/domain"
import { KafkaClientLayer, type KafkaOptions, type KafkaTopicError } from "./KafkaClient.js"
import { KafkaDeadLettersLayer } from "./KafkaDeadLetters.js"
import { KafkaProducerLayer } from "./KafkaProducer.js"
import { KafkaSourceLayer } from "./KafkaSource.js"

export * from "./KafkaClient.js"
export * from "./KafkaDeadLetters.js"
export * from "./KafkaProducer.js"
export * from "./KafkaSource.js"

/** The producer, source and dead-letter ports over one Kafka client (one admin connection). */
export const KafkaLogLayer = (
  options: KafkaOptions
): Layer.Layer<ChatEventProducer | ChatEventSource | DeadLetters, DependencyUnavailable | KafkaTopicError> =>
  Layer.mergeAll(KafkaProducerLayer, KafkaSourceLayer, KafkaDeadLettersLayer).pipe(
    Layer.provide(KafkaClientLayer(options))
  )
