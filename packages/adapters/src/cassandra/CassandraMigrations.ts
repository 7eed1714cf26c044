import type { types } from "cassandra-driver"
import { Effect, Schema } from "effect"
import type { DependencyUnavailable } from "@chatify/domain"

/**
 * One code-first schema change, owned by a module (the original's IScyllaSchemaMigration). Statements
 * run one by one, in order; the migration is recorded only once all of them succeeded, so a failed
 * one runs again from its first statement at the next start: write them with IF NOT EXISTS.
 */
export interface CassandraMigration {
  readonly moduleName: string
  readonly migrationId: string
  /** The CQL to run, given the keyspace so that every name can be qualified. */
  readonly statements: (keyspace: string) => ReadonlyArray<string>
}

export interface MigrationRef {
  readonly moduleName: string
  readonly migrationId: string
}

/** A migration that could not be applied; startup stops with it when FailFastOnSchemaError. */
export class SchemaMigrationFailed extends Schema.TaggedError<SchemaMigrationFailed>()("SchemaMigrationFailed", {
  moduleName: Schema.String,
  migrationId: Schema.String,
  message: Schema.String
}) {}

/** What a start did to the schema. */
export interface MigrationReport {
  /** Applied by this start, in order. */
  readonly applied: ReadonlyArray<MigrationRef>
  /** Found in the history table, so left alone. */
  readonly alreadyApplied: ReadonlyArray<MigrationRef>
  /** The migration that failed, when FailFastOnSchemaError is off (otherwise startup failed). */
  readonly failed: SchemaMigrationFailed | undefined
  /** Pending migrations after a failed one: never applied out of order. */
  readonly notAttempted: ReadonlyArray<MigrationRef>
}

/** The two ways the runner talks to Cassandra; the client supplies them with its error mapping. */
export interface CqlExecutor {
  /** Schema statements: not prepared (each runs once) and followed by the driver's schema-agreement wait. */
  readonly schema: (what: string, cql: string) => Effect.Effect<void, DependencyUnavailable>
  /** Prepared data statements at the configured consistency. */
  readonly query: (
    what: string,
    cql: string,
    params: ReadonlyArray<unknown>
  ) => Effect.Effect<types.ResultSet, DependencyUnavailable>
}

export interface MigrationSettings {
  readonly keyspace: string
  readonly historyTable: string
  readonly failFast: boolean
}

const nameOf = (m: MigrationRef): string => `${m.moduleName}/${m.migrationId}`

const refOf = ({ migrationId, moduleName }: MigrationRef): MigrationRef => ({ moduleName, migrationId })

const messageOf = (error: { readonly message: string }): string => error.message

/** The history table: one row per applied migration (the original's schema_migrations). */
export const migrationHistoryTableCql = (keyspace: string, table: string): string => `
  CREATE TABLE IF NOT EXISTS ${keyspace}.${table} (
    module_name    text,
    migration_id   text,
    applied_at_utc timestamp,
    PRIMARY KEY (module_name, migration_id)
  )`

/** Reads which migrations the history table records as applied, as `module/id` keys. */
export const readAppliedMigrations = (executor: CqlExecutor, keyspace: string, table: string) =>
  executor.query(
    "cannot read the schema migration history",
    // The table holds a handful of rows: reading it whole is cheaper than one query per module.
    `SELECT module_name, migration_id FROM ${keyspace}.${table}`,
    []
  ).pipe(
    Effect.map((result) =>
      new Set(result.rows.map((row) =>
        nameOf({ moduleName: String(row.get("module_name")), migrationId: String(row.get("migration_id")) })
      ))
    )
  )

/**
 * Applies the pending migrations in list order and records each one. A failure stops the run: with
 * `failFast` it fails (startup stops), otherwise it is logged and reported, and the migrations after
 * it are left for a later start, as they may depend on it.
 */
export const applyMigrations = (
  executor: CqlExecutor,
  migrations: ReadonlyArray<CassandraMigration>,
  settings: MigrationSettings
): Effect.Effect<MigrationReport, DependencyUnavailable | SchemaMigrationFailed> =>
  Effect.gen(function*() {
    const { failFast, historyTable, keyspace } = settings
    const names = migrations.map(nameOf)
    const duplicate = migrations.find((m, i) => names.indexOf(nameOf(m)) !== i)
    if (duplicate !== undefined) {
      return yield* new SchemaMigrationFailed({ ...refOf(duplicate), message: `${nameOf(duplicate)} is listed twice` })
    }

    yield* executor.schema(
      `cannot create the migration history table ${historyTable}`,
      migrationHistoryTableCql(keyspace, historyTable)
    )
    const recorded = yield* readAppliedMigrations(executor, keyspace, historyTable)

    const applied: Array<MigrationRef> = []
    const alreadyApplied = migrations.filter((m) => recorded.has(nameOf(m))).map(refOf)
    const pending = migrations.filter((m) => !recorded.has(nameOf(m)))

    for (const [index, migration] of pending.entries()) {
      const outcome = yield* Effect.gen(function*() {
        const statements = yield* Effect.try({
          try: () => migration.statements(keyspace),
          catch: (cause) => ({ message: `cannot build its statements: ${String(cause)}` })
        })
        for (const [i, cql] of statements.entries()) {
          yield* executor.schema(`statement ${i + 1} of ${statements.length}`, cql)
        }
        // Wall-clock time on purpose: this records when the schema changed, whatever Clock a test runs with.
        const appliedAt = yield* Effect.sync(() => new Date())
        yield* executor.query(
          `cannot record migration ${nameOf(migration)}`,
          `INSERT INTO ${keyspace}.${historyTable} (module_name, migration_id, applied_at_utc) VALUES (?, ?, ?)`,
          [migration.moduleName, migration.migrationId, appliedAt]
        )
      }).pipe(Effect.either)

      if (outcome._tag === "Right") {
        applied.push(refOf(migration))
        yield* Effect.logInfo(`Applied Cassandra schema migration ${nameOf(migration)}`)
        continue
      }
      const failed = new SchemaMigrationFailed({
        moduleName: migration.moduleName,
        migrationId: migration.migrationId,
        message: `migration ${nameOf(migration)} failed: ${messageOf(outcome.left)}`
      })
      if (failFast) {
        yield* Effect.logError(`${failed.message}; stopping startup (FailFastOnSchemaError)`)
        return yield* failed
      }
      const notAttempted = pending.slice(index + 1).map(refOf)
      yield* Effect.logError(
        `${failed.message}; starting anyway (FailFastOnSchemaError is off)` +
          (notAttempted.length > 0 ? `, not attempted: ${notAttempted.map(nameOf).join(", ")}` : "")
      )
      return { applied, alreadyApplied, failed, notAttempted }
    }

    if (applied.length === 0) {
      yield* Effect.logInfo(
        `Cassandra schema of ${keyspace} is up to date (${alreadyApplied.length} migrations applied before)`
      )
    }
    return { applied, alreadyApplied, failed: undefined, notAttempted: [] }
  })
