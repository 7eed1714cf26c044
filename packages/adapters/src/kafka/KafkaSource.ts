import { Cause, Duration, Effect, Exit, Layer, Mailbox, Option, Runtime, type Scope } from "effect"
import type { EachBatchPayload } from "kafkajs"
import { ChatEventSource, type ConsumerOptions, type ConsumerRecords, type LogRecord } from "@chatify/core"
import { DependencyUnavailable, type StreamPosition } from "@chatify/domain"
import { closeQuietly, describeError, hasErrorType, KafkaClient, kafkaCall, unavailable } from "./KafkaClient.js"
import { toLogRecord } from "./KafkaRecords.js"

/** Commit failures that only mean the group has moved on: the records go to the partitions' new owners. */
const REBALANCE_ERRORS = ["REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID"]

/** What a fetch waits for when the consumer allows a batch delay. */
const MIN_BATCH_BYTES = 1024 * 1024

/** A member's records, and how many of them wait in its buffer (at `consumerBufferSize`, eachBatch waits). */
export interface KafkaConsumerRecords extends ConsumerRecords {
  readonly buffered: Effect.Effect<number>
}

interface MemberState {
  /** The partitions of the current generation. */
  assigned: ReadonlySet<number>
  /** Every partition this member has been assigned so far. */
  readonly seen: Set<number>
  crashed: DependencyUnavailable | undefined
}

/**
 * ChatEventSource on Kafka. Each `consume` is one kafkajs consumer in the group whose batches are
 * handed to a bounded Mailbox that the records Stream drains: kafkajs does not fetch again until
 * the batch is in the mailbox, so a slow consumer slows fetching instead of filling memory.
 */
export const makeKafkaSource = Effect.gen(function*() {
  const { admin, kafka, settings } = yield* KafkaClient
  const { topic } = settings

  const bounded = <A>(operation: string, call: () => Promise<A>) =>
    kafkaCall(operation, call).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(settings.requestTimeoutMs),
        onTimeout: () =>
          new DependencyUnavailable({
            dependency: "kafka",
            message: `${operation}: no answer within ${settings.requestTimeoutMs} ms`
          })
      })
    )

  // high watermarks: acknowledged (acks=all) records are below them, so nothing is missed
  const endOffsets = bounded("fetch end offsets", () => admin.fetchTopicOffsets(topic)).pipe(
    Effect.map((offsets): ReadonlyMap<number, number> =>
      new Map(offsets.map(({ high, partition }) => [partition, Number(high)]))
    )
  )

  // Kafka answers -1 for a partition the group never committed: absent, as in MemoryLog
  const committedOffsets = (groupId: string) =>
    bounded("fetch committed offsets", () => admin.fetchOffsets({ groupId, topics: [topic] })).pipe(
      Effect.map((topics): ReadonlyMap<number, number> => {
        const committed = new Map<number, number>()
        for (const entry of topics) {
          if (entry.topic !== topic) continue
          for (const { offset, partition } of entry.partitions) {
            const next = Number(offset)
            if (Number.isSafeInteger(next) && next >= 0) committed.set(partition, next)
          }
        }
        return committed
      })
    )

  /** The given offsets, and the end of the log now for each partition they do not name. */
  const withEndOffsets = (given: ReadonlyMap<number, number>) =>
    Array.from({ length: settings.partitions }, (_, partition) => given.has(partition)).every(Boolean)
      ? Effect.succeed(given)
      : Effect.map(endOffsets, (ends): ReadonlyMap<number, number> => new Map([...ends, ...given]))

  const consume = (
    { groupId, maxBatchDelayMillis, maxBatchRecords, startFrom }: ConsumerOptions
  ): Effect.Effect<KafkaConsumerRecords, DependencyUnavailable, Scope.Scope> =>
    Effect.gen(function*() {
      const runtime = yield* Effect.runtime<never>()
      // Room for a whole batch of the consumer's: a chunk is at most what the mailbox holds, and a
      // consumer that reads a short chunk as "caught up" must not be handed short ones while it is
      // behind (the history writer, batches of 5,000, was held to 1,000 records a second by a
      // mailbox of 1,000 and its 1 s window).
      const mailbox = yield* Mailbox.make<LogRecord, DependencyUnavailable>({
        capacity: Math.max(settings.consumerBufferSize, maxBatchRecords ?? 0),
        strategy: "suspend"
      })
      // "latest" means the end of each partition now, whatever the group committed in an earlier
      // run, and given offsets mean those (the end for a partition they do not name): records below
      // these floors are never delivered by this member (see the GROUP_JOIN seek)
      const floors = startFrom === "committed-or-earliest"
        ? undefined
        : startFrom === "latest"
        ? yield* endOffsets
        : yield* withEndOffsets(startFrom.offsets)
      const state: MemberState = { assigned: new Set(), seen: new Set(), crashed: undefined }

      const consumer = kafka.consumer({
        groupId,
        sessionTimeout: settings.sessionTimeoutMs,
        rebalanceTimeout: settings.rebalanceTimeoutMs,
        heartbeatInterval: settings.heartbeatIntervalMs,
        // A fetch returns once MIN_BATCH_BYTES are there or the wait is over: with a batch delay, few
        // large fetches under load (and a short long-poll when idle); without, each record at once.
        ...(maxBatchDelayMillis === undefined || maxBatchDelayMillis <= 0
          ? { maxWaitTimeInMs: settings.fetchMaxWaitMs }
          : { maxWaitTimeInMs: Math.min(settings.fetchMaxWaitMs, maxBatchDelayMillis), minBytes: MIN_BATCH_BYTES }),
        allowAutoTopicCreation: false,
        // no restart inside kafkajs: a crash fails the records Stream and the caller's Schedule decides
        retry: { ...settings.retry, restartOnFailure: () => Promise.resolve(false) }
      })
      const log = (effect: Effect.Effect<void>) =>
        Runtime.runFork(runtime)(effect.pipe(Effect.annotateLogs({ consumerGroup: groupId })))

      consumer.on(consumer.events.CRASH, ({ payload }) => {
        const error = unavailable(`consumer of group ${groupId} stopped`)(payload.error)
        state.crashed = error
        // the Stream delivers what is buffered, then fails with the typed error
        mailbox.unsafeDone(Exit.fail(error))
      })
      consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
        const partitions = payload.memberAssignment[topic] ?? []
        state.assigned = new Set(partitions)
        for (const partition of partitions) {
          const floor = floors?.get(partition)
          // Seek a partition to its floor the first time this member gets it (later assignments
          // resume from what it committed itself). kafkajs emits this event before it fetches.
          if (floor !== undefined && !state.seen.has(partition)) {
            const seeked = Effect.try(() => consumer.seek({ topic, partition, offset: String(floor) }))
            Runtime.runSync(runtime)(
              Effect.catchAll(seeked, (error) =>
                Effect.logWarning(
                  `Could not seek partition ${partition} to ${floor}; skipping records below it`,
                  error
                ))
            )
          }
          state.seen.add(partition)
        }
        log(Effect.logDebug(`Kafka consumer assigned partitions [${partitions.join(", ")}] of ${topic}`))
      })

      // While the mailbox is full, keep heartbeating so the group does not evict a slow member.
      const heartbeats = (heartbeat: () => Promise<void>) =>
        Effect.tryPromise({ try: heartbeat, catch: (error) => error }).pipe(
          Effect.delay(Duration.millis(Math.max(100, Math.floor(settings.heartbeatIntervalMs / 2)))),
          Effect.forever
        )

      /**
       * Hands a batch to the mailbox, waiting while it is full. The offsets handed over are
       * resolved (the fetch position), not committed: commits come from `commit` after processing.
       * Fails with the heartbeat's error when the group rebalances meanwhile, so kafkajs rejoins.
       */
      // kafkajs hands these as closures over the batch: destructuring them is its documented use
      // eslint-disable-next-line @typescript-eslint/unbound-method
      const deliver = ({ batch, heartbeat, isRunning, isStale, resolveOffset }: EachBatchPayload) =>
        Effect.suspend(() => {
          const floor = floors?.get(batch.partition) ?? 0
          const messages = batch.messages
          const last = messages.at(-1)
          if (last === undefined || !isRunning() || isStale()) return Effect.void
          const records: Array<LogRecord> = []
          for (const message of messages) {
            if (Number(message.offset) >= floor) records.push(toLogRecord(batch.partition, message))
          }
          // the whole batch in one go when it fits; what does not waits for room, in order
          const rest = mailbox.unsafeOfferAll(records)
          if (rest.length === 0) {
            resolveOffset(last.offset)
            return Effect.void
          }
          let handled: string | undefined = records.length - rest.length > 0
            ? String(records[records.length - rest.length - 1]!.offset)
            : undefined
          const offerRest = Effect.gen(function*() {
            for (const record of rest) {
              if (!isRunning() || isStale()) return
              const accepted = yield* Effect.raceFirst(mailbox.offer(record), heartbeats(heartbeat))
              if (!accepted) return // the mailbox was closed: the consumer is being shut down
              handled = String(record.offset)
            }
            handled = last.offset
          })
          return Effect.ensuring(
            offerRest,
            Effect.sync(() => {
              if (handled !== undefined) resolveOffset(handled)
            })
          )
        })

      // kafkajs reads a rejection of eachBatch (the original error) as "rejoin or retry"
      const eachBatch = (payload: EachBatchPayload): Promise<void> =>
        Runtime.runPromiseExit(runtime)(deliver(payload)).then((exit) =>
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- kafkajs must see the original error
          Exit.isSuccess(exit) ? undefined : Promise.reject(Cause.squash(exit.cause))
        )

      // Close the mailbox first: an eachBatch waiting on it returns, so the consumer can stop.
      yield* Effect.addFinalizer(() =>
        Effect.zipRight(
          mailbox.shutdown,
          closeQuietly(
            `consumer of group ${groupId}`,
            () => consumer.disconnect(),
            settings.requestTimeoutMs + settings.fetchMaxWaitMs
          )
        )
      )

      yield* kafkaCall(`connect consumer of group ${groupId}`, () => consumer.connect())
      yield* kafkaCall(`subscribe group ${groupId} to ${topic}`, () =>
        consumer.subscribe({ topics: [topic], fromBeginning: startFrom === "committed-or-earliest" }))
      // resolves once the member joined the group (or crashed: see CRASH above)
      yield* kafkaCall(`join group ${groupId}`, () =>
        consumer.run({ autoCommit: false, eachBatchAutoResolve: false, partitionsConsumedConcurrently: 1, eachBatch }))
      if (state.crashed !== undefined) {
        return yield* state.crashed
      }

      const commit = (positions: ReadonlyArray<StreamPosition>): Effect.Effect<void, DependencyUnavailable> =>
        Effect.suspend(() => {
          if (state.crashed !== undefined) {
            return Effect.fail(state.crashed)
          }
          // a partition taken away meanwhile belongs to its new owner, who resumes from our last commit
          const owned = positions.filter(({ partition }) =>
            state.assigned.has(partition)
          )
          if (owned.length === 0) {
            return Effect.void
          }
          return Effect.tryPromise({
            try: () =>
              consumer.commitOffsets(owned.map(({ offset, partition }) => ({
                topic,
                partition,
                offset: String(offset + 1)
              }))),
            catch: (error) =>
              error
          }).pipe(
            Effect.catchAll((error) =>
              hasErrorType(error, REBALANCE_ERRORS)
                ? Effect.logWarning(
                  `Offsets not committed, group ${groupId} is rebalancing; the records will be redelivered`
                ).pipe(Effect.annotateLogs({ error: describeError(error) }))
                : Effect.fail(unavailable(`commit offsets of group ${groupId}`)(error))
            )
          )
        })

      const buffered = Effect.map(
        mailbox.size,
        Option.getOrElse(() =>
          0
        )
      )
      return { records: Mailbox.toStream(mailbox), commit, buffered }
    }).pipe(Effect.annotateLogs({ consumerGroup: groupId }))

  return {
    partitions: settings.partitions,
    consume,
    endOffsets,
    committedOffsets
  } satisfies typeof ChatEventSource.Service
})

export const KafkaSourceLayer: Layer.Layer<ChatEventSource, never, KafkaClient> = Layer.effect(
  ChatEventSource,
  makeKafkaSource
)
