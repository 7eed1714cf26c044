import type Database from "better-sqlite3"
import { Effect } from "effect"

export interface SqliteMigration {
  readonly id: string
  readonly sql: string
}

/**
 * Applies a module's migrations that the file has not seen, in order, and records each in the
 * shared `schema_migrations` table (one table for every module that keeps data in the file).
 */
export const applyMigrations = <E>(
  db: Database.Database,
  moduleName: string,
  migrations: ReadonlyArray<SqliteMigration>,
  onFailure: (cause: unknown) => E
): Effect.Effect<void, E> =>
  Effect.try({
    try: () => {
      db.exec(`
        CREATE TABLE IF NOT EXISTS schema_migrations (
          module_name    TEXT    NOT NULL,
          migration_id   TEXT    NOT NULL,
          applied_at_utc INTEGER NOT NULL,
          PRIMARY KEY (module_name, migration_id)
        )
      `)
      const isApplied = db.prepare<[string, string], number>(
        "SELECT 1 FROM schema_migrations WHERE module_name = ? AND migration_id = ?"
      ).pluck()
      const record = db.prepare<[string, string, number]>(
        "INSERT INTO schema_migrations (module_name, migration_id, applied_at_utc) VALUES (?, ?, ?)"
      )
      // IMMEDIATE takes the write lock first, so two processes opening one file cannot both apply a migration.
      db.transaction(() => {
        for (const migration of migrations) {
          if (isApplied.get(moduleName, migration.id) !== undefined) continue
          db.exec(migration.sql)
          // Wall-clock time on purpose: this records when the file changed, not a simulated time.
          record.run(moduleName, migration.id, Date.now())
        }
      }).immediate()
    },
    catch: onFailure
  })
