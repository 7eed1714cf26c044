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

chatHistoryContract("SqliteHistory", () =>
  Layer.unwrapScoped(Effect.map(tempDirectory, (dataDirectory) => SqliteHistory.layer({ dataDirectory }))))

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
      const slice = yield* Effect.flatMap(ChatHistory, (history) => history.page(scope, { limit: 10, before: undefined }))
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
      expect(migrations).toHaveLength(1)
      expect(migrations[0]?.migration_id).toBe("0001_init_chat")
      expect(migrations[0]?.applied_at_utc).toBeGreaterThan(0)
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
      const events = ["1", "3", "2"].map((last, i) => eventAt(scope, T0, i, `${prefix}-0000-4000-8000-00000000000${last}`))
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
