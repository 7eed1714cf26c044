import { describe, expect, it } from "@effect/vitest"
import {
  Clock,
  Duration,
  Effect,
  FastCheck,
  Fiber,
  HashMap,
  Layer,
  Logger,
  LogLevel,
  Queue,
  Schema,
  Stream,
  TestClock
} from "effect"
import {
  ChatEventSource,
  ChatHistory,
  ConsumerHealth,
  type ConsumerState,
  CoreSettings,
  DeadLetters,
  historyWriter,
  type LogRecord,
  supervise
} from "../src/index.js"
import { ChatEvent, ChatEventJson, DependencyUnavailable, type StreamPosition } from "@chatify/domain"

// The history writer's promise: every record of the log reaches the history, an offset is committed
// only after what it covers was written (or dead-lettered), a store failure is retried within the
// budget and past it the writer restarts from its committed offsets. These fakes count *writes*
// (each append call, per message), not rows: a real history absorbs a second write of a messageId,
// so only counting the writes shows whether one happened.

const PARTITIONS = 3
const GROUP = "history-writer-test"

/** One record of the fake log: a ChatEvent's JSON, or a payload no decoder accepts. */
const recordAt = (partition: number, offset: number, malformed: boolean): LogRecord => {
  const n = partition * 100_000 + offset
  const event = new ChatEvent({
    messageId: `00000000-0000-7000-8000-${String(n).padStart(12, "0")}`,
    scopeType: 0,
    scopeId: `scope-${partition}`,
    senderId: "alice",
    text: `m-${partition}-${offset}`,
    createdAtUtc: new Date(Date.UTC(2026, 0, 15, 10, 30) + n),
    originPodId: "pod-a"
  })
  return {
    partition,
    offset,
    key: `0:scope-${partition}`,
    value: malformed ? `{"not":"a chat event" ${n}` : Schema.encodeSync(ChatEventJson)(event),
    timestampMs: 0
  }
}

/** A log from the partition of each record in turn (offsets count up per partition). */
const logOf = (records: ReadonlyArray<{ readonly partition: number; readonly malformed: boolean }>) => {
  const next = new Map<number, number>()
  return records.map(({ malformed, partition }) => {
    const offset = next.get(partition) ?? 0
    next.set(partition, offset + 1)
    return recordAt(partition, offset, malformed)
  })
}

const idOf = (record: LogRecord) => `${record.partition}:${record.offset}`

/** What the writer did, in order: successful writes, dead letters and commits (failed calls are not in it). */
type Op =
  | { readonly _tag: "append"; readonly records: ReadonlyArray<string> }
  | { readonly _tag: "deadLetter"; readonly record: string }
  | { readonly _tag: "commit"; readonly positions: ReadonlyArray<StreamPosition> }

/** Whether a call fails: `call` counts that operation's calls from 1, `now` is the clock. */
type Failing = (call: number, now: number) => boolean
const never: Failing = () => false
const firstCalls = (n: number): Failing => (call) => call <= n
const untilMillis = (millis: number): Failing => (_, now) => now < millis

const down = (what: string) => new DependencyUnavailable({ dependency: what, message: `${what} is down` })

const makeWorld = (log: ReadonlyArray<LogRecord>, options: {
  readonly append?: Failing
  readonly commit?: Failing
  readonly deadLetter?: Failing
  /** How the fake log hands records over: at most this many per chunk. */
  readonly chunkSize?: number
  /**
   * Records arrive `records` at a time every `everyMillis` (virtual time) instead of all being there
   * at once; the consumer gets what arrived since it last asked, as a Kafka consumer's buffer does.
   */
  readonly arrivals?: { readonly everyMillis: number; readonly records: number }
  readonly settings?: Partial<CoreSettings["Type"]>
}) => {
  const ops: Array<Op> = []
  const states: Array<ConsumerState> = []
  const committed = new Map<number, number>()
  const calls = { append: 0, commit: 0, deadLetter: 0, consume: 0, failed: 0 }
  const byMessageId = new Map<string, string>()
  for (const record of log) {
    const decoded = Schema.decodeEither(ChatEventJson)(record.value)
    if (decoded._tag === "Right") byMessageId.set(decoded.right.messageId, idOf(record))
  }
  const ends = new Map<number, number>()
  for (const record of log) ends.set(record.partition, Math.max(ends.get(record.partition) ?? 0, record.offset + 1))

  const failing = (name: "append" | "commit" | "deadLetter", rule: Failing | undefined) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      calls[name]++
      if (!(rule ?? never)(calls[name], now)) return Effect.void
      calls.failed++
      return Effect.fail(down(name))
    })

  const layer = Layer.mergeAll(
    Layer.succeed(ChatEventSource, {
      partitions: PARTITIONS,
      // a consumer of the group reads from what the group committed (the earliest record else),
      // then waits for more, as a real one does
      consume: ({ groupId, maxBatchRecords, startFrom }) =>
        Effect.gen(function*() {
          expect(groupId).toBe(GROUP)
          expect(startFrom).toBe("committed-or-earliest")
          // the source must be able to hand a whole batch at once: a shorter chunk reads as "caught up"
          expect(maxBatchRecords).toBe(options.settings?.historyBatchSize ?? CoreSettings.defaults.historyBatchSize)
          calls.consume++
          const pending = log.filter((record) => record.offset >= (committed.get(record.partition) ?? 0))
          const { arrivals } = options
          let records: Stream.Stream<LogRecord> = Stream.concat(
            Stream.rechunk(Stream.fromIterable(pending), options.chunkSize ?? 4096),
            Stream.never
          )
          if (arrivals !== undefined) {
            const arrived = yield* Queue.unbounded<LogRecord>()
            const bursts = Array.from(
              { length: Math.ceil(pending.length / arrivals.records) },
              (_, i) => pending.slice(i * arrivals.records, (i + 1) * arrivals.records)
            )
            yield* Effect.forkScoped(
              Effect.forEach(bursts, (burst) =>
                Effect.zipRight(Effect.sleep(arrivals.everyMillis), arrived.offerAll(burst)))
            )
            records = Stream.fromQueue(arrived)
          }
          return {
            records,
            commit: (positions: ReadonlyArray<StreamPosition>) =>
              Effect.zipRight(
                failing("commit", options.commit),
                Effect.sync(() => {
                  ops.push({ _tag: "commit", positions })
                  for (const { offset, partition } of positions) {
                    committed.set(partition, Math.max(committed.get(partition) ?? 0, offset + 1))
                  }
                })
              )
          }
        }),
      endOffsets: Effect.sync(() => new Map(ends)),
      committedOffsets: () => Effect.sync(() => new Map(committed))
    }),
    Layer.succeed(ChatHistory, {
      append: (events) =>
        Effect.zipRight(
          failing("append", options.append),
          Effect.sync(() => {
            ops.push({
              _tag: "append",
              records: events.map((e) => byMessageId.get(e.chatEvent.messageId) ?? "unknown")
            })
          })
        ),
      page: () => Effect.succeed({ items: [], next: undefined }),
      after: () => Effect.succeed([]),
      ping: Effect.void
    }),
    Layer.succeed(DeadLetters, {
      publish: (record) =>
        Effect.zipRight(
          failing("deadLetter", options.deadLetter),
          Effect.sync(() => {
            ops.push({ _tag: "deadLetter", record: idOf(record) })
          })
        )
    }),
    Layer.succeed(ConsumerHealth, {
      report: (name, state) =>
        Effect.sync(() => {
          if (name === "history-writer") states.push(state)
        }),
      snapshot: Effect.sync(() => new Map()),
      changes: Stream.empty
    }),
    CoreSettings.layer({ historyWriterGroup: GROUP, ...options.settings })
  )

  /** Every partition committed up to its end: the writer has processed the whole log. */
  const caughtUp = Effect.sync(() => Array.from(ends).every(([partition, end]) => committed.get(partition) === end))

  /** How many times each record was written to the history (absent: never). */
  const writes = () => {
    const counts = new Map<string, number>()
    for (const op of ops) {
      if (op._tag === "append") { for (const id of op.records) counts.set(id, (counts.get(id) ?? 0) + 1) }
    }
    return counts
  }

  /**
   * The order the writer must keep: a commit covers only records already written (or dead-lettered),
   * and a record is never written again once a commit covered it.
   */
  const expectCommitsAfterWrites = () => {
    const done = new Set<string>()
    const covered = new Set<string>()
    for (const op of ops) {
      if (op._tag === "append") {
        for (const id of op.records) {
          expect(covered.has(id), `${id} written again after its offset was committed`).toBe(false)
          done.add(id)
        }
      } else if (op._tag === "deadLetter") {
        done.add(op.record)
      } else {
        for (const { offset, partition } of op.positions) {
          for (const record of log) {
            if (record.partition !== partition || record.offset > offset) continue
            expect(done.has(idOf(record)), `${idOf(record)} committed before it was written`).toBe(true)
            covered.add(idOf(record))
          }
        }
      }
    }
  }

  return { layer, ops, states, calls, caughtUp, writes, expectCommitsAfterWrites }
}

/**
 * Runs the supervised writer on the TestClock, 100 ms at a time, until `done` holds or `within`
 * (virtual time) has passed; then stops it. Returns whether `done` held.
 */
const runWriterUntil = (
  world: ReturnType<typeof makeWorld>,
  within: Duration.DurationInput = "2 minutes"
) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(
      // its warnings about the failures are expected here
      supervise("history-writer", historyWriter).pipe(
        Effect.provide(world.layer),
        Logger.withMinimumLogLevel(LogLevel.None)
      )
    )
    let reached = false
    for (let waited = 0; waited <= Duration.toMillis(within); waited += 100) {
      if (yield* world.caughtUp) {
        reached = true
        break
      }
      yield* TestClock.adjust("100 millis")
    }
    // a little longer: a writer that goes on writing or committing after catching up shows it here
    yield* TestClock.adjust("1 second")
    yield* Fiber.interrupt(fiber)
    return reached
  })

const wellFormedOf = (log: ReadonlyArray<LogRecord>) =>
  log.filter((record) => Schema.decodeEither(ChatEventJson)(record.value)._tag === "Right").map(idOf)
const malformedOf = (log: ReadonlyArray<LogRecord>) =>
  log.filter((record) => Schema.decodeEither(ChatEventJson)(record.value)._tag === "Left").map(idOf)

describe("history writer: exactly-once writes through failures", () => {
  it.effect.prop(
    "failures within the retry budget: every event written once, every malformed record dead-lettered once, commits only after, no restart",
    {
      records: FastCheck.array(
        FastCheck.record({
          partition: FastCheck.integer({ min: 0, max: PARTITIONS - 1 }),
          // about one record in five cannot be decoded
          malformed: FastCheck.integer({ min: 0, max: 9 }).map((n) => n < 2)
        }),
        { minLength: 1, maxLength: 30 }
      ),
      batchSize: FastCheck.integer({ min: 1, max: 8 }),
      chunkSize: FastCheck.integer({ min: 1, max: 12 }),
      appendFailures: FastCheck.integer({ min: 0, max: 5 }),
      commitFailures: FastCheck.integer({ min: 0, max: 3 }),
      deadLetterFailures: FastCheck.integer({ min: 0, max: 3 })
    },
    ({ appendFailures, batchSize, chunkSize, commitFailures, deadLetterFailures, records }) =>
      Effect.gen(function*() {
        const log = logOf(records)
        const world = makeWorld(log, {
          append: firstCalls(appendFailures),
          commit: firstCalls(commitFailures),
          deadLetter: firstCalls(deadLetterFailures),
          chunkSize,
          // 5 failures in a row back off about 3 s in all: well inside the budget
          settings: { historyBatchSize: batchSize, consumerRetryBudget: Duration.seconds(30) }
        })
        expect(yield* runWriterUntil(world)).toBe(true)

        const writes = world.writes()
        expect(Object.fromEntries(writes)).toEqual(Object.fromEntries(wellFormedOf(log).map((id) => [id, 1])))
        const deadLettered = world.ops.flatMap((op) => (op._tag === "deadLetter" ? [op.record] : []))
        expect(deadLettered).toEqual(malformedOf(log))
        world.expectCommitsAfterWrites()
        // retried in place: one consumer for the whole run, back to running after each retry
        expect(world.calls.consume).toBe(1)
        expect(world.states.filter((s) => s === "restarting")).toEqual([])
        if (world.calls.failed > 0) {
          expect(world.states).toContain("retrying")
          expect(world.states.at(-2)).toBe("running")
        }
      }),
    { fastCheck: { numRuns: 40 } }
  )

  it.effect("a store down past the budget: the writer restarts from its committed offsets, and still writes each event once", () =>
    Effect.gen(function*() {
      const log = logOf(Array.from({ length: 12 }, (_, i) => ({ partition: i % PARTITIONS, malformed: false })))
      const world = makeWorld(log, {
        append: untilMillis(8_000),
        settings: { historyBatchSize: 4, consumerRetryBudget: Duration.seconds(2) }
      })
      expect(yield* runWriterUntil(world)).toBe(true)
      expect(world.calls.consume).toBeGreaterThan(1)
      expect(world.states).toContain("restarting")
      expect(Object.fromEntries(world.writes())).toEqual(Object.fromEntries(log.map((r) => [idOf(r), 1])))
      world.expectCommitsAfterWrites()
    }))

  it.effect("commits lost past the budget: the restarted writer writes again what was not committed, and only that", () =>
    Effect.gen(function*() {
      // one partition, batches of 4: the first batch commits, then commits fail for 6 s
      const log = logOf(Array.from({ length: 12 }, () => ({ partition: 0, malformed: false })))
      let firstCommitAt: number | undefined
      const world = makeWorld(log, {
        commit: (call, now) => {
          if (call === 1) {
            firstCommitAt = now
            return false
          }
          return now < (firstCommitAt ?? 0) + 6_000
        },
        settings: { historyBatchSize: 4, consumerRetryBudget: Duration.seconds(2) }
      })
      expect(yield* runWriterUntil(world)).toBe(true)
      expect(world.calls.consume).toBeGreaterThan(1)
      const writes = world.writes()
      // the committed batch once; the next one again after every restart (at-least-once, which
      // the idempotent append absorbs); every record at least once
      for (const record of log.slice(0, 4)) expect(writes.get(idOf(record))).toBe(1)
      expect(writes.get(idOf(log[4]!))).toBeGreaterThan(1)
      for (const record of log) expect(writes.get(idOf(record)) ?? 0).toBeGreaterThanOrEqual(1)
      world.expectCommitsAfterWrites()
    }))
})

describe("history writer: batches grow with the traffic", () => {
  const windows = { historyBatchWindow: Duration.millis(100), historyBatchMaxWindow: Duration.seconds(1) }
  const appendSizes = (world: ReturnType<typeof makeWorld>) =>
    world.ops.flatMap((op) => (op._tag === "append" ? [op.records.length] : []))
  const steady = (count: number) =>
    logOf(Array.from({ length: count }, (_, i) => ({ partition: i % 3, malformed: false })))

  it.effect("light traffic (20 messages a second) is stored within the shortest window", () =>
    Effect.gen(function*() {
      const log = steady(40)
      const world = makeWorld(log, {
        arrivals: { everyMillis: 50, records: 1 },
        settings: { historyBatchSize: 5_000, ...windows }
      })
      expect(yield* runWriterUntil(world)).toBe(true)
      // 100 ms at 20 a second: two messages a batch, three when one arrives on the boundary
      expect(Math.max(...appendSizes(world))).toBeLessThanOrEqual(3)
      expect(Object.fromEntries(world.writes())).toEqual(Object.fromEntries(log.map((r) => [idOf(r), 1])))
    }))

  /** Steady arrivals of `count` records, `records` every `everyMillis`; the largest batch and the batch count. */
  const batchesGrow = (
    { count, everyMillis, maxBatches, minLargest, records }: {
      readonly count: number
      readonly everyMillis: number
      readonly records: number
      readonly minLargest: number
      readonly maxBatches: number
    }
  ) =>
    Effect.gen(function*() {
      const log = steady(count)
      const world = makeWorld(log, {
        arrivals: { everyMillis, records },
        settings: { historyBatchSize: 5_000, ...windows }
      })
      expect(yield* runWriterUntil(world)).toBe(true)
      const sizes = appendSizes(world)
      expect(Math.max(...sizes)).toBeGreaterThanOrEqual(minLargest)
      expect(sizes.length).toBeLessThanOrEqual(maxBatches)
      expect(Object.fromEntries(world.writes())).toEqual(Object.fromEntries(log.map((r) => [idOf(r), 1])))
      world.expectCommitsAfterWrites()
    })

  // ~20, ~80, then ~200 a batch: a store paid per scope and request gets several rows a scope
  it.effect("moderate traffic (200 messages a second) is stored in batches of about a second, not of 100 ms", () =>
    batchesGrow({ count: 2_000, everyMillis: 50, records: 10, minLargest: 150, maxBatches: 20 }))

  // 1, ~100, ~400, then ~1,000 a batch (a second's worth): not 40 batches of 100
  it.effect("heavy traffic (1,000 messages a second) is stored in batches that grow to the longest window", () =>
    batchesGrow({ count: 4_000, everyMillis: 20, records: 20, minLargest: 900, maxBatches: 10 }))
})

describe("history writer: its log lines", () => {
  /** The lines the writer logs at `level` while it stores `log`, with their own annotations. */
  const linesAt = (log: ReadonlyArray<LogRecord>, level: LogLevel.LogLevel) =>
    Effect.gen(function*() {
      const world = makeWorld(log, {})
      const lines: Array<{ readonly message: unknown; readonly annotations: Record<string, unknown> }> = []
      const capture = Logger.make(({ annotations, message }) => {
        lines.push({
          message: Array.isArray(message) ? message[0] : message,
          annotations: Object.fromEntries(HashMap.toEntries(annotations))
        })
      })
      const fiber = yield* Effect.fork(
        supervise("history-writer", historyWriter).pipe(
          Effect.provide(world.layer),
          Effect.provide(Logger.replace(Logger.defaultLogger, capture)),
          Logger.withMinimumLogLevel(level)
        )
      )
      for (let waited = 0; waited < 100 && !(yield* world.caughtUp); waited++) yield* TestClock.adjust("100 millis")
      yield* Fiber.interrupt(fiber)
      return lines
    })

  it.effect("a malformed record's warning names its own sender's correlation id; a batch's line is written at Debug only", () =>
    Effect.gen(function*() {
      const log = logOf([
        { partition: 0, malformed: false },
        { partition: 0, malformed: true },
        { partition: 1, malformed: false }
      ]).map((record, i) => ({ ...record, correlationId: `correlation-${i}` }))
      type Line = Effect.Effect.Success<ReturnType<typeof linesAt>>[number]
      const malformedLines = (lines: ReadonlyArray<Line>) =>
        lines.filter((line) => line.message === "Skipping malformed chat event")
      const batchLines = (lines: ReadonlyArray<Line>) =>
        lines.filter((line) => line.message === "ChatHistoryWriter stored a batch")

      const debug = yield* linesAt(log, LogLevel.Debug)
      expect(malformedLines(debug).map((line) => line.annotations["correlationId"])).toEqual(["correlation-1"])
      expect(batchLines(debug).length).toBeGreaterThan(0)

      const info = yield* linesAt(log, LogLevel.Info)
      expect(malformedLines(info).length).toBe(1)
      expect(batchLines(info)).toEqual([])
    }))
})
