import { mkdirSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import { Effect, Layer } from "effect"
import { ScopeStatsStore, traced } from "@chatify/core"
import { type ChatScopeType, DependencyUnavailable, type ScopeRef, scopeKey, ScopeWindowStats } from "@chatify/domain"
import { backgroundCheckpoints } from "./SqliteCheckpoints.js"
import { applyMigrations, type SqliteMigration } from "./SqliteMigrations.js"

export interface SqliteScopeStatsOptions {
  readonly dataDirectory: string
  /** Defaults to "chatify.sqlite": the history's file, with a table of its own. */
  readonly fileName?: string
}

const DEPENDENCY = "sqlite-scope-stats"
const DEFAULT_FILE_NAME = "chatify.sqlite"
const BUSY_TIMEOUT_MILLIS = 5_000
const MODULE_NAME = "analytics"

const unavailable = (what: string) => (cause: unknown): DependencyUnavailable =>
  new DependencyUnavailable({
    dependency: DEPENDENCY,
    message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}`
  })

/** Code-first migrations of the analytics module, recorded in the history's schema_migrations. */
const migrations: ReadonlyArray<SqliteMigration> = [
  {
    // The shape of Cassandra's scope_stats: one row per (scope, window start), read oldest first.
    id: "0001_scope_stats",
    sql: `
      CREATE TABLE IF NOT EXISTS scope_stats (
        scope_key          TEXT    NOT NULL,
        window_start_utc   INTEGER NOT NULL,
        window_end_utc     INTEGER NOT NULL,
        scope_type         INTEGER NOT NULL,
        scope_id           TEXT    NOT NULL,
        message_count      INTEGER NOT NULL,
        distinct_senders   INTEGER NOT NULL,
        character_count    INTEGER NOT NULL,
        first_event_at_utc INTEGER NOT NULL,
        last_event_at_utc  INTEGER NOT NULL,
        PRIMARY KEY (scope_key, window_start_utc)
      ) WITHOUT ROWID;
    `
  }
]

interface StatsRow {
  readonly window_start_utc: number
  readonly window_end_utc: number
  readonly scope_type: ChatScopeType
  readonly scope_id: string
  readonly message_count: number
  readonly distinct_senders: number
  readonly character_count: number
  readonly first_event_at_utc: number
  readonly last_event_at_utc: number
}

// The constructor validates, so a row that is not a valid window fails inside Effect.try.
const fromRow = (row: StatsRow): ScopeWindowStats =>
  new ScopeWindowStats({
    scopeType: row.scope_type,
    scopeId: row.scope_id,
    windowStartUtc: new Date(row.window_start_utc),
    windowEndUtc: new Date(row.window_end_utc),
    messageCount: row.message_count,
    distinctSenders: row.distinct_senders,
    characterCount: row.character_count,
    firstEventAtUtc: new Date(row.first_event_at_utc),
    lastEventAtUtc: new Date(row.last_event_at_utc)
  })

const open = (path: string) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        const db = new Database(path)
        db.pragma("journal_mode = WAL")
        db.pragma("synchronous = NORMAL")
        db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MILLIS}`)
        return db
      },
      catch: unavailable(`cannot open ${path}`)
    }),
    (db) => Effect.try(() => db.close()).pipe(Effect.ignore)
  )

const migrate = (db: Database.Database) =>
  applyMigrations(db, MODULE_NAME, migrations, unavailable("cannot migrate the database"))

const make = (options: SqliteScopeStatsOptions) =>
  Effect.gen(function*() {
    yield* Effect.try({
      try: () => mkdirSync(options.dataDirectory, { recursive: true }),
      catch: unavailable(`cannot create ${options.dataDirectory}`)
    })
    const db = yield* open(join(options.dataDirectory, options.fileName ?? DEFAULT_FILE_NAME))
    yield* migrate(db)
    yield* backgroundCheckpoints(db)
    const statements = yield* Effect.try({
      try: () => {
        const upsert = db.prepare<[string, number, number, number, string, number, number, number, number, number]>(`
          INSERT INTO scope_stats (
            scope_key, window_start_utc, window_end_utc, scope_type, scope_id,
            message_count, distinct_senders, character_count, first_event_at_utc, last_event_at_utc
          ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          ON CONFLICT (scope_key, window_start_utc) DO UPDATE SET
            window_end_utc = excluded.window_end_utc,
            message_count = excluded.message_count,
            distinct_senders = excluded.distinct_senders,
            character_count = excluded.character_count,
            first_event_at_utc = excluded.first_event_at_utc,
            last_event_at_utc = excluded.last_event_at_utc
        `)
        const upsertAll = db.transaction((windows: ReadonlyArray<ScopeWindowStats>) => {
          for (const w of windows) {
            upsert.run(
              scopeKey(w),
              w.windowStartUtc.getTime(),
              w.windowEndUtc.getTime(),
              w.scopeType,
              w.scopeId,
              w.messageCount,
              w.distinctSenders,
              w.characterCount,
              w.firstEventAtUtc.getTime(),
              w.lastEventAtUtc.getTime()
            )
          }
        })
        const range = db.prepare<[string, number, number, number], StatsRow>(`
          SELECT window_start_utc, window_end_utc, scope_type, scope_id, message_count, distinct_senders,
                 character_count, first_event_at_utc, last_event_at_utc
          FROM scope_stats
          WHERE scope_key = ? AND window_start_utc >= ? AND window_start_utc < ?
          ORDER BY window_start_utc ASC
          LIMIT ?
        `)
        return { upsertAll, range }
      },
      catch: unavailable("cannot prepare statements")
    })

    return ScopeStatsStore.of({
      upsert: traced("SqliteScopeStats.upsert")((windows: ReadonlyArray<ScopeWindowStats>) =>
        windows.length === 0
          ? Effect.void
          : Effect.try({ try: () => statements.upsertAll(windows), catch: unavailable("cannot store window stats") })
      ),
      range: traced("SqliteScopeStats.range")((
        scope: ScopeRef,
        { from, limit, to }: { readonly from: Date; readonly to: Date; readonly limit: number }
      ) =>
        Effect.try({
          try: () =>
            limit <= 0
              ? []
              : statements.range.all(scopeKey(scope), from.getTime(), to.getTime(), Math.trunc(limit)).map(fromRow),
          catch: unavailable("cannot read window stats")
        })
      )
    })
  })

/** The embedded stats store: a scope_stats table in the history's SQLite file. */
export const SqliteScopeStats = {
  layer: (options: SqliteScopeStatsOptions): Layer.Layer<ScopeStatsStore, DependencyUnavailable> =>
    Layer.scoped(ScopeStatsStore, make(options))
} as const
