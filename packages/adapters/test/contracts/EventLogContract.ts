import { randomUUID } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Schedule, Schema, Stream } from "effect"
import type { Layer } from "effect"
import { ChatEventProducer, ChatEventSource, type LogRecord } from "@chatify/core"
import { ChatEvent, ChatEventJson, partitionForScope, type ScopeRef, scopeKey } from "@chatify/domain"

export interface EventLogContractOptions {
  /** A producer and a source over one log (a fresh topic, or a fresh embedded log). */
  readonly makeLayer: () => Layer.Layer<ChatEventProducer | ChatEventSource, unknown>
}

const eventIn = (scope: ScopeRef, text: string) =>
  new ChatEvent({
    messageId: randomUUID(),
    scopeType: scope.scopeType,
    scopeId: scope.scopeId,
    senderId: "contract-sender",
    text,
    createdAtUtc: new Date(Date.UTC(2026, 0, 15, 10, 30)),
    originPodId: "contract-pod"
  })

const channel = (): ScopeRef => ({ scopeType: 0, scopeId: `log-${randomUUID()}` })
const group = () => `contract-group-${randomUUID()}`
const decode = Schema.decodeSync(ChatEventJson)

/** Reads exactly `n` records from a consumer stream. */
const take = (records: Stream.Stream<LogRecord, unknown>, n: number) =>
  Stream.runCollect(Stream.take(records, n)).pipe(Effect.map(Chunk.toReadonlyArray))

/** What every event log (embedded or Kafka) must do for the producer and source ports. */
export const eventLogContract = (name: string, options: EventLogContractOptions) =>
  describe(`Event log contract: ${name}`, () => {
    it.scopedLive("keeps a scope on its partition, in order, with increasing offsets and the scope as key", () =>
      Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        const source = yield* ChatEventSource
        const scope = channel()
        const events = Array.from({ length: 20 }, (_, i) => eventIn(scope, `m${i}`))
        const positions = yield* Effect.forEach(events, (e) => producer.produce(e))
        const partition = partitionForScope(scope, source.partitions)
        expect(new Set(positions.map((p) => p.partition))).toEqual(new Set([partition]))
        for (let i = 1; i < positions.length; i++) {
          expect(positions[i]!.offset).toBeGreaterThan(positions[i - 1]!.offset)
        }

        const consumer = yield* source.consume({ groupId: group(), startFrom: "committed-or-earliest" })
        const records = yield* take(
          Stream.filter(consumer.records, (r) => r.key === scopeKey(scope)),
          events.length
        )
        expect(records.map((r) => decode(r.value).messageId)).toEqual(events.map((e) => e.messageId))
        expect(records.map((r) => ({ partition: r.partition, offset: r.offset }))).toEqual(positions)
        expect(decode(records[0]!.value)).toEqual(events[0])
      }).pipe(Effect.provide(options.makeLayer())))

    it.scopedLive("resumes a group after what it committed, and reports committed and end offsets", () =>
      Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        const source = yield* ChatEventSource
        const scope = channel()
        const groupId = group()
        const positions = yield* Effect.forEach(
          Array.from({ length: 6 }, (_, i) => eventIn(scope, `m${i}`)),
          (e) => producer.produce(e)
        )
        const ends = yield* source.endOffsets
        expect(ends.get(positions[0]!.partition)).toBe(positions[5]!.offset + 1)

        const ofScope = (records: Stream.Stream<LogRecord, unknown>) =>
          Stream.filter(records, (r) => r.key === scopeKey(scope))
        yield* Effect.scoped(Effect.gen(function*() {
          const first = yield* source.consume({ groupId, startFrom: "committed-or-earliest" })
          const read = yield* take(ofScope(first.records), 3)
          yield* first.commit([{ partition: read[2]!.partition, offset: read[2]!.offset }])
        }))
        const committed = yield* source.committedOffsets(groupId)
        expect(committed.get(positions[0]!.partition)).toBe(positions[2]!.offset + 1)

        const second = yield* source.consume({ groupId, startFrom: "committed-or-earliest" })
        const rest = yield* take(ofScope(second.records), 3)
        expect(rest.map((r) => r.offset)).toEqual(positions.slice(3).map((p) => p.offset))
      }).pipe(Effect.provide(options.makeLayer())))

    it.scopedLive("a consumer starting at latest sees only what is produced after it joined", () =>
      Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        const source = yield* ChatEventSource
        const scope = channel()
        yield* producer.produce(eventIn(scope, "before"))
        const consumer = yield* source.consume({ groupId: group(), startFrom: "latest" })
        const after = eventIn(scope, "after")
        // the consumer may need a moment to be assigned its partitions; keep producing until it reads
        const received = yield* take(Stream.filter(consumer.records, (r) => r.key === scopeKey(scope)), 1).pipe(
          Effect.raceFirst(Effect.forever(Effect.zipRight(producer.produce(after), Effect.sleep("200 millis"))))
        )
        expect(decode(received[0]!.value).text).toBe("after")
      }).pipe(Effect.provide(options.makeLayer())))

    it.scopedLive("a consumer starting at given offsets reads from each, whatever the group committed; another partition from its end", () =>
      Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        const source = yield* ChatEventSource
        const scope = channel()
        const partition = partitionForScope(scope, source.partitions)
        let other = channel()
        while (partitionForScope(other, source.partitions) === partition) other = channel()
        const groupId = group()
        const positions = yield* Effect.forEach(
          Array.from({ length: 6 }, (_, i) => eventIn(scope, `m${i}`)),
          (e) => producer.produce(e)
        )
        yield* producer.produce(eventIn(other, "before"))
        // the group committed beyond the offset it is then told to start from
        yield* Effect.scoped(Effect.gen(function*() {
          const first = yield* source.consume({ groupId, startFrom: "committed-or-earliest" })
          const read = yield* take(Stream.filter(first.records, (r) => r.key === scopeKey(scope)), 5)
          yield* first.commit([{ partition, offset: read[4]!.offset }])
        }))

        const consumer = yield* source.consume({
          groupId,
          startFrom: { offsets: new Map([[partition, positions[1]!.offset]]) }
        })
        const after = yield* producer.produce(eventIn(other, "after"))
        const read = yield* take(
          Stream.filter(consumer.records, (r) => r.key === scopeKey(scope) || r.key === scopeKey(other)),
          6
        ).pipe(Effect.timeout("20 seconds"))
        expect(read.filter((r) => r.key === scopeKey(scope)).map((r) => r.offset)).toEqual(
          positions.slice(1).map((p) => p.offset)
        )
        // the partition the offsets do not name starts at its end when the consumer started
        expect(read.filter((r) => r.key === scopeKey(other)).map((r) => r.offset)).toEqual([after.offset])
      }).pipe(Effect.provide(options.makeLayer())))

    it.scopedLive("splits the partitions of a group between its members: each record reaches one of them", () =>
      Effect.gen(function*() {
        const producer = yield* ChatEventProducer
        const source = yield* ChatEventSource
        const groupId = group()
        // four scopes on every partition, so whichever partitions a member owns, it has records to read
        const scopes: Array<ScopeRef> = []
        for (let partition = 0; partition < source.partitions; partition++) {
          while (scopes.filter((s) => partitionForScope(s, source.partitions) === partition).length < 4) {
            const scope = channel()
            if (partitionForScope(scope, source.partitions) === partition) scopes.push(scope)
          }
        }
        const keys = new Set(scopes.map(scopeKey))
        const a = yield* source.consume({ groupId, startFrom: "committed-or-earliest" })
        const b = yield* source.consume({ groupId, startFrom: "committed-or-earliest" })
        const produced = yield* Effect.forEach(scopes, (s) => producer.produce(eventIn(s, "x")))
        const seen: Array<LogRecord & { readonly member: "a" | "b" }> = []
        const collect = (member: "a" | "b", records: Stream.Stream<LogRecord, unknown>) =>
          Stream.runForEach(
            Stream.filter(records, (r) => r.key !== null && keys.has(r.key)),
            (r) => Effect.sync(() => seen.push({ ...r, member }))
          )
        yield* Effect.forkScoped(collect("a", a.records))
        yield* Effect.forkScoped(collect("b", b.records))
        yield* Effect.sync(() => seen.length).pipe(
          Effect.repeat({ until: (n) => n >= produced.length, schedule: Schedule.spaced("20 millis") }),
          Effect.timeout("20 seconds")
        )
        expect(seen.map((r) => `${r.partition}:${r.offset}`).sort()).toEqual(
          produced.map((p) => `${p.partition}:${p.offset}`).sort()
        )
        // both members got partitions, and each partition was read by one member only
        const partitionsOf = (member: "a" | "b") =>
          new Set(seen.filter((r) => r.member === member).map((r) => r.partition))
        const [ofA, ofB] = [partitionsOf("a"), partitionsOf("b")]
        expect(ofA.size).toBeGreaterThan(0)
        expect(ofB.size).toBeGreaterThan(0)
        expect([...ofA].filter((partition) => ofB.has(partition))).toEqual([])
        expect([...ofA, ...ofB].sort()).toEqual(Array.from({ length: source.partitions }, (_, partition) => partition))
      }).pipe(Effect.provide(options.makeLayer())))
  })
