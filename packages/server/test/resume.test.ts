import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Ref, Schedule, Stream } from "effect"
import {
  broadcastConsumer,
  ChatEventProducer,
  ConsumerHealth,
  CurrentUser,
  historyWriter,
  LocalFanout,
  subscribeStream
} from "@chatify/core"
import { ChatEvent, type EnrichedChatEvent, partitionForScope, type ScopeRef, Subscribed } from "@chatify/domain"
import { ServerServices } from "../src/index.js"
import { testServerConfig } from "../src/testing.js"

const directories: Array<string> = []
afterEach(() => {
  for (const dir of directories.splice(0)) rmSync(dir, { recursive: true, force: true })
})

const configIn = (dataDirectory: string) =>
  testServerConfig(dataDirectory, { podId: "pod-resume", subscriberBufferSize: 1024 })

const scope: ScopeRef = { scopeType: 0, scopeId: "general" }
const produce = (n: number, label: string) =>
  Effect.flatMap(
    ChatEventProducer,
    (producer) =>
      Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) =>
        producer.produce(
          new ChatEvent({
            messageId: crypto.randomUUID(),
            ...scope,
            senderId: "alice",
            text: `${label}-${i}`,
            createdAtUtc: new Date(),
            originPodId: "pod-resume"
          })
        ))
  )

describe("subscribe with resume", () => {
  it.live("fills the gap from history once the writer has caught up, then goes live: no gap, no duplicate", () => {
    const dir = mkdtempSync(join(tmpdir(), "chatify-resume-"))
    directories.push(dir)
    const config = configIn(dir)
    const layer = ServerServices(config)
    return Effect.gen(function*() {
      yield* Effect.forkScoped(broadcastConsumer)
      const health = yield* ConsumerHealth
      yield* health.snapshot.pipe(
        Effect.repeat({ until: (s) => s.get("broadcast") === "running", schedule: Schedule.spaced("5 millis") })
      )
      const before = yield* produce(10, "before")
      const lastSeen = before[3]!

      const received = yield* Ref.make<ReadonlyArray<EnrichedChatEvent>>([])
      const subscribed = yield* Deferred.make<void>()
      const subscriber = yield* subscribeStream(scope, lastSeen).pipe(
        Stream.tap((item) =>
          "_tag" in item ? Deferred.succeed(subscribed, undefined) : Ref.update(received, (all) => [...all, item])
        ),
        Stream.provideService(CurrentUser, { userId: "bob", connectionId: "c-bob" }),
        Stream.runDrain,
        Effect.forkScoped
      )
      // a live-only subscriber on the same scope: once it has the "during" events, the fan-out has
      // offered them to the resuming subscriber as well
      const witnessSubscribed = yield* Deferred.make<void>()
      const witness = yield* subscribeStream(scope, undefined).pipe(
        Stream.tap((item) => "_tag" in item ? Deferred.succeed(witnessSubscribed, undefined) : Effect.void),
        Stream.filter((item): item is EnrichedChatEvent => !("_tag" in item)),
        Stream.take(5),
        Stream.provideService(CurrentUser, { userId: "carol", connectionId: "c-carol" }),
        Stream.runCollect,
        Effect.forkScoped
      )
      // Subscribed comes after the subscriber joined the fan-out: the "during" events reach it live
      yield* Effect.all([Deferred.await(subscribed), Deferred.await(witnessSubscribed)]).pipe(
        Effect.timeout("10 seconds")
      )
      const during = yield* produce(5, "during")
      yield* Fiber.join(witness).pipe(Effect.timeout("10 seconds"))
      // the history writer is not running, so the gap cannot be replayed: the live events are held back
      expect(yield* Ref.get(received)).toEqual([])

      yield* Effect.forkScoped(historyWriter)
      const after = yield* produce(5, "after")
      const expected = [...before.slice(4), ...during, ...after].map((p) => p.offset)
      yield* Ref.get(received).pipe(
        Effect.repeat({ until: (all) => all.length >= expected.length, schedule: Schedule.spaced("10 millis") }),
        Effect.timeout("10 seconds")
      )
      expect((yield* Ref.get(received)).map((e) => e.offset)).toEqual(expected)
      expect(yield* (yield* LocalFanout).subscriberCount).toBe(1)
      yield* Fiber.interrupt(subscriber)
      expect(yield* (yield* LocalFanout).subscriberCount).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("a resume position on another partition is a typed Conflict", () => {
    const dir = mkdtempSync(join(tmpdir(), "chatify-resume-"))
    directories.push(dir)
    const config = configIn(dir)
    const layer = ServerServices(config)
    return Effect.gen(function*() {
      const [sent] = yield* produce(1, "x")
      const error = yield* subscribeStream(scope, { partition: (sent!.partition + 1) % 3, offset: 0 }).pipe(
        Stream.provideService(CurrentUser, { userId: "bob", connectionId: "c-bob" }),
        Stream.runDrain,
        Effect.flip
      )
      expect(error._tag).toBe("Conflict")
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("a resume position beyond the log's end (a recreated log) is a typed Conflict, not a silent skip", () => {
    const dir = mkdtempSync(join(tmpdir(), "chatify-resume-"))
    directories.push(dir)
    const layer = ServerServices(configIn(dir))
    return Effect.gen(function*() {
      const [sent] = yield* produce(3, "x")
      const partition = sent!.partition
      // the last offset the log holds is a valid position to resume after; one past it is not
      const atEnd = yield* subscribeStream(scope, { partition, offset: sent!.offset + 2 }).pipe(
        Stream.provideService(CurrentUser, { userId: "bob", connectionId: "c-bob" }),
        Stream.take(1),
        Stream.runCollect
      )
      expect(Array.from(atEnd).map((item) => item instanceof Subscribed)).toEqual([true])
      const error = yield* subscribeStream(scope, { partition, offset: sent!.offset + 3 }).pipe(
        Stream.provideService(CurrentUser, { userId: "bob", connectionId: "c-bob" }),
        Stream.runDrain,
        Effect.timeout("10 seconds"),
        Effect.flip
      )
      expect(error._tag).toBe("Conflict")
      if (error._tag === "Conflict") expect(error.message).toContain("beyond the end of partition")
    }).pipe(Effect.scoped, Effect.provide(layer))
  })

  it.live("resumes over a stretch of its partition that holds none of its own messages, and goes on live", () => {
    const dir = mkdtempSync(join(tmpdir(), "chatify-resume-"))
    directories.push(dir)
    const config = configIn(dir)
    const layer = ServerServices(config)
    // a channel on the partition of `scope`: its messages move the partition's end, not the scope's
    const partitions = config.broker.partitions
    const neighbourId = Array.from({ length: 100 }, (_, i) => `neighbour-${i}`).find((scopeId) =>
      partitionForScope({ scopeType: 0, scopeId }, partitions) === partitionForScope(scope, partitions)
    )
    return Effect.gen(function*() {
      if (neighbourId === undefined) return yield* Effect.dieMessage("no channel on the scope's partition")
      yield* Effect.forkScoped(broadcastConsumer)
      yield* Effect.forkScoped(historyWriter)
      yield* (yield* ConsumerHealth).snapshot.pipe(
        Effect.repeat({ until: (s) => s.get("broadcast") === "running", schedule: Schedule.spaced("5 millis") })
      )
      const producer = yield* ChatEventProducer
      const [lastSeen] = yield* produce(1, "seen")
      for (const text of ["n-0", "n-1", "n-2"]) {
        yield* producer.produce(
          new ChatEvent({
            messageId: crypto.randomUUID(),
            scopeType: 0,
            scopeId: neighbourId,
            senderId: "alice",
            text,
            createdAtUtc: new Date(),
            originPodId: "pod-resume"
          })
        )
      }
      const received = yield* Ref.make<ReadonlyArray<EnrichedChatEvent | Subscribed>>([])
      const subscriber = yield* subscribeStream(scope, lastSeen).pipe(
        Stream.tap((item) => Ref.update(received, (all) => [...all, item])),
        Stream.provideService(CurrentUser, { userId: "bob", connectionId: "c-bob" }),
        Stream.runDrain,
        Effect.forkScoped
      )
      yield* Ref.get(received).pipe(
        Effect.repeat({ until: (all) => all.length >= 1, schedule: Schedule.spaced("10 millis") }),
        Effect.timeout("10 seconds")
      )
      // held back until the gap (none of this scope's messages in it) is replayed, then delivered
      const [later] = yield* produce(1, "later")
      yield* Ref.get(received).pipe(
        Effect.repeat({ until: (all) => all.length >= 2, schedule: Schedule.spaced("10 millis") }),
        Effect.timeout("10 seconds")
      )
      const items = yield* Ref.get(received)
      expect(items.map((item) => item instanceof Subscribed ? "Subscribed" : item.chatEvent.text)).toEqual([
        "Subscribed",
        "later-0"
      ])
      expect(items[1]).toMatchObject({ offset: later!.offset })
      expect(yield* Fiber.poll(subscriber)).toEqual(Option.none())
    }).pipe(Effect.scoped, Effect.provide(layer))
  })
})
