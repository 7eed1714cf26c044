import { Chunk, Context, Effect, Either, Layer, type Scope, Stream } from "effect"
import {
  ChatEventProducer,
  ChatEventSource,
  DeadLetters,
  type LogRecord,
  type RecordContext,
  recordContextOf,
  traced
} from "@chatify/core"
import {
  type ChatEvent,
  DependencyUnavailable,
  encodeChatEventJson,
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
  /** Stores the records in one transaction: all of them, or none (and throws). */
  readonly append: (records: ReadonlyArray<LogRecord>) => void
  /** Stores a group's next offsets in one transaction. */
  readonly commit: (
    groupId: string,
    offsets: ReadonlyArray<{ readonly partition: number; readonly nextOffset: number }>
  ) => void
  readonly trim: (partition: number, belowOffset: number) => void
}

export interface MemoryLogOptions {
  readonly partitions: number
  /**
   * Records kept per partition beyond what every group has committed (default 10,000): a group
   * that starts from the earliest offset reads these. They are held in memory (and journaled), so
   * the bound is what a busy embedded server keeps for good: ~450 bytes of heap a record, which
   * every full GC marks again.
   */
  readonly retainRecords?: number
  /**
   * How far a live reader of a group that does not commit (the broadcast) may fall behind before
   * trimming goes on without it (default 100,000 records per partition, ~45 MB): it then skips
   * records, with a warning. Up to that, what it has yet to read is kept whatever `retainRecords`.
   */
  readonly heldForReadersAtMost?: number
  readonly maxBatch?: number
  readonly journal?: LogJournal
}

/** A record as the log holds it: it lets go of the producer's event once the record is old. */
type HeldRecord = { -readonly [K in keyof LogRecord]: LogRecord[K] }

/**
 * Records per partition that keep the producer's event next to its JSON: consumers near the end of
 * the log skip decoding, and the events of the (much larger) retained tail are left to the GC.
 */
const RECORDS_WITH_EVENT = 2_000

/** Scope keys whose partition the producer remembers (murmur2 over the key's UTF-8 per send cost more). */
const REMEMBERED_PARTITIONS = 10_000

interface Partition {
  records: Array<HeldRecord>
  /** Offset of records[0]. */
  baseOffset: number
  /** The end of what consumers see: every record before it is stored (journaled when there is a journal). */
  nextOffset: number
  /** The next offset to hand out; beyond nextOffset while a group commit is pending. */
  reservedOffset: number
}

/** A produced record waiting for its group commit, and how to answer its producer. */
interface PendingAppend {
  readonly record: HeldRecord
  readonly resume: (result: Effect.Effect<StreamPosition, DependencyUnavailable>) => void
}

interface Member {
  readonly id: number
  readonly positions: Map<number, number>
  /**
   * Per partition, the lowest offset this member may still read: its start, then its position.
   * For groups that do not commit (the broadcast), trimming keeps what these hold.
   */
  readonly holds: Map<number, number>
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

export const makeMemoryLog = (
  options: MemoryLogOptions
): Effect.Effect<MemoryLog, DependencyUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const retain = options.retainRecords ?? 10_000
    const heldForReaders = options.heldForReadersAtMost ?? 100_000
    const maxBatch = options.maxBatch ?? 1_000
    const journal = options.journal
    const partitions: Array<Partition> = Array.from({ length: options.partitions }, () => ({
      records: [],
      baseOffset: 0,
      nextOffset: 0,
      reservedOffset: 0
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
        state.reservedOffset = next
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

    /** A rebalance: the member finds its partitions' positions again when it next reads them. */
    const clearPositions = (member: Member) => {
      member.positions.clear()
      member.holds.clear()
    }

    const ownedBy = (group: Group, member: Member): ReadonlyArray<number> => {
      const index = group.members.indexOf(member)
      const count = group.members.length
      return partitions.map((_, p) => p).filter((p) => p % count === index)
    }

    /**
     * Drops records every durable group has committed and every live reader of the others has read
     * (up to `heldForReaders` behind), keeping at most `retain` of them.
     */
    const trim = (partition: number) => {
      const state = partitions[partition]!
      let committed = state.nextOffset
      let unread = state.nextOffset
      for (const group of groups.values()) {
        if (group.durable) committed = Math.min(committed, group.committed.get(partition) ?? 0)
        else for (const member of group.members) unread = Math.min(unread, member.holds.get(partition) ?? unread)
      }
      const floor = Math.min(committed, Math.max(unread, state.nextOffset - heldForReaders))
      const drop = Math.min(floor, state.nextOffset - retain) - state.baseOffset
      if (drop > 0) {
        state.records.splice(0, drop)
        state.baseOffset += drop
        journal?.trim(partition, state.baseOffset)
      }
    }

    /** Makes stored records visible to consumers, in offset order per partition. */
    const publish = (record: HeldRecord) => {
      const state = partitions[record.partition]!
      if (state.records.length === 0) state.baseOffset = record.offset
      state.records.push(record)
      state.nextOffset = record.offset + 1
      const aged = state.records[state.records.length - 1 - RECORDS_WITH_EVENT]
      if (aged !== undefined) aged.event = undefined
    }

    // Group commit: the produces of one event-loop turn (every fiber that ran in it) are journaled in
    // one SQLite transaction, then made visible, then acknowledged. A record is acknowledged only once
    // the journal holds it, and consumers never see one it does not hold.
    let pending: Array<PendingAppend> = []
    let flushScheduled: ReturnType<typeof setImmediate> | undefined
    const flush = (store: LogJournal) => {
      flushScheduled = undefined
      const batch = pending
      pending = []
      if (batch.length === 0) return
      try {
        store.append(batch.map((p) => p.record))
      } catch (error) {
        // Nothing of the batch is stored or visible: hand its offsets out again.
        for (const state of partitions) state.reservedOffset = state.nextOffset
        const failed = Effect.fail(failure(error))
        for (const p of batch) p.resume(failed)
        return
      }
      for (const p of batch) publish(p.record)
      notify()
      for (const p of batch) p.resume(Effect.succeed({ partition: p.record.partition, offset: p.record.offset }))
    }
    // Whatever is pending when the log closes is still stored and answered, before the journal closes.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        if (flushScheduled !== undefined) clearImmediate(flushScheduled)
        if (journal !== undefined) flush(journal)
      })
    )

    const append = (
      key: string,
      value: string,
      partition: number,
      timestampMs: number,
      event: ChatEvent,
      { correlationId, traceParent }: RecordContext
    ) => {
      const state = partitions[partition]!
      const reserve = (): HeldRecord => ({
        partition,
        offset: state.reservedOffset++,
        key,
        value,
        timestampMs,
        event,
        // the sender's context, as Kafka's record headers carry it (see recordContext)
        ...(traceParent === undefined ? {} : { traceParent }),
        ...(correlationId === undefined ? {} : { correlationId })
      })
      if (journal === undefined) {
        return Effect.sync((): StreamPosition => {
          const record = reserve()
          publish(record)
          notify()
          return { partition, offset: record.offset }
        })
      }
      // The record is stored even if its producer is interrupted while it waits, as with Kafka.
      return Effect.async<StreamPosition, DependencyUnavailable>((resume) => {
        pending.push({ record: reserve(), resume })
        flushScheduled ??= setImmediate(flush, journal)
      })
    }

    const knownPartitions = new Map<string, number>()
    const partitionOf = (key: string): number => {
      let partition = knownPartitions.get(key)
      if (partition === undefined) {
        if (knownPartitions.size >= REMEMBERED_PARTITIONS) knownPartitions.clear()
        partition = partitionForKey(key, options.partitions)
        knownPartitions.set(key, partition)
      }
      return partition
    }

    const producer = ChatEventProducer.of({
      produce: traced("MemoryLog.produce", { kind: "producer" })((event: ChatEvent) =>
        Either.match(encodeChatEventJson(event), {
          onLeft: (error) => Effect.fail(failure(error)),
          onRight: (value) => {
            const key = scopeKey(event)
            // the clock and the caller's trace read where the record is made: one step, per send
            return Effect.clockWith((clock) =>
              Effect.withFiberRuntime<StreamPosition, DependencyUnavailable>((fiber) =>
                append(key, value, partitionOf(key), clock.unsafeCurrentTimeMillis(), event, recordContextOf(fiber))
              )
            )
          }
        })
      )
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
          group.durable = startFrom === "committed-or-earliest"
          // given offsets, and the end of the log now for a partition they do not name
          const given = typeof startFrom === "object"
            ? new Map(
              partitions.map((state, partition) => [partition, startFrom.offsets.get(partition) ?? state.nextOffset])
            )
            : undefined
          const member: Member = { id: nextMemberId++, positions: new Map(), holds: new Map(given) }
          // partitions this member has been given so far: later it resumes them as Kafka does
          const startedOnce = new Set<number>()
          yield* Effect.acquireRelease(
            Effect.sync(() => {
              // a new member takes over partitions from their committed offsets, as after a rebalance
              for (const other of group.members) clearPositions(other)
              group.members.push(member)
              notify()
            }),
            () =>
              Effect.sync(() => {
                group.members.splice(group.members.indexOf(member), 1)
                for (const other of group.members) clearPositions(other)
                notify()
              })
          )
          const positionOf = (partition: number): number => {
            const known = member.positions.get(partition)
            if (known !== undefined) return known
            const state = partitions[partition]!
            const floor = given?.get(partition)
            const start = floor !== undefined
              // the given offset; after a rebalance, where the group committed beyond it (as on Kafka)
              ? (startedOnce.has(partition) ? Math.max(floor, group.committed.get(partition) ?? 0) : floor)
              : startFrom === "latest"
              ? state.nextOffset
              : Math.max(group.committed.get(partition) ?? 0, state.baseOffset)
            member.positions.set(partition, start)
            startedOnce.add(partition)
            return start
          }
          const poll: Effect.Effect<Chunk.Chunk<LogRecord>> = Effect.suspend(() => {
            const seen = version
            const batch: Array<LogRecord> = []
            let skipped = 0
            for (const partition of ownedBy(group, member)) {
              const state = partitions[partition]!
              const position = positionOf(partition)
              const from = Math.max(position, state.baseOffset)
              skipped += from - position
              const to = Math.min(state.nextOffset, from + maxBatch - batch.length)
              for (let offset = from; offset < to; offset++) batch.push(state.records[offset - state.baseOffset]!)
              member.positions.set(partition, to)
              member.holds.set(partition, to)
              if (batch.length >= maxBatch) break
            }
            const read = batch.length > 0
              ? Effect.succeed(Chunk.unsafeFromArray(batch))
              : Effect.zipRight(waitForChange(seen), poll)
            return skipped === 0 ? read : Effect.zipRight(
              Effect.logWarning(
                `Consumer group ${groupId} fell behind the embedded log's retention and skipped ${skipped} record(s)`
              ),
              read
            )
          })
          return {
            records: Stream.repeatEffectChunk(poll),
            commit: (positions: ReadonlyArray<StreamPosition>) =>
              Effect.try({
                try: () => {
                  const advanced = positions.filter(({ offset, partition }) =>
                    (group.committed.get(partition) ?? 0) <= offset
                  )
                  if (group.durable && advanced.length > 0) {
                    journal?.commit(
                      groupId,
                      advanced.map(({ offset, partition }) => ({ partition, nextOffset: offset + 1 }))
                    )
                  }
                  for (const { offset, partition } of advanced) {
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
