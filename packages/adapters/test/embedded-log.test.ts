import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { randomUUID } from "node:crypto"
import { afterEach, describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Chunk, Effect, Layer, Logger, LogLevel, Schema, Stream } from "effect"
import { ChatEventProducer, ChatEventSource, type LogRecord } from "@chatify/core"
import { ChatEvent, ChatEventJson } from "@chatify/domain"
import { type LogJournal, makeMemoryLog, MemoryLogLayerFrom } from "../src/memory/index.js"
import { makeSqliteLogJournal } from "../src/sqlite/index.js"
import { eventLogContract } from "./contracts/EventLogContract.js"

const directories: Array<string> = []
const freshDirectory = () => {
  const dir = mkdtempSync(join(tmpdir(), "chatify-log-"))
  directories.push(dir)
  return dir
}
afterEach(() => {
  for (const dir of directories.splice(0)) rmSync(dir, { recursive: true, force: true })
})

const journaled = (
  dataDirectory: string,
  options: { readonly retainRecords?: number; readonly heldForReadersAtMost?: number } = {}
) =>
  MemoryLogLayerFrom(
    Effect.flatMap(makeSqliteLogJournal({ dataDirectory }), (journal) =>
      makeMemoryLog({ partitions: 3, journal, ...options }))
  )

const event = (text: string) =>
  new ChatEvent({
    messageId: randomUUID(),
    scopeType: 0,
    scopeId: "general",
    senderId: "alice",
    text,
    createdAtUtc: new Date(Date.UTC(2026, 0, 1)),
    originPodId: "pod-a"
  })

const GROUP = "chatify-chat-history-writer"

eventLogContract("embedded log with SQLite journal", { makeLayer: () => journaled(freshDirectory()) })

describe("embedded log journal", () => {
  it.live("keeps acknowledged records, offsets and group commits across a restart", () =>
    Effect.gen(function*() {
      const dir = freshDirectory()
      const positions = yield* Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        const source = yield* ChatEventSource
        const sent = yield* Effect.forEach([1, 2, 3, 4].map((i) => event(`m${i}`)), (e) => producer.produce(e))
        const consumer = yield* source.consume({ groupId: GROUP, startFrom: "committed-or-earliest" })
        const read = yield* Stream.runCollect(Stream.take(consumer.records, 2))
        const last = Chunk.unsafeLast(read)
        yield* consumer.commit([{ partition: last.partition, offset: last.offset }])
        return sent
      }).pipe(Effect.scoped, Effect.provide(journaled(dir)))

      yield* Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        const source = yield* ChatEventSource
        const partition = positions[0]!.partition
        expect((yield* source.committedOffsets(GROUP)).get(partition)).toBe(positions[1]!.offset + 1)
        const next = yield* producer.produce(event("m5"))
        expect(next).toEqual({ partition, offset: positions[3]!.offset + 1 })
        const consumer = yield* source.consume({ groupId: GROUP, startFrom: "committed-or-earliest" })
        const rest = yield* Stream.runCollect(Stream.take(consumer.records, 3))
        expect(Chunk.toReadonlyArray(rest).map((r) => r.offset)).toEqual([
          positions[2]!.offset,
          positions[3]!.offset,
          next.offset
        ])
      }).pipe(Effect.scoped, Effect.provide(journaled(dir)))
    }))

  it.live("trims records every durable group has committed, beyond the retention, and keeps offsets", () =>
    Effect.gen(function*() {
      const dir = freshDirectory()
      const last = yield* Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        const source = yield* ChatEventSource
        const sent = yield* Effect.forEach(
          Array.from({ length: 10 }, (_, i) => event(`m${i}`)),
          (e) => producer.produce(e)
        )
        const consumer = yield* source.consume({ groupId: GROUP, startFrom: "committed-or-earliest" })
        yield* Stream.runDrain(Stream.take(consumer.records, 10))
        yield* consumer.commit([sent[9]!])
        return sent[9]!
      }).pipe(Effect.scoped, Effect.provide(journaled(dir, { retainRecords: 2 })))

      yield* Effect.gen(function*() {
        const source = yield* ChatEventSource
        const fresh = yield* source.consume({ groupId: `new-${randomUUID()}`, startFrom: "committed-or-earliest" })
        const kept = yield* Stream.runCollect(Stream.take(fresh.records, 2))
        expect(Chunk.toReadonlyArray(kept).map((r) => r.offset)).toEqual([last.offset - 1, last.offset])
        expect((yield* source.endOffsets).get(last.partition)).toBe(last.offset + 1)
      }).pipe(Effect.scoped, Effect.provide(journaled(dir, { retainRecords: 2 })))
    }))

  /**
   * A broadcast-like reader (a group that does not commit, from given offsets) that has not read
   * yet, ten records, and the durable group done with all of them: only the retention (2) is left
   * to keep, and what the reader has yet to read.
   */
  const behindTheWriter = Effect.gen(function*() {
    const producer = yield* ChatEventProducer
    const source = yield* ChatEventSource
    const live = yield* source.consume({
      groupId: `broadcast-${randomUUID()}`,
      startFrom: { offsets: new Map(yield* source.endOffsets) }
    })
    const sent = yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => event(`m${i}`)), (e) => producer.produce(e))
    const writer = yield* source.consume({ groupId: GROUP, startFrom: "committed-or-earliest" })
    yield* Stream.runDrain(Stream.take(writer.records, 10))
    yield* writer.commit([sent[9]!])
    return { live, sent }
  })

  it.scopedLive("keeps what a live reader of a group that does not commit has yet to read, beyond the retention", () =>
    Effect.gen(function*() {
      const { live, sent } = yield* behindTheWriter
      const read = yield* Stream.runCollect(Stream.take(live.records, 10)).pipe(
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the reader did not get all ten") })
      )
      expect(Chunk.toReadonlyArray(read).map((r) => r.offset)).toEqual(sent.map((p) => p.offset))
    }).pipe(Effect.provide(journaled(freshDirectory(), { retainRecords: 2 }))))

  it.scopedLive("a live reader further behind than heldForReadersAtMost skips what was trimmed, with a warning", () =>
    Effect.gen(function*() {
      const warnings: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel === LogLevel.Warning) warnings.push(String(message))
      })
      const { live, sent } = yield* behindTheWriter
      const read = yield* Stream.runCollect(Stream.take(live.records, 3)).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the reader did not get three") })
      )
      // the durable group is done and the reader is held for 3 at most: offsets 7, 8, 9 are left
      expect(Chunk.toReadonlyArray(read).map((r) => r.offset)).toEqual(sent.slice(7).map((p) => p.offset))
      expect(warnings.join("\n")).toContain("skipped 7 record(s)")
    }).pipe(Effect.provide(journaled(freshDirectory(), { retainRecords: 2, heldForReadersAtMost: 3 }))))

  it.live("refuses to start when the journal holds more partitions than configured", () =>
    Effect.gen(function*() {
      const dir = freshDirectory()
      yield* Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        for (let i = 0; i < 30; i++) yield* producer.produce(new ChatEvent({ ...event("x"), scopeId: `s${i}` }))
      }).pipe(Effect.scoped, Effect.provide(journaled(dir)))
      const smaller = MemoryLogLayerFrom(
        Effect.flatMap(makeSqliteLogJournal({ dataDirectory: dir }), (journal) =>
          makeMemoryLog({ partitions: 1, journal }))
      )
      const error = yield* Effect.scoped(Layer.build(smaller)).pipe(Effect.flip)
      expect(error.message).toContain("CHATIFY__MESSAGEBROKER__PARTITIONS")
    }))
})

/** A journal in memory that records each append (one call = one transaction) and can be made to fail. */
const recordingJournal = (options: { readonly failAppends?: number } = {}) => {
  const appends: Array<ReadonlyArray<LogRecord>> = []
  let failures = options.failAppends ?? 0
  const journal: LogJournal = {
    load: () => ({ records: [], nextOffsets: new Map(), committed: [] }),
    append: (records) => {
      if (failures > 0) {
        failures--
        throw new Error("disk full")
      }
      appends.push([...records])
    },
    commit: () => {},
    trim: () => {}
  }
  return { appends, journal }
}

const inScopes = (n: number) =>
  Array.from({ length: n }, (_, i) => new ChatEvent({ ...event(`m${i}`), scopeId: `scope-${i % 7}` }))

describe("embedded log group commit", () => {
  it.live("acknowledges a produce only once its record is in the SQLite journal", () =>
    Effect.gen(function*() {
      const dir = freshDirectory()
      yield* Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        // Another connection to the journal file: what it can read would survive a crash of this process.
        const reader = yield* Effect.acquireRelease(
          Effect.sync(() => new Database(join(dir, "log.sqlite"), { readonly: true })),
          (db) => Effect.sync(() => db.close())
        )
        const stored = reader.prepare<[number, number], { value: string }>(
          "SELECT value FROM log_records WHERE partition = ? AND offset = ?"
        )
        const events = inScopes(200)
        const positions = yield* Effect.forEach(
          events,
          (e) =>
            producer.produce(e).pipe(
              Effect.tap((position) => {
                expect(stored.get(position.partition, position.offset)?.value).toBe(
                  Schema.encodeSync(ChatEventJson)(e)
                )
              })
            ),
          { concurrency: "unbounded" }
        )
        expect(new Set(positions.map((p) => `${p.partition}:${p.offset}`)).size).toBe(events.length)
      }).pipe(Effect.scoped, Effect.provide(journaled(dir)))
    }))

  it.live("journals the produces of one turn in one transaction, in offset order", () =>
    Effect.gen(function*() {
      const { appends, journal } = recordingJournal()
      const positions = yield* Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        return yield* Effect.forEach(inScopes(100), (e) => producer.produce(e), { concurrency: "unbounded" })
      }).pipe(Effect.scoped, Effect.provide(MemoryLogLayerFrom(makeMemoryLog({ partitions: 3, journal }))))
      expect(appends.length).toBeLessThanOrEqual(2)
      const journaled = appends.flat()
      expect(journaled.map((r) => `${r.partition}:${r.offset}`).sort()).toEqual(
        positions.map((p) => `${p.partition}:${p.offset}`).sort()
      )
      for (const partition of [0, 1, 2]) {
        const offsets = journaled.filter((r) => r.partition === partition).map((r) => r.offset)
        expect(offsets).toEqual(offsets.map((_, i) => i))
      }
    }))

  it.live("a failed journal write fails its whole batch, shows consumers nothing and hands the offsets out again", () =>
    Effect.gen(function*() {
      const { appends, journal } = recordingJournal({ failAppends: 1 })
      yield* Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        const source = yield* ChatEventSource
        const failed = yield* Effect.forEach(inScopes(10), (e) => Effect.flip(producer.produce(e)), {
          concurrency: "unbounded"
        })
        expect(failed.every((error) => error._tag === "DependencyUnavailable")).toBe(true)
        expect(Array.from((yield* source.endOffsets).values())).toEqual([0, 0, 0])

        const next = event("after the failure")
        const position = yield* producer.produce(next)
        expect(position.offset).toBe(0)
        const consumer = yield* source.consume({ groupId: GROUP, startFrom: "committed-or-earliest" })
        const read = yield* Stream.runCollect(Stream.take(consumer.records, 1))
        expect(Chunk.toReadonlyArray(read).map((r) => r.value)).toEqual([Schema.encodeSync(ChatEventJson)(next)])
      }).pipe(Effect.scoped, Effect.provide(MemoryLogLayerFrom(makeMemoryLog({ partitions: 3, journal }))))
      expect(appends.flat().length).toBe(1)
    }))

  it.live("hands consumers the producer's event with its JSON, and only the JSON for an old record", () =>
    Effect.gen(function*() {
      const dir = freshDirectory()
      const sent = event("carried")
      yield* Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        const source = yield* ChatEventSource
        yield* producer.produce(sent)
        const consumer = yield* source.consume({ groupId: GROUP, startFrom: "committed-or-earliest" })
        const [record] = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(consumer.records, 1)))
        expect(record?.event).toBe(sent)
        expect(record?.value).toBe(Schema.encodeSync(ChatEventJson)(sent))
      }).pipe(Effect.scoped, Effect.provide(journaled(dir)))
      // after a restart the records come from the journal: JSON only, which consumers decode
      yield* Effect.gen(function*() {
        const source = yield* ChatEventSource
        const consumer = yield* source.consume({ groupId: GROUP, startFrom: "committed-or-earliest" })
        const [record] = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(consumer.records, 1)))
        expect(record?.event).toBeUndefined()
        expect(Schema.decodeSync(ChatEventJson)(record!.value)).toEqual(sent)
      }).pipe(Effect.scoped, Effect.provide(journaled(dir)))
    }))
})
