import { mkdirSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import { Effect, Layer } from "effect"
import { ChatHistory, traced } from "@chatify/core"
import type { HistorySlice } from "@chatify/core"
import { backgroundCheckpoints } from "./SqliteCheckpoints.js"
import { applyMigrations, type SqliteMigration } from "./SqliteMigrations.js"
import {
  ChatEvent,
  type ChatScopeType,
  DependencyUnavailable,
  EnrichedChatEvent,
  type HistoryCursorPosition,
  type ScopeRef,
  scopeKey,
  type StreamPosition
} from "@chatify/domain"

export interface SqliteHistoryOptions {
  readonly dataDirectory: string
  /** Defaults to "chatify.sqlite". */
  readonly fileName?: string
  /** The width of a time bucket of the partition key; defaults to one day, as in the Cassandra table. */
  readonly bucketMillis?: number
}

const DEPENDENCY = "sqlite-history"
const DEFAULT_FILE_NAME = "chatify.sqlite"
const DAY_MILLIS = 24 * 60 * 60 * 1000
const BUSY_TIMEOUT_MILLIS = 5_000
const MODULE_NAME = "chat"

const unavailable = (what: string) => (cause: unknown): DependencyUnavailable =>
  new DependencyUnavailable({
    dependency: DEPENDENCY,
    message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}`
  })

/** Every column, in the table's order. */
const TABLE_COLUMNS =
  "scope_key, bucket, created_at_utc, message_id, scope_type, scope_id, sender_id, text, origin_pod_id, broker_partition, broker_offset"

/** Code-first migrations, applied in order, each at most once per database. */
const migrations: ReadonlyArray<SqliteMigration> = [
  {
    id: "0001_init_chat",
    sql: `
      CREATE TABLE IF NOT EXISTS chat_messages (
        scope_key        TEXT    NOT NULL,
        bucket           INTEGER NOT NULL,
        created_at_utc   INTEGER NOT NULL,
        message_id       TEXT    NOT NULL,
        scope_type       INTEGER NOT NULL,
        scope_id         TEXT    NOT NULL,
        sender_id        TEXT    NOT NULL,
        text             TEXT    NOT NULL,
        origin_pod_id    TEXT    NOT NULL,
        broker_partition INTEGER NOT NULL,
        broker_offset    INTEGER NOT NULL,
        PRIMARY KEY (scope_key, bucket, created_at_utc, message_id)
      );
      -- Redelivered events carry the same messageId: one row, whatever its other columns say.
      CREATE UNIQUE INDEX IF NOT EXISTS chat_messages_message_id ON chat_messages (message_id);
      CREATE INDEX IF NOT EXISTS chat_messages_by_offset
        ON chat_messages (scope_key, broker_partition, broker_offset);
      -- Pages span buckets; ordering by the clock alone stays right even if bucketMillis changes between runs.
      CREATE INDEX IF NOT EXISTS chat_messages_by_time
        ON chat_messages (scope_key, created_at_utc, message_id);
    `
  },
  {
    // Every index of a history table takes a write at a random place per message (scopes
    // interleave), and each such page is written to the WAL again at every commit: five B-trees (the
    // rowid table, its key, three indexes) made a message cost about twice what these two do. The
    // table is now stored in page order (scope, time, id), which is also what a page of history reads;
    // a redelivery has the same key, so it is still one row, as in Cassandra's chat_messages; the
    // offset index serves resumes.
    id: "0002_chat_messages_clustered_by_scope",
    sql: `
      CREATE TABLE chat_messages_clustered (
        scope_key        TEXT    NOT NULL,
        bucket           INTEGER NOT NULL,
        created_at_utc   INTEGER NOT NULL,
        message_id       TEXT    NOT NULL,
        scope_type       INTEGER NOT NULL,
        scope_id         TEXT    NOT NULL,
        sender_id        TEXT    NOT NULL,
        text             TEXT    NOT NULL,
        origin_pod_id    TEXT    NOT NULL,
        broker_partition INTEGER NOT NULL,
        broker_offset    INTEGER NOT NULL,
        PRIMARY KEY (scope_key, created_at_utc, message_id)
      ) WITHOUT ROWID;
      INSERT OR IGNORE INTO chat_messages_clustered SELECT ${TABLE_COLUMNS} FROM chat_messages;
      DROP TABLE chat_messages;
      ALTER TABLE chat_messages_clustered RENAME TO chat_messages;
      CREATE INDEX chat_messages_by_offset ON chat_messages (scope_key, broker_partition, broker_offset);
    `
  }
]

interface MessageRow {
  readonly created_at_utc: number
  readonly message_id: string
  readonly scope_type: ChatScopeType
  readonly scope_id: string
  readonly sender_id: string
  readonly text: string
  readonly origin_pod_id: string
  readonly broker_partition: number
  readonly broker_offset: number
}

const ROW_COLUMNS =
  "created_at_utc, message_id, scope_type, scope_id, sender_id, text, origin_pod_id, broker_partition, broker_offset"

// The constructors validate, so a row that is not a valid event fails inside Effect.try rather than leaking out.
const fromRow = (row: MessageRow): EnrichedChatEvent =>
  new EnrichedChatEvent({
    chatEvent: new ChatEvent({
      messageId: row.message_id,
      scopeType: row.scope_type,
      scopeId: row.scope_id,
      senderId: row.sender_id,
      text: row.text,
      createdAtUtc: new Date(row.created_at_utc),
      originPodId: row.origin_pod_id
    }),
    partition: row.broker_partition,
    offset: row.broker_offset
  })

const openDatabase = (path: string) =>
  Effect.acquireRelease(
    Effect.try({ try: () => new Database(path), catch: unavailable(`cannot open ${path}`) }),
    (db) => Effect.try(() => db.close()).pipe(Effect.ignore)
  )

const configure = (db: Database.Database) =>
  Effect.try({
    try: () => {
      db.pragma("journal_mode = WAL")
      db.pragma("synchronous = NORMAL")
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MILLIS}`)
    },
    catch: unavailable("cannot configure the database")
  })

const migrate = (db: Database.Database) =>
  applyMigrations(db, MODULE_NAME, migrations, unavailable("cannot migrate the database"))

const makeStore = (db: Database.Database, bucketMillis: number) =>
  Effect.try({
    try: () => {
      const insert = db.prepare<
        [string, number, number, string, number, string, string, string, string, number, number]
      >(`
        INSERT INTO chat_messages (
          scope_key, bucket, created_at_utc, message_id, scope_type, scope_id,
          sender_id, text, origin_pod_id, broker_partition, broker_offset
        ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT DO NOTHING
      `)
      const insertAll = db.transaction((events: ReadonlyArray<EnrichedChatEvent>) => {
        for (const { chatEvent: e, partition, offset } of events) {
          const createdAtMs = e.createdAtUtc.getTime()
          insert.run(
            scopeKey(e),
            Math.floor(createdAtMs / bucketMillis),
            createdAtMs,
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
      })
      const newest = db.prepare<[string, number], MessageRow>(`
        SELECT ${ROW_COLUMNS} FROM chat_messages
        WHERE scope_key = ?
        ORDER BY created_at_utc DESC, message_id DESC
        LIMIT ?
      `)
      const olderThan = db.prepare<[string, number, string, number], MessageRow>(`
        SELECT ${ROW_COLUMNS} FROM chat_messages
        WHERE scope_key = ? AND (created_at_utc, message_id) < (?, ?)
        ORDER BY created_at_utc DESC, message_id DESC
        LIMIT ?
      `)
      const afterOffset = db.prepare<[string, number, number, number], MessageRow>(`
        SELECT ${ROW_COLUMNS} FROM chat_messages
        WHERE scope_key = ? AND broker_partition = ? AND broker_offset > ?
        ORDER BY broker_offset ASC
        LIMIT ?
      `)
      const ping = db.prepare<[], number>("SELECT 1").pluck()
      return { insertAll, newest, olderThan, afterOffset, ping }
    },
    catch: unavailable("cannot prepare statements")
  })

const make = (options: SqliteHistoryOptions) =>
  Effect.gen(function*() {
    const bucketMillis = options.bucketMillis ?? DAY_MILLIS
    if (!Number.isSafeInteger(bucketMillis) || bucketMillis <= 0) {
      return yield* new DependencyUnavailable({
        dependency: DEPENDENCY,
        message: `bucketMillis must be a positive integer, got ${bucketMillis}`
      })
    }
    yield* Effect.try({
      try: () => mkdirSync(options.dataDirectory, { recursive: true }),
      catch: unavailable(`cannot create ${options.dataDirectory}`)
    })
    const db = yield* openDatabase(join(options.dataDirectory, options.fileName ?? DEFAULT_FILE_NAME))
    yield* configure(db)
    yield* migrate(db)
    yield* backgroundCheckpoints(db)
    const statements = yield* makeStore(db, bucketMillis)

    const append = (events: ReadonlyArray<EnrichedChatEvent>) =>
      events.length === 0
        ? Effect.void
        : Effect.try({ try: () => statements.insertAll(events), catch: unavailable("cannot append") })

    const page = (
      scope: ScopeRef,
      { before, limit }: { readonly limit: number; readonly before: HistoryCursorPosition | undefined }
    ) =>
      Effect.try({
        try: (): HistorySlice => {
          // SQLite reads a negative LIMIT as "no limit"; callers validate, this only keeps a bad one harmless.
          const wanted = Math.max(0, Math.trunc(limit))
          if (wanted === 0) return { items: [], next: undefined }
          const key = scopeKey(scope)
          // One row more than asked tells whether another page exists, so the last page has no cursor.
          const rows = before === undefined
            ? statements.newest.all(key, wanted + 1)
            : statements.olderThan.all(key, before.createdAtMs, before.messageId, wanted + 1)
          const items = rows.slice(0, wanted).map(fromRow)
          const last = items[items.length - 1]
          const next = rows.length > wanted && last !== undefined
            ? { createdAtMs: last.chatEvent.createdAtUtc.getTime(), messageId: last.chatEvent.messageId }
            : undefined
          return { items, next }
        },
        catch: unavailable("cannot read a page")
      })

    const after = (scope: ScopeRef, position: StreamPosition, limit: number) =>
      Effect.try({
        try: (): ReadonlyArray<EnrichedChatEvent> => {
          const wanted = Math.max(0, Math.trunc(limit))
          if (wanted === 0) return []
          return statements.afterOffset.all(scopeKey(scope), position.partition, position.offset, wanted).map(fromRow)
        },
        catch: unavailable("cannot read after a position")
      })

    const ping = Effect.try({ try: () => void statements.ping.get(), catch: unavailable("ping failed") })

    return ChatHistory.of({
      append: traced("SqliteHistory.append")(append),
      page: traced("SqliteHistory.page")(page),
      after: traced("SqliteHistory.after")(after),
      ping
    })
  })

/** The embedded history store: one SQLite file in WAL mode, shaped like the Cassandra table. */
export const SqliteHistory = {
  layer: (options: SqliteHistoryOptions): Layer.Layer<ChatHistory, DependencyUnavailable> =>
    Layer.scoped(ChatHistory, make(options))
} as const
