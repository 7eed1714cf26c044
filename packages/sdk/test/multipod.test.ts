import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeSocket } from "@effect/platform-node"
import { RpcClient, RpcSerialization } from "@effect/rpc"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Schedule, Stream } from "effect"
import { ChatRpcs, type EnrichedChatEvent, partitionForScope, type ScopeRef, Subscribed } from "@chatify/domain"
import { dropKeyspace } from "../../adapters/test/support/cassandraAdmin.js"
import { withAdmin } from "../../adapters/test/support/kafkaAdmin.js"
import { endpoints, ensureService } from "../../adapters/test/support/services.js"
import { makeChatClient } from "../src/node.js"

// Two server processes, as two pods, on one real Kafka, Redis and Cassandra (started by the
// project's scripts/services). Topic and keyspace are this run's own (so nothing of an earlier or
// concurrent run is read), deleted once the pods have stopped; scopes are fresh per test.
const MAIN = new URL("../../server/src/main.ts", import.meta.url).pathname
const RUN = crypto.randomUUID().replaceAll("-", "").slice(0, 12)
const TOPIC = `chatify-multipod-${RUN}`
const KEYSPACE = `chatify_multipod_${RUN}`
// consumer groups of this run's own: no other file's (or earlier run's) pods join or rebalance them
const HISTORY_GROUP = `chatify-multipod-history-${RUN}`
const BROADCAST_PREFIX = `chatify-multipod-broadcast-${RUN}`
const children: Array<ChildProcess> = []
const directories: Array<string> = []

beforeAll(() => Promise.all([ensureService("redis"), ensureService("kafka"), ensureService("cassandra")]), 300_000)
afterAll(async () => {
  const exited = children.map((child) =>
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => child.once("exit", () => resolve()))
  )
  for (const child of children) child.kill("SIGTERM")
  await Effect.runPromise(
    Effect.promise(() => Promise.all(exited)).pipe(
      Effect.timeout("30 seconds"),
      Effect.zipRight(withAdmin((admin) => admin.deleteTopics({ topics: [TOPIC, `${TOPIC}-dlq`] }))),
      Effect.zipRight(
        withAdmin((admin) =>
          admin.deleteGroups([HISTORY_GROUP, `${BROADCAST_PREFIX}-pod-a`, `${BROADCAST_PREFIX}-pod-b`])
        ).pipe(Effect.ignore)
      ),
      Effect.zipRight(dropKeyspace(KEYSPACE)),
      Effect.catchAllCause((cause) => Effect.logWarning(`Could not remove ${TOPIC} / ${KEYSPACE}`, cause))
    )
  )
  for (const dir of directories) rmSync(dir, { recursive: true, force: true })
}, 120_000)

const startPod = (podId: string) =>
  Effect.async<string, Error>((resume) => {
    const dataDirectory = mkdtempSync(join(tmpdir(), `chatify-${podId}-`))
    directories.push(dataDirectory)
    const child = spawn(process.execPath, ["--conditions=@chatify/source", "--import", "tsx", MAIN], {
      env: {
        ...process.env,
        HOST: "127.0.0.1",
        PORT: "0",
        POD_NAME: podId,
        CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory,
        CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: endpoints.kafka,
        CHATIFY__MESSAGEBROKER__TOPICNAME: TOPIC,
        CHATIFY__MESSAGEBROKER__CREATETOPICS: "true",
        CHATIFY__MESSAGEBROKER__HISTORYWRITERCONSUMERGROUP: HISTORY_GROUP,
        CHATIFY__MESSAGEBROKER__BROADCASTCONSUMERGROUPPREFIX: BROADCAST_PREFIX,
        CHATIFY__CACHING__CONNECTIONSTRING: endpoints.redis,
        CHATIFY__DATABASE__CONTACTPOINTS: endpoints.cassandra.host,
        CHATIFY__DATABASE__PORT: String(endpoints.cassandra.port),
        CHATIFY__DATABASE__KEYSPACE: KEYSPACE,
        CHATIFY__RATELIMIT__LIMIT: "100000",
        // afterAll does not wait for the pods: let them drain at once instead of serving on for 5 s
        CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0"
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    children.push(child)
    let output = ""
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const url = /Listening on http:\/\/[^:]+:(\d+)/u.exec(output)?.[1]
      if (url !== undefined) resume(Effect.succeed(`127.0.0.1:${url}`))
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    child.on("exit", (code) => resume(Effect.fail(new Error(`${podId} exited with ${code}:\n${output.slice(-4000)}`))))
  })

const awaitReady = (address: string) =>
  Effect.tryPromise(() => fetch(`http://${address}/health/ready`).then((r) => r.status)).pipe(
    Effect.orElseSucceed(() => 0),
    Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (status) => status === 200 }),
    Effect.timeout("60 seconds")
  )

/** pod-a and pod-b, started once for every test of this file (each start costs seconds). */
let sharedPods: Promise<readonly [string, string]> | undefined
const twoPods = Effect.promise(() =>
  sharedPods ??= Effect.runPromise(
    Effect.gen(function*() {
      const [podA, podB] = yield* Effect.all([startPod("pod-a"), startPod("pod-b")], { concurrency: 2 })
      yield* Effect.all([awaitReady(podA), awaitReady(podB)], { concurrency: 2 })
      // both pods' history writers are members of this run's group (and so of no other)
      yield* withAdmin((admin) => admin.describeGroups([HISTORY_GROUP])).pipe(
        Effect.map(({ groups }) => groups.map((g) => [g.state, g.members.length])),
        Effect.repeat({ schedule: Schedule.spaced("200 millis"), until: (states) => states[0]?.[1] === 2 }),
        Effect.timeoutFail({
          duration: "30 seconds",
          onTimeout: () => new Error(`${HISTORY_GROUP} never had both pods`)
        })
      )
      return [podA, podB] as const
    })
  )
)

/**
 * A bare RpcClient on a pod's /rpc, for the subscribers: the server's no-duplicate guarantee is what
 * these tests check, and the SDK would drop a duplicate by messageId before the test could see it.
 */
const rawClient = (address: string) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      RpcClient.layerProtocolSocket().pipe(
        Layer.provide(NodeSocket.layerWebSocket(`ws://${address}/rpc`)),
        Layer.provide(RpcSerialization.layerNdjson)
      )
    )
    return yield* RpcClient.make(ChatRpcs).pipe(Effect.provide(context))
  })

/** The events of a raw subscription, every one the server sent; `live` completes with `Subscribed`. */
const rawEvents = (
  client: Effect.Effect.Success<ReturnType<typeof rawClient>>,
  scope: ScopeRef,
  live: Deferred.Deferred<void>
) =>
  client.Subscribe({ scopeType: scope.scopeType, scopeId: scope.scopeId }).pipe(
    Stream.tap((item) => (item instanceof Subscribed ? Deferred.succeed(live, undefined) : Effect.void)),
    Stream.filter((item): item is EnrichedChatEvent => !(item instanceof Subscribed))
  )

/**
 * A subscription's events up to and including the scope's end marker, sent after every other message
 * of the scope: a duplicate or stray event arriving before it, after the last message too, is counted.
 */
const throughEnd = (end: string) => <E, R>(events: Stream.Stream<EnrichedChatEvent, E, R>) =>
  Stream.takeUntil(events, (event) => event.chatEvent.text === end)

const kcatProduce = (key: string, value: string) =>
  Effect.async<void, Error>((resume) => {
    const child = execFile(
      "kcat",
      ["-P", "-b", endpoints.kafka, "-t", TOPIC, "-k", key, "-X", "partitioner=murmur2_random"],
      (error) => resume(error === null ? Effect.void : Effect.fail(error))
    )
    child.stdin?.end(value)
  })

describe("two pods on Kafka, Redis and Cassandra", () => {
  it.scopedLive(
    "messages sent through pod-a reach pod-b's subscribers in per-scope order and land in Cassandra once",
    () =>
      Effect.gen(function*() {
        const [podA, podB] = yield* twoPods
        const sender = yield* makeChatClient({ url: `ws://${podA}/rpc` })
        const reader = yield* makeChatClient({ url: `ws://${podB}/rpc` })
        const rawReader = yield* rawClient(podB)
        const local = yield* rawClient(podA)

        const run = crypto.randomUUID().slice(0, 8)
        const END = `end-${run}`
        const scopes: ReadonlyArray<ScopeRef> = Array.from(
          { length: 4 },
          (_, i) => ({ scopeType: 0, scopeId: `multipod-${run}-${i}` })
        )
        const PER_SCOPE = 250
        const received = new Map(scopes.map((s) => [s.scopeId, [] as Array<EnrichedChatEvent>]))
        const kcatScope = scopes[0]!
        const fibers = yield* Effect.forEach(scopes, (scope) =>
          Effect.gen(function*() {
            const live = yield* Deferred.make<void>()
            const fiber = yield* rawEvents(rawReader, scope, live).pipe(
              throughEnd(END),
              Stream.runForEach((event) => Effect.sync(() => received.get(scope.scopeId)?.push(event))),
              Effect.fork
            )
            yield* Deferred.await(live)
            return fiber
          }))

        // a subscriber on the sending pod as well: both pods fan out from their own broadcast group
        const localLive = yield* Deferred.make<void>()
        const localReceived: Array<EnrichedChatEvent> = []
        const localFiber = yield* rawEvents(local, scopes[1]!, localLive).pipe(
          throughEnd(END),
          Stream.runForEach((event) => Effect.sync(() => localReceived.push(event))),
          Effect.fork
        )
        yield* Deferred.await(localLive)

        const sent = yield* Effect.forEach(
          Array.from({ length: PER_SCOPE * scopes.length }, (_, i) => i),
          (i) => sender.send({ ...scopes[i % scopes.length]!, text: `m-${i}` }),
          { concurrency: 16 }
        )
        expect(new Set(sent.map((e) => e.chatEvent.originPodId))).toEqual(new Set(["pod-a"]))

        // and one event produced with kcat in the original design's JSON, on the same topic
        const kcatId = crypto.randomUUID()
        yield* kcatProduce(
          `0:${kcatScope.scopeId}`,
          JSON.stringify({
            messageId: kcatId,
            scopeType: 0,
            scopeId: kcatScope.scopeId,
            senderId: "test-user",
            text: "Hello from kcat",
            createdAtUtc: "2026-01-15T10:30:00Z",
            originPodId: "test-pod"
          })
        )
        // last, each scope's end marker (after the kcat event in its partition too)
        const ends = yield* Effect.forEach(scopes, (scope) => sender.send({ ...scope, text: END }))
        const acknowledged = [...sent, ...ends]
        yield* Effect.forEach(fibers, (fiber, i) =>
          fiber.await.pipe(
            Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error(`scope ${i} incomplete`) })
          ), { discard: true }).pipe(Effect.orDie)

        for (const scope of scopes) {
          const mine = received.get(scope.scopeId) ?? []
          const fromSender = mine.filter((e) => e.chatEvent.originPodId === "pod-a")
          const expected = acknowledged.filter((e) => e.chatEvent.scopeId === scope.scopeId).sort((a, b) =>
            a.offset - b.offset
          )
          expect(fromSender.map((e) => e.chatEvent.messageId)).toEqual(expected.map((e) => e.chatEvent.messageId))
          expect(mine.filter((e) => e.chatEvent.originPodId !== "pod-a").map((e) => e.chatEvent.messageId)).toEqual(
            scope === kcatScope ? [kcatId] : []
          )
          expect(new Set(mine.map((e) => e.partition))).toEqual(new Set([partitionForScope(scope, 3)]))
        }
        expect(received.get(kcatScope.scopeId)?.some((e) => e.chatEvent.messageId === kcatId)).toBe(true)
        yield* localFiber.await.pipe(Effect.timeout("30 seconds"), Effect.orDie)
        expect(localReceived.map((e) => e.chatEvent.messageId)).toEqual(
          (received.get(scopes[1]!.scopeId) ?? []).map((e) => e.chatEvent.messageId)
        )

        // every acknowledged message, and the kcat one, is in Cassandra, and nothing else: a lost message,
        // a second message id or a page read twice fails here. A second write of the same message cannot
        // (the primary key absorbs it, by design): that the writer writes each once, and commits only
        // after writing, is tested where writes can be counted, core's history-writer.test.ts
        const stored = yield* Effect.forEach(scopes, (scope) =>
          reader.historyAll(scope, { pageSize: 200 }).pipe(
            Stream.runCollect,
            Effect.map((chunk) => Array.from(chunk, (e) => e.chatEvent.messageId)),
            // the history writer runs behind the log
            Effect.filterOrFail(
              (ids) => ids.length >= PER_SCOPE + 1 + (scope === kcatScope ? 1 : 0),
              () => new Error(`history of ${scope.scopeId} incomplete`)
            ),
            Effect.retry(Schedule.spaced("200 millis")),
            Effect.timeout("30 seconds")
          )).pipe(Effect.orDie)
        const all = stored.flat()
        expect(all.length).toBe(new Set(all).size)
        expect(new Set(all)).toEqual(new Set([...acknowledged.map((e) => e.chatEvent.messageId), kcatId]))
      }),
    { timeout: 240_000 }
  )

  it.scopedLive(
    "20,000 messages over 100 scopes, sent through both pods: every subscriber on both pods gets its scope's in log order, the history holds each once",
    () =>
      Effect.gen(function*() {
        const [podA, podB] = yield* twoPods
        const pods = [podA, podB] as const
        const senders = yield* Effect.forEach(pods, (pod) => makeChatClient({ url: `ws://${pod}/rpc` }))
        const readers = yield* Effect.forEach(pods, (pod) => makeChatClient({ url: `ws://${pod}/rpc` }))
        const rawReaders = yield* Effect.forEach(pods, rawClient)

        const run = crypto.randomUUID().slice(0, 8)
        const SCOPES = 100
        const TOTAL = 20_000
        const PER_SCOPE = TOTAL / SCOPES
        const END = `end-${run}`
        const scopes: ReadonlyArray<ScopeRef> = Array.from(
          { length: SCOPES },
          (_, i) => ({ scopeType: 0, scopeId: `load-${run}-${i}` })
        )
        // one subscriber per scope on each pod
        const received = readers.map(() => new Map(scopes.map((s) => [s.scopeId, [] as Array<EnrichedChatEvent>])))
        const fibers = yield* Effect.forEach(
          rawReaders.flatMap((reader, r) => scopes.map((scope) => ({ reader, r, scope }))),
          ({ r, reader, scope }) =>
            Effect.gen(function*() {
              const live = yield* Deferred.make<void>()
              const mine = received[r]!.get(scope.scopeId)!
              const fiber = yield* rawEvents(reader, scope, live).pipe(
                throughEnd(END),
                Stream.runForEach((event) => Effect.sync(() => mine.push(event))),
                Effect.fork
              )
              yield* Deferred.await(live)
              return fiber
            }),
          { concurrency: 20 }
        )

        // message i goes to scope i % SCOPES through pod i % 2, so each scope gets sends from both pods
        const sent = yield* Effect.forEach(
          Array.from({ length: TOTAL }, (_, i) => i),
          (i) => senders[i % 2]!.send({ ...scopes[i % SCOPES]!, text: `load-${i}` }),
          { concurrency: 256 }
        )
        expect(new Set(sent.map((e) => e.chatEvent.originPodId))).toEqual(new Set(["pod-a", "pod-b"]))
        // then each scope's end marker, after every acknowledged message of the scope
        const ends = yield* Effect.forEach(scopes, (scope, i) => senders[i % 2]!.send({ ...scope, text: END }), {
          concurrency: 16
        })

        yield* Effect.forEach(fibers, (fiber) => fiber.await, { discard: true }).pipe(
          Effect.timeoutFail({
            duration: "120 seconds",
            onTimeout: () => new Error("not every subscriber got its scope's messages")
          }),
          Effect.orDie
        )
        for (const scope of scopes) {
          const messages = sent.filter((e) => e.chatEvent.scopeId === scope.scopeId).sort((a, b) => a.offset - b.offset)
          expect(messages.length).toBe(PER_SCOPE)
          const expected = [...messages, ...ends.filter((e) => e.chatEvent.scopeId === scope.scopeId)]
          for (const perPod of received) {
            // in log order, each acknowledged message once, nothing else
            expect(perPod.get(scope.scopeId)!.map((e) => e.chatEvent.messageId)).toEqual(
              expected.map((e) => e.chatEvent.messageId)
            )
          }
        }

        // the history writers (one group over both pods) store each acknowledged message exactly once
        const stored = yield* Effect.forEach(scopes, (scope) =>
          readers[0].historyAll(scope, { pageSize: 500 }).pipe(
            Stream.runCollect,
            Effect.map((chunk) => Array.from(chunk, (e) => e.chatEvent.messageId)),
            Effect.filterOrFail(
              (ids) => ids.length >= PER_SCOPE + 1,
              () => new Error(`history of ${scope.scopeId} incomplete`)
            ),
            Effect.retry(Schedule.spaced("200 millis")),
            Effect.timeout("60 seconds")
          ), { concurrency: 10 }).pipe(Effect.orDie)
        const all = stored.flat()
        expect(all.length).toBe(TOTAL + SCOPES)
        expect(new Set(all)).toEqual(new Set([...sent, ...ends].map((e) => e.chatEvent.messageId)))
      }),
    { timeout: 240_000 }
  )
})
