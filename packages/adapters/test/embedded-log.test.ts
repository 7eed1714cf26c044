import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { randomUUID } from "node:crypto"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Layer, Stream } from "effect"
import { ChatEventProducer, ChatEventSource } from "@chatify/core"
import { ChatEvent } from "@chatify/domain"
import { makeMemoryLog, MemoryLogLayerFrom } from "../src/memory/index.js"
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

const journaled = (dataDirectory: string, options: { readonly retainRecords?: number } = {}) =>
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
        const sent = yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => event(`m${i}`)), (e) =>
          producer.produce(e))
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

  it.live("refuses to start when the journal holds more partitions than configured", () =>
    Effect.gen(function*() {
      const dir = freshDirectory()
      yield* Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        for (let i = 0; i < 30; i++) yield* producer.produce(new ChatEvent({ ...event("x"), scopeId: `s${i}` }))
      }).pipe(Effect.scoped, Effect.provide(journaled(dir)))
      const smaller = MemoryLogLayerFrom(
        Effect.flatMap(makeSqliteLogJournal({ dataDirectory: dir }), (journal) => makeMemoryLog({ partitions: 1, journal }))
      )
      const error = yield* Effect.scoped(Layer.build(smaller)).pipe(Effect.flip)
      expect(error.message).toContain("CHATIFY__MESSAGEBROKER__PARTITIONS")
    }))
})
