import { randomUUID } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Cause, Effect, Exit, Layer, Option } from "effect"
import { ChatHistory } from "@chatify/core"
import { ChatEvent, DependencyUnavailable, EnrichedChatEvent, type ScopeRef } from "@chatify/domain"
import { SqliteHistory } from "../src/sqlite/index.js"
import { chatHistoryContract } from "./contracts/ChatHistoryContract.js"

/** A fresh directory, removed with everything in it when the scope closes. */
const tempDirectory = Effect.acquireRelease(
  Effect.try(() => mkdtempSync(join(tmpdir(), "chatify-sqlite-"))),
  (directory) => Effect.try(() => rmSync(directory, { recursive: true, force: true })).pipe(Effect.ignore)
)

/** Reads the file behind the adapter's back, to check what only SQLite can tell. */
const inspect = <A>(path: string, read: (db: Database.Database) => A) =>
  Effect.acquireUseRelease(
    Effect.try(() => new Database(path, { readonly: true, fileMustExist: true })),
    (db) => Effect.try(() => read(db)),
    (db) => Effect.try(() => db.close()).pipe(Effect.ignore)
  )

const dbFile = (directory: string) => join(directory, "chatify.sqlite")

const channel = (): ScopeRef => ({ scopeType: 0, scopeId: `sqlite-${randomUUID()}` })

const eventAt = (scope: ScopeRef, createdAtMs: number, offset: number, messageId: string = randomUUID()) =>
  new EnrichedChatEvent({
    chatEvent: new ChatEvent({
      messageId,
      scopeType: scope.scopeType,
      scopeId: scope.scopeId,
      senderId: "alice",
      text: `hello ${offset}`,
      createdAtUtc: new Date(createdAtMs),
      originPodId: "pod-a"
    }),
    partition: 1,
    offset
  })

/** The layer's failure, if building it failed; building it must never throw or die. */
const buildFailure = (layer: Layer.Layer<ChatHistory, DependencyUnavailable>) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(Effect.scoped(Layer.build(layer)))
    expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(false)
    return Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
  })

const T0 = Date.UTC(2024, 0, 15, 12)

chatHistoryContract(
  "SqliteHistory",
  () => Layer.unwrapScoped(Effect.map(tempDirectory, (dataDirectory) => SqliteHistory.layer({ dataDirectory })))
)

// A bucket of one hour puts every few test messages into a new partition-key bucket.
chatHistoryContract("SqliteHistory with hourly buckets", () =>
  Layer.unwrapScoped(
    Effect.map(tempDirectory, (dataDirectory) =>
      SqliteHistory.layer({ dataDirectory, fileName: "hourly.sqlite", bucketMillis: 60 * 60 * 1000 }))
  ))

describe("SqliteHistory", () => {
  it.scoped("keeps the history across a close and a reopen", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const scope = channel()
      const events = [0, 1, 2].map((i) => eventAt(scope, T0 + i, i))
      const layer = SqliteHistory.layer({ dataDirectory: directory })

      yield* Effect.flatMap(ChatHistory, (history) => history.append(events)).pipe(Effect.provide(layer))
      const slice = yield* Effect.flatMap(
        ChatHistory,
        (history) => history.page(scope, { limit: 10, before: undefined })
      )
        .pipe(Effect.provide(layer))

      expect(slice.items).toEqual([...events].reverse())
    }))

  it.scoped("creates a missing directory, runs in WAL mode and closes the file with the layer", () =>
    Effect.gen(function*() {
      const directory = join(yield* tempDirectory, "nested", "deeper")
      const scope = channel()
      yield* Effect.flatMap(ChatHistory, (history) => history.append([eventAt(scope, T0, 0)])).pipe(
        Effect.provide(SqliteHistory.layer({ dataDirectory: directory }))
      )

      expect(existsSync(dbFile(directory))).toBe(true)
      // The last connection to close checkpoints and removes the WAL file: its absence shows the close ran.
      expect(existsSync(`${dbFile(directory)}-wal`)).toBe(false)
      const mode = yield* inspect(dbFile(directory), (db) => db.pragma("journal_mode", { simple: true }))
      expect(mode).toBe("wal")
    }))

  it.scoped("records the migration once over two opens", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const layer = SqliteHistory.layer({ dataDirectory: directory })
      yield* Effect.flatMap(ChatHistory, (history) => history.ping).pipe(Effect.provide(layer))
      yield* Effect.flatMap(ChatHistory, (history) => history.ping).pipe(Effect.provide(layer))

      const migrations = yield* inspect(dbFile(directory), (db) =>
        db.prepare<[], { module_name: string; migration_id: string; applied_at_utc: number }>(
          "SELECT module_name, migration_id, applied_at_utc FROM schema_migrations"
        ).all())
      expect(migrations.map((m) =>
        m.migration_id
      )).toEqual(["0001_init_chat", "0002_chat_messages_clustered_by_scope"])
      expect(migrations.every((m) => m.applied_at_utc > 0)).toBe(true)
    }))

  it.scoped("moves a history written by the first schema into the clustered table, every row, and keeps serving it", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const scope = channel()
      const events = [0, 1, 2].map((i) => eventAt(scope, T0 + i, i))
      // the first release's file: its table, indexes and migration record, and three messages
      yield* Effect.acquireUseRelease(
        Effect.sync(() => new Database(dbFile(directory))),
        (db) =>
          Effect.sync(() => {
            db.exec(`
              CREATE TABLE schema_migrations (module_name TEXT NOT NULL, migration_id TEXT NOT NULL,
                applied_at_utc INTEGER NOT NULL, PRIMARY KEY (module_name, migration_id));
              INSERT INTO schema_migrations VALUES ('chat', '0001_init_chat', 1);
              CREATE TABLE chat_messages (scope_key TEXT NOT NULL, bucket INTEGER NOT NULL,
                created_at_utc INTEGER NOT NULL, message_id TEXT NOT NULL, scope_type INTEGER NOT NULL,
                scope_id TEXT NOT NULL, sender_id TEXT NOT NULL, text TEXT NOT NULL, origin_pod_id TEXT NOT NULL,
                broker_partition INTEGER NOT NULL, broker_offset INTEGER NOT NULL,
                PRIMARY KEY (scope_key, bucket, created_at_utc, message_id));
              CREATE UNIQUE INDEX chat_messages_message_id ON chat_messages (message_id);
              CREATE INDEX chat_messages_by_offset ON chat_messages (scope_key, broker_partition, broker_offset);
              CREATE INDEX chat_messages_by_time ON chat_messages (scope_key, created_at_utc, message_id);
            `)
            const insert = db.prepare("INSERT INTO chat_messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            for (const { chatEvent: e, offset, partition } of events) {
              const at = e.createdAtUtc.getTime()
              insert.run(
                `0:${e.scopeId}`,
                Math.floor(at / 86_400_000),
                at,
                e.messageId,
                e.scopeType,
                e.scopeId,
                e.senderId,
                e.text,
                e.originPodId,
                partition,
                offset
              )
            }
          }),
        (db) => Effect.sync(() => db.close())
      )

      const layer = SqliteHistory.layer({ dataDirectory: directory })
      const [page, resumed] = yield* Effect.flatMap(ChatHistory, (history) =>
        Effect.all([
          history.page(scope, { limit: 10, before: undefined }),
          history.after(scope, { partition: 1, offset: 0 }, 10)
        ])).pipe(Effect.provide(layer))
      expect(page.items).toEqual([...events].reverse())
      expect(resumed).toEqual(events.slice(1))

      const layout = yield* inspect(dbFile(directory), (db) => ({
        table:
          db.prepare<[], { sql: string }>("SELECT sql FROM sqlite_master WHERE name = 'chat_messages'").get()?.sql ??
            "",
        indexes: db.prepare<[], { name: string }>(
          "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'chat_messages' ORDER BY name"
        ).all().map((row) => row.name)
      }))
      expect(layout.table).toMatch(/PRIMARY KEY \(scope_key, created_at_utc, message_id\)\s*\)\s*WITHOUT ROWID/)
      expect(layout.indexes).toEqual(["chat_messages_by_offset"])
    }))

  it.scoped("stores the Cassandra-shaped row, bucketed by time", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const scope: ScopeRef = { scopeType: 1, scopeId: `dm-${randomUUID()}` }
      const bucketMillis = 60 * 60 * 1000
      const event = eventAt(scope, T0 + 90 * 60 * 1000, 42)
      yield* Effect.flatMap(ChatHistory, (history) => history.append([event])).pipe(
        Effect.provide(SqliteHistory.layer({ dataDirectory: directory, bucketMillis }))
      )

      const row = yield* inspect(dbFile(directory), (db) => db.prepare("SELECT * FROM chat_messages").get())
      expect(row).toEqual({
        scope_key: `1:${scope.scopeId}`,
        bucket: Math.floor((T0 + 90 * 60 * 1000) / bucketMillis),
        created_at_utc: T0 + 90 * 60 * 1000,
        message_id: event.chatEvent.messageId,
        scope_type: 1,
        scope_id: scope.scopeId,
        sender_id: "alice",
        text: "hello 42",
        origin_pod_id: "pod-a",
        broker_partition: 1,
        broker_offset: 42
      })
    }))

  it.effect("breaks ties on time by messageId, descending", () =>
    Effect.gen(function*() {
      const history = yield* ChatHistory
      const scope = channel()
      // Same time and same prefix for all three, so only the last digit decides; appended out of order.
      const prefix = randomUUID().slice(0, 8)
      const events = ["1", "3", "2"].map((last, i) =>
        eventAt(scope, T0, i, `${prefix}-0000-4000-8000-00000000000${last}`)
      )
      yield* history.append(events)

      const first = yield* history.page(scope, { limit: 2, before: undefined })
      const second = yield* history.page(scope, { limit: 2, before: first.next })
      expect([...first.items, ...second.items].map((e) => e.chatEvent.messageId.slice(-1))).toEqual(["3", "2", "1"])
      expect(second.next).toBeUndefined()
    }).pipe(Effect.provide(Layer.unwrapScoped(
      Effect.map(tempDirectory, (dataDirectory) => SqliteHistory.layer({ dataDirectory }))
    ))))

  it.scoped("fails with DependencyUnavailable when the data directory is a regular file", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const notADirectory = join(directory, "occupied")
      yield* Effect.try(() => writeFileSync(notADirectory, "not a directory"))

      const failure = yield* buildFailure(SqliteHistory.layer({ dataDirectory: notADirectory }))
      expect(Option.getOrUndefined(failure)).toBeInstanceOf(DependencyUnavailable)
      expect(Option.getOrUndefined(failure)?.dependency).toBe("sqlite-history")
    }))

  it.scoped("fails with DependencyUnavailable when the file is not a database", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      yield* Effect.try(() => writeFileSync(dbFile(directory), "x".repeat(4096)))

      const failure = yield* buildFailure(SqliteHistory.layer({ dataDirectory: directory }))
      expect(Option.getOrUndefined(failure)).toBeInstanceOf(DependencyUnavailable)
    }))

  it.scoped("fails with DependencyUnavailable when the file name is a directory", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      yield* Effect.try(() => mkdirSync(dbFile(directory)))

      const failure = yield* buildFailure(SqliteHistory.layer({ dataDirectory: directory }))
      expect(Option.getOrUndefined(failure)).toBeInstanceOf(DependencyUnavailable)
    }))

  it.scoped("rejects a bucket width that is not a positive integer", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const failure = yield* buildFailure(SqliteHistory.layer({ dataDirectory: directory, bucketMillis: 0 }))
      expect(Option.getOrUndefined(failure)).toBeInstanceOf(DependencyUnavailable)
    }))
})
