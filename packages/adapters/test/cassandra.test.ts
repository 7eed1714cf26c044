import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { tracker, types } from "cassandra-driver"
import { Cause, Context, Effect, Exit, Layer, Option, Scope } from "effect"
import { ChatHistory } from "@chatify/core"
import { ChatEvent, DependencyUnavailable, EnrichedChatEvent, type ScopeRef } from "@chatify/domain"
import {
  CassandraClient,
  type CassandraMigration,
  type CassandraOptions,
  CassandraHistory,
  ChatTables,
  chatMigrations,
  parseConsistency,
  SchemaMigrationFailed
} from "../src/cassandra/index.js"
import { chatHistoryContract } from "./contracts/ChatHistoryContract.js"
import { endpoints, ensureService } from "./support/services.js"

const HOUR = 60 * 60 * 1000
const DAY = 24 * HOUR
const T0 = Date.UTC(2024, 0, 15, 12)

// One keyspace per file (per bucket width), so parallel runs and earlier runs never meet.
const suffix = randomUUID().replaceAll("-", "").slice(0, 12)
const keyspace = `chatify_test_${suffix}`
const hourlyKeyspace = `chatify_test_${suffix}_h`

type Sent = { readonly query: string; readonly consistency: types.consistencies }

/** Records what the driver sent: the driver takes only subclasses of its own RequestTracker. */
class Recorder extends tracker.RequestLogger {
  readonly sent: Array<Sent> = []
  constructor() {
    super({})
  }
  override onSuccess(...[, query, , executionOptions]: Parameters<tracker.RequestTracker["onSuccess"]>): void {
    if (typeof query === "string") this.sent.push({ query, consistency: executionOptions.getConsistency() })
  }
  override onError(): void {}
}

/** Every request the shared client sent, to check which tables a read touched and at what consistency. */
const recorder = new Recorder()
const requests = recorder.sent

const options = (overrides: Partial<CassandraOptions> = {}): CassandraOptions => ({
  contactPoints: [endpoints.cassandra.host],
  port: endpoints.cassandra.port,
  keyspace,
  ...overrides
})

type Shared = CassandraClient | ChatHistory
let scope: Scope.CloseableScope | undefined
let shared: Context.Context<Shared> | undefined
let hourly: Context.Context<Shared> | undefined
/** When beforeAll began and finished building the shared layers: the first migration ran in between. */
let buildStartedAt = Number.NaN
let builtAt = Number.NaN

const sharedContext = (): Context.Context<Shared> => {
  if (shared === undefined) throw new Error("beforeAll did not build the shared layer")
  return shared
}
const hourlyContext = (): Context.Context<Shared> => {
  if (hourly === undefined) throw new Error("beforeAll did not build the hourly layer")
  return hourly
}

const historyWithClient = (clientOptions: CassandraOptions, bucketMillis?: number) =>
  CassandraHistory.layer(bucketMillis === undefined ? {} : { bucketMillis }).pipe(
    Layer.provideMerge(CassandraClient.layer(clientOptions))
  )

// Keyspace creation and schema agreement are the slow part: done once per keyspace, here.
beforeAll(async () => {
  await ensureService("cassandra")
  buildStartedAt = Date.now()
  const built = await Effect.runPromise(
    Effect.gen(function*() {
      const s = yield* Scope.make()
      const [daily, byHour] = yield* Effect.all([
        Layer.buildWithScope(historyWithClient(options({ requestTracker: recorder })), s),
        Layer.buildWithScope(historyWithClient(options({ keyspace: hourlyKeyspace }), HOUR), s)
      ], { concurrency: 2 })
      return { s, daily, byHour }
    })
  )
  builtAt = Date.now()
  scope = built.s
  shared = built.daily
  hourly = built.byHour
}, 300_000)

afterAll(async () => {
  if (scope === undefined) return
  const s = scope
  await Effect.runPromise(
    Effect.gen(function*() {
      const cassandra = yield* CassandraClient
      for (const ks of [keyspace, hourlyKeyspace]) {
        // Dropping is slow on a busy node: a longer timeout than the driver's 12 s, and a word if it fails.
        yield* Effect.tryPromise(() =>
          cassandra.client.execute(`DROP KEYSPACE IF EXISTS ${ks}`, [], { readTimeout: 60_000 })
        ).pipe(
          Effect.tapError((error) => Effect.logWarning(`Could not drop test keyspace ${ks}`, error)),
          Effect.ignore
        )
      }
    }).pipe(Effect.provide(sharedContext()), Effect.ensuring(Scope.close(s, Exit.void)))
  )
}, 150_000)

chatHistoryContract("CassandraHistory", () => Layer.succeedContext(sharedContext()))
// Hourly buckets: most contract scopes then span many partitions, so every page walks the index.
chatHistoryContract("CassandraHistory with hourly buckets", () => Layer.succeedContext(hourlyContext()))

const channel = (): ScopeRef => ({ scopeType: 0, scopeId: `cassandra-${randomUUID()}` })

const eventAt = (
  scopeRef: ScopeRef,
  createdAtMs: number,
  offset: number,
  partition = 1,
  messageId: string = randomUUID()
) =>
  new EnrichedChatEvent({
    chatEvent: new ChatEvent({
      messageId,
      scopeType: scopeRef.scopeType,
      scopeId: scopeRef.scopeId,
      senderId: "alice",
      text: `hello ${offset}`,
      createdAtUtc: new Date(createdAtMs),
      originPodId: "pod-a"
    }),
    partition,
    offset
  })

/** Runs a query on the shared client, behind the adapter's back. */
/** A column of a row: the driver types every value `any`. */
const column = (row: types.Row, name: string): unknown => row.get(name)

const cql = (query: string, params: ReadonlyArray<unknown> = []) =>
  Effect.flatMap(CassandraClient, (cassandra) => cassandra.execute("test query", query, params)).pipe(
    Effect.map((result) => result.rows),
    Effect.provide(sharedContext())
  )

/** The failure of building a layer; building must never die. */
const buildFailure = <ROut, E>(layer: Layer.Layer<ROut, E>) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(Effect.scoped(Layer.build(layer)))
    expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(false)
    return Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
  })

/** Builds a client on the test keyspace and returns its migration report. */
const startReport = (overrides: Partial<CassandraOptions> = {}) =>
  Effect.scoped(
    Effect.map(Layer.build(CassandraClient.layer(options(overrides))), (ctx) =>
      Context.get(ctx, CassandraClient).migrations)
  )

const migrationRows = () =>
  Effect.map(
    cql(`SELECT module_name, migration_id, applied_at_utc FROM ${keyspace}.schema_migrations`),
    (rows) =>
      rows.map((row) => ({
        module: String(row.get("module_name")),
        id: String(row.get("migration_id")),
        appliedAt: row.get("applied_at_utc") instanceof Date ? Number(row.get("applied_at_utc")) : Number.NaN
      }))
  )

/** Whether a statement names `table` (and not merely a table whose name starts the same). */
const touches = (table: string) => (query: string) => new RegExp(`\\.${table}\\b`, "u").test(query)

const chatInit = { moduleName: "Chat", migrationId: "0001_init_chat" }

const broken = (migrationId: string): CassandraMigration => ({
  moduleName: "Test",
  migrationId,
  statements: (ks) => [
    `CREATE TABLE IF NOT EXISTS ${ks}.test_before_failure (id text PRIMARY KEY)`,
    `ALTER TABLE ${ks}.no_such_table ADD extra int`
  ]
})

describe("Cassandra schema migrations", () => {
  it.live("the first start created the keyspace, the chat tables and recorded 0001_init_chat", () =>
    Effect.gen(function*() {
      const cassandra = Context.get(sharedContext(), CassandraClient)
      expect(cassandra.migrations.applied).toEqual([chatInit])
      expect(cassandra.migrations.alreadyApplied).toEqual([])

      const rows = yield* migrationRows()
      expect(rows.map(({ id, module }) => ({ module, id }))).toEqual([{ module: "Chat", id: "0001_init_chat" }])
      // recorded by this run's first start, while beforeAll built the layer (the keyspace is this run's own)
      expect(rows[0]!.appliedAt).toBeGreaterThanOrEqual(buildStartedAt)
      expect(rows[0]!.appliedAt).toBeLessThanOrEqual(builtAt)

      const tables = yield* cql("SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?", [keyspace])
      const chatTables = tables.map((row) => String(row.get("table_name"))).filter((name) => !name.startsWith("test_"))
      expect(chatTables.sort()).toEqual(
        [...Object.values(ChatTables), "schema_migrations"].sort()
      )
      // The primary key of the original table, partitioned by day and read newest first.
      const columns = yield* cql(
        `SELECT column_name, kind, clustering_order FROM system_schema.columns
         WHERE keyspace_name = ? AND table_name = ?`,
        [keyspace, ChatTables.messages]
      )
      const key = columns
        .filter((row) => row.get("kind") !== "regular")
        .map((row) => ["kind", "column_name", "clustering_order"].map((c) => String(row.get(c))).join(":"))
        .sort()
      expect(key).toEqual([
        "clustering:created_at_utc:desc",
        "clustering:message_id:desc",
        "partition_key:bucket:none",
        "partition_key:scope_id:none"
      ])
    }))

  it.live("a second start applies nothing and leaves the record alone", () =>
    Effect.gen(function*() {
      const before = yield* migrationRows()
      const report = yield* startReport()
      expect(report.applied).toEqual([])
      expect(report.alreadyApplied).toEqual([chatInit])
      expect(report.failed).toBeUndefined()
      expect(yield* migrationRows()).toEqual(before)
    }))

  it.live("a new migration applies once, after the ones before it", () =>
    Effect.gen(function*() {
      const added: CassandraMigration = {
        moduleName: "Test",
        migrationId: "0001_add_table",
        statements: (ks) => [`CREATE TABLE IF NOT EXISTS ${ks}.test_added (id text PRIMARY KEY)`]
      }
      const first = yield* startReport({ migrations: [...chatMigrations, added] })
      expect(first.applied).toEqual([{ moduleName: "Test", migrationId: "0001_add_table" }])
      const second = yield* startReport({ migrations: [...chatMigrations, added] })
      expect(second.applied).toEqual([])
      expect((yield* migrationRows()).map((r) => r.id).sort()).toEqual(["0001_add_table", "0001_init_chat"])
    }))

  it.live("a failing migration stops startup with FailFastOnSchemaError", () =>
    Effect.gen(function*() {
      const failure = yield* buildFailure(
        CassandraClient.layer(options({ migrations: [...chatMigrations, broken("0002_broken")] }))
      )
      const error = Option.getOrUndefined(failure)
      expect(error).toBeInstanceOf(SchemaMigrationFailed)
      expect(error).toMatchObject({ moduleName: "Test", migrationId: "0002_broken" })
      expect(error?.message).toContain("Test/0002_broken")
      expect((yield* migrationRows()).map((r) => r.id)).not.toContain("0002_broken")
    }))

  it.live("a failing migration is logged and skipped without FailFastOnSchemaError", () =>
    Effect.gen(function*() {
      const later: CassandraMigration = {
        moduleName: "Test",
        migrationId: "0004_after_broken",
        statements: (ks) => [`CREATE TABLE IF NOT EXISTS ${ks}.test_never (id text PRIMARY KEY)`]
      }
      const layer = historyWithClient(
        options({ failFastOnSchemaError: false, migrations: [...chatMigrations, broken("0003_broken"), later] })
      )
      const report = yield* Effect.scoped(
        Effect.gen(function*() {
          const ctx = yield* Layer.build(layer)
          // Started: the history serves.
          yield* Context.get(ctx, ChatHistory).ping
          return Context.get(ctx, CassandraClient).migrations
        })
      )
      expect(report.failed).toMatchObject({ moduleName: "Test", migrationId: "0003_broken" })
      // Never out of order: what comes after a failed migration waits for it.
      expect(report.notAttempted).toEqual([{ moduleName: "Test", migrationId: "0004_after_broken" }])
      const ids = (yield* migrationRows()).map((r) => r.id)
      expect(ids).not.toContain("0003_broken")
      expect(ids).not.toContain("0004_after_broken")
    }))

  it.live("pods starting together on a new keyspace all start and record the migration once", () => {
    const raceKeyspace = `chatify_test_${suffix}_race`
    return Effect.gen(function*() {
      const pod = Effect.flatMap(ChatHistory, (history) => history.ping).pipe(
        Effect.provide(historyWithClient(options({ keyspace: raceKeyspace })))
      )
      yield* Effect.all([pod, pod, pod], { concurrency: 3 })
      const rows = yield* cql(`SELECT migration_id FROM ${raceKeyspace}.schema_migrations`)
      expect(rows.map((row) => String(row.get("migration_id")))).toEqual(["0001_init_chat"])
    }).pipe(Effect.ensuring(cql(`DROP KEYSPACE IF EXISTS ${raceKeyspace}`).pipe(Effect.ignore)))
  })

  it.live("without ApplySchemaOnStartup the keyspace must exist", () =>
    Effect.gen(function*() {
      const missing = yield* buildFailure(
        CassandraClient.layer(options({ applySchemaOnStartup: false, keyspace: `chatify_missing_${suffix}` }))
      )
      expect(Option.getOrUndefined(missing)).toBeInstanceOf(DependencyUnavailable)
      expect(Option.getOrUndefined(missing)?.message).toContain("does not exist")

      const report = yield* startReport({ applySchemaOnStartup: false })
      expect(report.applied).toEqual([])
      expect(report.alreadyApplied).toEqual([chatInit])
    }))
})

describe("CassandraClient", () => {
  it.live("gives up on an unreachable node after bounded retries, with a typed failure", () =>
    Effect.gen(function*() {
      const failure = yield* buildFailure(CassandraClient.layer(options({ port: 1, connectAttempts: 2 })))
      const error = Option.getOrUndefined(failure)
      expect(error).toBeInstanceOf(DependencyUnavailable)
      expect(error).toMatchObject({ dependency: "cassandra" })
    }))

  it.live("refuses settings it cannot honour", () =>
    Effect.gen(function*() {
      for (
        const bad of [
          options({ consistency: "MOSTLY" }),
          options({ keyspace: "drop table x;" }),
          options({ schemaMigrationTableName: "1st" }),
          options({ replication: { class: "SimpleStrategy", replicationFactor: 0 } }),
          options({ contactPoints: [] })
        ]
      ) {
        const failure = yield* buildFailure(CassandraClient.layer(bad))
        expect(Option.getOrUndefined(failure)).toBeInstanceOf(DependencyUnavailable)
      }
    }))

  it("parses consistency names", () => {
    expect(parseConsistency("LOCAL_QUORUM")).toEqual(Option.some(types.consistencies.localQuorum))
    expect(parseConsistency("localOne")).toEqual(Option.some(types.consistencies.localOne))
    expect(parseConsistency(" quorum ")).toEqual(Option.some(types.consistencies.quorum))
    expect(parseConsistency("each-quorum")).toEqual(Option.some(types.consistencies.eachQuorum))
    expect(parseConsistency("most")).toEqual(Option.none())
  })

  it.live("sends every statement at the configured consistency, LOCAL_QUORUM by default", () =>
    Effect.gen(function*() {
      const history = Context.get(sharedContext(), ChatHistory)
      const scopeRef = channel()
      const from = requests.length
      yield* history.append([eventAt(scopeRef, T0, 1)])
      yield* history.page(scopeRef, { limit: 5, before: undefined })
      const sent = requests.slice(from)
      expect(sent.length).toBeGreaterThan(0)
      expect(sent.every((r) => r.consistency === types.consistencies.localQuorum)).toBe(true)

      const one = new Recorder()
      yield* Effect.flatMap(ChatHistory, (h) => h.page(scopeRef, { limit: 5, before: undefined })).pipe(
        Effect.provide(historyWithClient(options({ consistency: "ONE", requestTracker: one })))
      )
      expect(one.sent.at(-1)?.consistency).toBe(types.consistencies.one)
    }))
})

describe("CassandraHistory", () => {
  it.live("stores the original's row: scope key, day bucket, uuid, broker position", () =>
    Effect.gen(function*() {
      const history = Context.get(sharedContext(), ChatHistory)
      const dm: ScopeRef = { scopeType: 1, scopeId: `dm-${randomUUID()}` }
      const event = eventAt(dm, T0 + 90 * 60 * 1000, 42)
      yield* history.append([event])

      const rows = yield* cql(
        `SELECT * FROM ${keyspace}.chat_messages WHERE scope_id = ? AND bucket = ?`,
        [`1:${dm.scopeId}`, new Date(Date.UTC(2024, 0, 15))]
      )
      expect(rows).toHaveLength(1)
      const row = rows[0]!
      expect(row.get("created_at_utc")).toEqual(new Date(T0 + 90 * 60 * 1000))
      expect(row.get("message_id")).toBeInstanceOf(types.Uuid)
      expect(String(row.get("message_id"))).toBe(event.chatEvent.messageId)
      expect({
        scope_type: column(row, "scope_type"),
        sender_id: column(row, "sender_id"),
        text: column(row, "text"),
        origin_pod_id: column(row, "origin_pod_id"),
        broker_partition: column(row, "broker_partition"),
        broker_offset: column(row, "broker_offset")
      }).toEqual({
        scope_type: 1,
        sender_id: "alice",
        text: "hello 42",
        origin_pod_id: "pod-a",
        broker_partition: 1,
        broker_offset: 42n
      })
    }))

  it.live("appends idempotently across batches, as when the history writer retries", () =>
    Effect.gen(function*() {
      const history = Context.get(sharedContext(), ChatHistory)
      const scopeRef = channel()
      const [a, b, c] = [0, 1, 2].map((i) => eventAt(scopeRef, T0 + i * 1000, 10 + i))
      // The writer failed to commit after storing [a, b]: the log redelivers them with c.
      yield* history.append([a!, b!])
      yield* history.append([a!, b!, c!])
      yield* history.append([b!])

      const key = `0:${scopeRef.scopeId}`
      const stored = yield* cql(`SELECT message_id FROM ${keyspace}.chat_messages WHERE scope_id = ? AND bucket = ?`, [
        key,
        new Date(Date.UTC(2024, 0, 15))
      ])
      expect(stored).toHaveLength(3)
      const byOffset = yield* cql(
        `SELECT broker_offset FROM ${keyspace}.chat_messages_by_offset
         WHERE scope_id = ? AND broker_partition = ? AND offset_bucket = ?`,
        [key, 1, 0n]
      )
      expect(byOffset.map((row) => column(row, "broker_offset"))).toEqual([10n, 11n, 12n])

      const slice = yield* history.page(scopeRef, { limit: 10, before: undefined })
      expect(slice.items).toEqual([c, b, a])
      expect(yield* history.after(scopeRef, { partition: 1, offset: 0 }, 10)).toEqual([a, b, c])
    }))

  it.live("pages a scope with messages months apart without reading empty days", () =>
    Effect.gen(function*() {
      const history = Context.get(sharedContext(), ChatHistory)
      const scopeRef = channel()
      const days = [Date.UTC(2024, 0, 1, 9), Date.UTC(2024, 3, 1, 9), Date.UTC(2024, 3, 1, 10), Date.UTC(2024, 6, 1, 9)]
      const events = days.map((ms, i) => eventAt(scopeRef, ms, i))
      yield* history.append(events)

      const indexed = yield* cql(`SELECT bucket FROM ${keyspace}.chat_scope_buckets WHERE scope_id = ?`, [
        `0:${scopeRef.scopeId}`
      ])
      expect(indexed.map((row) => column(row, "bucket"))).toEqual([
        new Date(Date.UTC(2024, 6, 1)),
        new Date(Date.UTC(2024, 3, 1)),
        new Date(Date.UTC(2024, 0, 1))
      ])

      const from = requests.length
      const slice = yield* history.page(scopeRef, { limit: 10, before: undefined })
      expect(slice.items).toEqual([...events].reverse())
      const reads = requests.slice(from).map((r) => r.query)
      // Six months of days, three of them with messages: one index read, one read per non-empty day.
      expect(reads.filter(touches(ChatTables.scopeBuckets))).toHaveLength(1)
      expect(reads.filter(touches(ChatTables.messages))).toHaveLength(3)

      // A cursor in April starts in April's bucket and only goes on to January.
      const fromCursor = requests.length
      const older = yield* history.page(scopeRef, {
        limit: 10,
        before: { createdAtMs: days[2]!, messageId: events[2]!.chatEvent.messageId }
      })
      expect(older.items).toEqual([events[1], events[0]])
      expect(requests.slice(fromCursor).map((r) => r.query).filter(touches(ChatTables.messages))).toHaveLength(2)
    }))

  it.live("replays by offset across sparse offset buckets in log order", () =>
    Effect.gen(function*() {
      const history = Context.get(sharedContext(), ChatHistory)
      const scopeRef = channel()
      // A quiet scope on a busy partition: its offsets are far apart.
      const events = [5, 250_000, 250_001, 7_000_000].map((offset, i) => eventAt(scopeRef, T0 + i, offset, 2))
      yield* history.append(events)

      const from = requests.length
      expect(yield* history.after(scopeRef, { partition: 2, offset: 0 }, 10)).toEqual(events)
      expect(requests.slice(from).map((r) => r.query).filter(touches(ChatTables.messagesByOffset))).toHaveLength(3)
      expect(yield* history.after(scopeRef, { partition: 2, offset: 250_000 }, 10)).toEqual(events.slice(2))
      expect(yield* history.after(scopeRef, { partition: 2, offset: 5 }, 2)).toEqual(events.slice(1, 3))
      expect(yield* history.after(scopeRef, { partition: 2, offset: 7_000_000 }, 10)).toEqual([])
    }))

  it.live("refuses to reopen the history with another bucket width", () =>
    Effect.gen(function*() {
      const failure = yield* buildFailure(
        CassandraHistory.layer({ bucketMillis: HOUR }).pipe(Layer.provide(Layer.succeedContext(sharedContext())))
      )
      expect(Option.getOrUndefined(failure)).toBeInstanceOf(DependencyUnavailable)
      expect(Option.getOrUndefined(failure)?.message).toContain(`${DAY} ms`)
      // The width it was created with is fine.
      const same = yield* buildFailure(
        CassandraHistory.layer({ bucketMillis: DAY }).pipe(Layer.provide(Layer.succeedContext(sharedContext())))
      )
      expect(Option.isNone(same)).toBe(true)
    }))
})
