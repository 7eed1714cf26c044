import { Chunk, Context, Effect, Layer, Schema, Stream } from "effect"
import { ChatEventSource, ChatEventProducer, DeadLetters, type LogRecord } from "@chatify/core"
import {
  ChatEventJson,
  DependencyUnavailable,
  partitionForKey,
  scopeKey,
  type StreamPosition
} from "@chatify/domain"

/** Durable storage under the embedded log, so acknowledged events and group offsets survive a restart. */
export interface LogJournal {
  readonly load: () => {
    readonly records: ReadonlyArray<LogRecord>
    readonly nextOffsets: ReadonlyMap<number, number>
    readonly committed: ReadonlyArray<{ readonly groupId: string; readonly partition: number; readonly offset: number }>
  }
  readonly append: (record: LogRecord) => void
  readonly commit: (groupId: string, partition: number, nextOffset: number) => void
  readonly trim: (partition: number, belowOffset: number) => void
}

export interface MemoryLogOptions {
  readonly partitions: number
  /** Records kept per partition beyond what every group has committed. */
  readonly retainRecords?: number
  readonly maxBatch?: number
  readonly journal?: LogJournal
}

interface Partition {
  records: Array<LogRecord>
  /** Offset of records[0]. */
  baseOffset: number
  nextOffset: number
}

interface Member {
  readonly id: number
  readonly positions: Map<number, number>
}

interface Group {
  readonly committed: Map<number, number>
  readonly members: Array<Member>
  /** Groups that resume from their commits hold back trimming and have their commits journaled. */
  durable: boolean
}

const failure = (error: unknown) =>
  new DependencyUnavailable({
    dependency: "embedded-log",
    message: error instanceof Error ? error.message : String(error)
  })

/**
 * The embedded broker: a partitioned, offset-addressed log with consumer groups, shaped like Kafka
 * so the same core runs on both. Keys go to partitions with Kafka's murmur2, so a scope keeps its
 * partition when a deployment moves to Kafka with the same partition count.
 */
export interface MemoryLog {
  readonly producer: ChatEventProducer["Type"]
  readonly source: ChatEventSource["Type"]
  readonly deadLetters: DeadLetters["Type"]
}

export const makeMemoryLog = (options: MemoryLogOptions): Effect.Effect<MemoryLog, DependencyUnavailable> =>
  Effect.gen(function*() {
    const retain = options.retainRecords ?? 100_000
    const maxBatch = options.maxBatch ?? 1_000
    const journal = options.journal
    const partitions: Array<Partition> = Array.from({ length: options.partitions }, () => ({
      records: [],
      baseOffset: 0,
      nextOffset: 0
    }))
    const groups = new Map<string, Group>()
    let nextMemberId = 0
    let version = 0
    const waiters = new Set<() => void>()
    const notify = () => {
      version++
      for (const wake of waiters) wake()
      waiters.clear()
    }
    const groupOf = (groupId: string): Group => {
      let group = groups.get(groupId)
      if (group === undefined) {
        group = { committed: new Map(), members: [], durable: true }
        groups.set(groupId, group)
      }
      return group
    }

    if (journal !== undefined) {
      const loaded = yield* Effect.try({ try: () => journal.load(), catch: failure })
      for (const [partition, next] of loaded.nextOffsets) {
        const state = partitions[partition]
        if (state === undefined) {
          return yield* failure(
            `the embedded log holds partition ${partition}, but CHATIFY__MESSAGEBROKER__PARTITIONS is ${options.partitions}`
          )
        }
        state.nextOffset = next
        state.baseOffset = next
      }
      for (const record of loaded.records) {
        const state = partitions[record.partition]
        if (state === undefined) continue
        if (state.records.length === 0) state.baseOffset = record.offset
        state.records.push(record)
      }
      for (const { groupId, offset, partition } of loaded.committed) groupOf(groupId).committed.set(partition, offset)
    }

    const ownedBy = (group: Group, member: Member): ReadonlyArray<number> => {
      const index = group.members.indexOf(member)
      const count = group.members.length
      return partitions.map((_, p) => p).filter((p) => p % count === index)
    }

    /** Drops records every group has committed, keeping at most `retain` of them. */
    const trim = (partition: number) => {
      const state = partitions[partition]!
      let floor = state.nextOffset
      for (const group of groups.values()) {
        if (group.durable) floor = Math.min(floor, group.committed.get(partition) ?? 0)
      }
      const drop = Math.min(floor, state.nextOffset - retain) - state.baseOffset
      if (drop > 0) {
        state.records.splice(0, drop)
        state.baseOffset += drop
        journal?.trim(partition, state.baseOffset)
      }
    }

    const append = (key: string, value: string, partition: number, timestampMs: number) =>
      Effect.try({
        try: (): StreamPosition => {
          const state = partitions[partition]!
          const record: LogRecord = { partition, offset: state.nextOffset, key, value, timestampMs }
          journal?.append(record)
          if (state.records.length === 0) state.baseOffset = record.offset
          state.records.push(record)
          state.nextOffset++
          notify()
          return { partition, offset: record.offset }
        },
        catch: failure
      })

    const encodeEvent = Schema.encode(ChatEventJson)
    const producer = ChatEventProducer.of({
      produce: (event) =>
        Effect.gen(function*() {
          const key = scopeKey(event)
          const value = yield* encodeEvent(event).pipe(Effect.mapError(failure))
          const timestampMs = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          return yield* append(key, value, partitionForKey(key, options.partitions), timestampMs)
        })
    })

    const waitForChange = (seen: number) =>
      Effect.async<void>((resume) => {
        if (version !== seen) return resume(Effect.void)
        const wake = () => resume(Effect.void)
        waiters.add(wake)
        return Effect.sync(() => waiters.delete(wake))
      })

    const source = ChatEventSource.of({
      partitions: options.partitions,
      consume: ({ groupId, startFrom }) =>
        Effect.gen(function*() {
          const group = groupOf(groupId)
          group.durable = startFrom !== "latest"
          const member: Member = { id: nextMemberId++, positions: new Map() }
          yield* Effect.acquireRelease(
            Effect.sync(() => {
              // a new member takes over partitions from their committed offsets, as after a rebalance
              for (const other of group.members) other.positions.clear()
              group.members.push(member)
              notify()
            }),
            () =>
              Effect.sync(() => {
                group.members.splice(group.members.indexOf(member), 1)
                for (const other of group.members) other.positions.clear()
                notify()
              })
          )
          const positionOf = (partition: number): number => {
            const known = member.positions.get(partition)
            if (known !== undefined) return known
            const state = partitions[partition]!
            const start = startFrom === "latest"
              ? state.nextOffset
              : Math.max(group.committed.get(partition) ?? 0, state.baseOffset)
            member.positions.set(partition, start)
            return start
          }
          const poll: Effect.Effect<Chunk.Chunk<LogRecord>> = Effect.suspend(() => {
            const seen = version
            const batch: Array<LogRecord> = []
            for (const partition of ownedBy(group, member)) {
              const state = partitions[partition]!
              const from = Math.max(positionOf(partition), state.baseOffset)
              const to = Math.min(state.nextOffset, from + maxBatch - batch.length)
              for (let offset = from; offset < to; offset++) batch.push(state.records[offset - state.baseOffset]!)
              member.positions.set(partition, to)
              if (batch.length >= maxBatch) break
            }
            return batch.length > 0 ? Effect.succeed(Chunk.unsafeFromArray(batch)) : Effect.zipRight(waitForChange(seen), poll)
          })
          return {
            records: Stream.repeatEffectChunk(poll),
            commit: (positions: ReadonlyArray<StreamPosition>) =>
              Effect.try({
                try: () => {
                  for (const { offset, partition } of positions) {
                    if ((group.committed.get(partition) ?? 0) > offset) continue
                    if (group.durable) journal?.commit(groupId, partition, offset + 1)
                    group.committed.set(partition, offset + 1)
                    trim(partition)
                  }
                  notify()
                },
                catch: failure
              })
          }
        }),
      endOffsets: Effect.sync(() => new Map(partitions.map((state, p) => [p, state.nextOffset]))),
      committedOffsets: (groupId) => Effect.sync(() => new Map(groups.get(groupId)?.committed ?? []))
    })

    // Embedded mode has no dead-letter topic: the record is kept in full in the log output instead.
    const deadLetters = DeadLetters.of({
      publish: (record, reason) =>
        Effect.logError("Dead-lettered a chat event record").pipe(
          Effect.annotateLogs({ partition: record.partition, offset: record.offset, reason, payload: record.value })
        )
    })

    return { producer, source, deadLetters }
  })

/** The embedded log behind the producer, source and dead-letter ports. */
export const MemoryLogLayerFrom = <E, R>(make: Effect.Effect<MemoryLog, E, R>) =>
  Layer.scopedContext(
    Effect.map(make, ({ deadLetters, producer, source }) =>
      Context.make(ChatEventProducer, producer).pipe(
        Context.add(ChatEventSource, source),
        Context.add(DeadLetters, deadLetters)
      ))
  )

export const MemoryLogLayer = (options: MemoryLogOptions) => MemoryLogLayerFrom(makeMemoryLog(options))
