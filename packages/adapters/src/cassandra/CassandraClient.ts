import type { Client, QueryOptions, tracker, types } from "cassandra-driver"
import { Context, Data, Duration, Effect, Layer, Option, Schedule, type Scope } from "effect"
import { DependencyUnavailable } from "@chatify/domain"
import { Consistency, CONSISTENCIES, consistencyName, parseConsistency } from "./CassandraConsistency.js"
import {
  applyMigrations,
  type CassandraMigration,
  type CqlExecutor,
  type MigrationReport,
  readAppliedMigrations,
  type SchemaMigrationFailed
} from "./CassandraMigrations.js"
import { chatMigrations } from "./ChatSchema.js"

export const CASSANDRA_DEPENDENCY = "cassandra"

export type CassandraReplication =
  | { readonly class: "SimpleStrategy"; readonly replicationFactor: number }
  | { readonly class: "NetworkTopologyStrategy"; readonly dataCenters: Readonly<Record<string, number>> }

/** Settings under the original's Chatify:Scylla / Chatify:Database keys. */
export interface CassandraOptions {
  readonly contactPoints: ReadonlyArray<string>
  /** Defaults to 9042. */
  readonly port?: number | undefined
  /** Defaults to "datacenter1" (a single node's data center). */
  readonly localDataCenter?: string | undefined
  /** Keyspace; defaults to "chatify". */
  readonly keyspace?: string | undefined
  /** How a keyspace created at startup replicates; defaults to SimpleStrategy with RF 1. */
  readonly replication?: CassandraReplication | undefined
  /** A consistency level by name ("LOCAL_QUORUM", "one", …) or by the driver's code; defaults to LOCAL_QUORUM. */
  readonly consistency?: string | types.consistencies | undefined
  /** ApplySchemaOnStartup: create the keyspace and apply pending migrations; defaults to true. */
  readonly applySchemaOnStartup?: boolean | undefined
  /** FailFastOnSchemaError: a failing migration stops startup; defaults to true. */
  readonly failFastOnSchemaError?: boolean | undefined
  /** SchemaMigrationTableName; defaults to "schema_migrations". */
  readonly schemaMigrationTableName?: string | undefined
  /** The migrations to apply, in order; defaults to the chat module's. */
  readonly migrations?: ReadonlyArray<CassandraMigration> | undefined
  /** Connection attempts at startup before giving up; defaults to 10 (about 30 s with the backoff). */
  readonly connectAttempts?: number | undefined
  /** Observes every request (metrics, slow-query logs, tests): an instance of the driver's RequestTracker class. */
  readonly requestTracker?: tracker.RequestTracker | undefined
}

export interface CassandraClientService {
  /** The connected driver client, for what the helpers below do not cover. */
  readonly client: Client
  readonly keyspace: string
  readonly consistency: types.consistencies
  /** `keyspace.table`: every statement names its table in full, the client has no session keyspace. */
  readonly table: (name: string) => string
  /** A prepared statement at the configured consistency; any failure becomes DependencyUnavailable naming `what`. */
  readonly execute: (
    what: string,
    cql: string,
    params: ReadonlyArray<unknown>,
    options?: QueryOptions
  ) => Effect.Effect<types.ResultSet, DependencyUnavailable>
  /**
   * Writes: each entry one prepared statement, or an unlogged batch of statements that share a
   * partition key, at most `concurrency` in flight; idempotent upserts (the driver may retry them).
   * One Effect for the lot: fails with the first error, after the requests in flight settled.
   */
  readonly writeAll: (
    what: string,
    writes: ReadonlyArray<CqlWrite>,
    concurrency: number
  ) => Effect.Effect<void, DependencyUnavailable>
  /** Readiness: one round trip to the coordinator. */
  readonly ping: Effect.Effect<void, DependencyUnavailable>
  /** What this start did to the schema. */
  readonly migrations: MigrationReport
}

/** One statement and its parameters. */
export interface CqlStatement {
  readonly query: string
  readonly params: ReadonlyArray<unknown>
}
/** A statement, or an unlogged batch of statements on one partition (several statements). */
export type CqlWrite = CqlStatement | ReadonlyArray<CqlStatement>

/** The Cassandra (or ScyllaDB) session of the process, with its schema brought up to date. */
export class CassandraClient extends Context.Tag("chatify/CassandraClient")<CassandraClient, CassandraClientService>() {
  static readonly layer = (
    options: CassandraOptions
  ): Layer.Layer<CassandraClient, DependencyUnavailable | SchemaMigrationFailed> =>
    Layer.scoped(CassandraClient, makeCassandraClient(options))
}

export const DEFAULT_KEYSPACE = "chatify"
export const DEFAULT_SCHEMA_MIGRATION_TABLE = "schema_migrations"
const DEFAULT_DATA_CENTER = "datacenter1"
const DEFAULT_PORT = 9042
const DEFAULT_CONNECT_ATTEMPTS = 10
const SHUTDOWN_TIMEOUT = Duration.seconds(5)

export const cassandraUnavailable = (what: string) => (cause: unknown): DependencyUnavailable =>
  new DependencyUnavailable({
    dependency: CASSANDRA_DEPENDENCY,
    // The driver's NoHostAvailableError appends every host's error with its stack: the first line says it.
    message: `${what}: ${(cause instanceof Error ? cause.message : String(cause)).split("\n", 1)[0]}`
  })

const invalid = (message: string) => new DependencyUnavailable({ dependency: CASSANDRA_DEPENDENCY, message })

// Unquoted CQL identifiers: names go into statements as text, so only these are accepted.
const IDENTIFIER = /^[A-Za-z][A-Za-z0-9_]{0,47}$/u

const checkIdentifier = (what: string, name: string) =>
  IDENTIFIER.test(name)
    ? Effect.succeed(name.toLowerCase())
    : Effect.fail(
      invalid(`${what} "${name}" is not a valid CQL name (a letter, then letters, digits or _; at most 48)`)
    )

const resolveConsistency = (value: CassandraOptions["consistency"]) => {
  if (value === undefined) return Effect.succeed<types.consistencies>(Consistency.localQuorum)
  if (typeof value === "number") {
    return CONSISTENCIES.some(([, level]) => level === value)
      ? Effect.succeed(value)
      : Effect.fail(invalid(`consistency ${value} is not a consistency level`))
  }
  return Option.match(parseConsistency(value), {
    onNone: () =>
      Effect.fail(invalid(`consistency "${value}" is not one of ${CONSISTENCIES.map(([name]) => name).join(", ")}`)),
    onSome: Effect.succeed
  })
}

const cqlString = (text: string): string => `'${text.replaceAll("'", "''")}'`

const isReplicationFactor = (n: number) => Number.isSafeInteger(n) && n >= 1

const replicationCql = (replication: CassandraReplication) => {
  if (replication.class === "SimpleStrategy") {
    return isReplicationFactor(replication.replicationFactor)
      ? Effect.succeed(`{'class': 'SimpleStrategy', 'replication_factor': ${replication.replicationFactor}}`)
      : Effect.fail(invalid(`replication factor ${replication.replicationFactor} is not a positive integer`))
  }
  const dataCenters = Object.entries(replication.dataCenters)
  if (dataCenters.length === 0 || !dataCenters.every(([, rf]) => isReplicationFactor(rf))) {
    return Effect.fail(invalid("NetworkTopologyStrategy needs a positive replication factor per data center"))
  }
  return Effect.succeed(
    `{'class': 'NetworkTopologyStrategy', ${dataCenters.map(([dc, rf]) => `${cqlString(dc)}: ${rf}`).join(", ")}}`
  )
}

const describeEndpoint = (options: CassandraOptions) =>
  `${options.contactPoints.join(",")} (port ${options.port ?? DEFAULT_PORT})`

/** A connection attempt that failed: worth another try, unlike options the driver rejects. */
class NotConnected extends Data.TaggedError("NotConnected")<{ readonly error: DependencyUnavailable }> {}

const errorOf = (failure: NotConnected | DependencyUnavailable): DependencyUnavailable =>
  failure._tag === "NotConnected" ? failure.error : failure

/** Creates a client and connects it; a client that failed to connect is shut down, never reused. */
const connectOnce = (settings: ConstructorParameters<typeof Client>[0]) =>
  Effect.gen(function*() {
    // loaded with the first client: a process without Cassandra never loads the driver
    const { Client } = yield* Effect.promise(() => import("cassandra-driver"))
    // The constructor validates its options synchronously.
    const client = yield* Effect.try({
      try: () => new Client(settings),
      catch: cassandraUnavailable("invalid client options")
    })
    yield* Effect.tryPromise({
      try: () => client.connect(),
      catch: (cause) => new NotConnected({ error: cassandraUnavailable("cannot connect")(cause) })
    }).pipe(Effect.onError(() => Effect.tryPromise(() => client.shutdown()).pipe(Effect.ignore)))
    return client
  })

/**
 * Connects with bounded, jittered exponential retries (Cassandra may still be starting), brings the
 * schema up to date and shuts the client down when the scope closes.
 */
export const makeCassandraClient = (
  options: CassandraOptions
): Effect.Effect<CassandraClientService, DependencyUnavailable | SchemaMigrationFailed, Scope.Scope> =>
  Effect.gen(function*() {
    if (options.contactPoints.length === 0) return yield* invalid("no contact points")
    const keyspace = yield* checkIdentifier("keyspace", options.keyspace ?? DEFAULT_KEYSPACE)
    const historyTable = yield* checkIdentifier(
      "schema migration table",
      options.schemaMigrationTableName ?? DEFAULT_SCHEMA_MIGRATION_TABLE
    )
    const consistency = yield* resolveConsistency(options.consistency)
    const replication = yield* replicationCql(options.replication ?? { class: "SimpleStrategy", replicationFactor: 1 })
    const attempts = Math.max(1, Math.trunc(options.connectAttempts ?? DEFAULT_CONNECT_ATTEMPTS))
    const endpoint = describeEndpoint(options)

    const settings: ConstructorParameters<typeof Client>[0] = {
      contactPoints: [...options.contactPoints],
      localDataCenter: options.localDataCenter ?? DEFAULT_DATA_CENTER,
      protocolOptions: { port: options.port ?? DEFAULT_PORT },
      // bigint columns (offsets) as native bigint rather than the driver's Long class
      encoding: { useBigIntAsLong: true },
      queryOptions: { consistency, prepare: true },
      ...(options.requestTracker === undefined ? {} : { requestTracker: options.requestTracker })
    }

    const retry = Schedule.exponential("500 millis", 2).pipe(
      Schedule.union(Schedule.spaced("5 seconds")),
      Schedule.jittered,
      Schedule.intersect(Schedule.recurs(attempts - 1)),
      Schedule.tapInput((failure: NotConnected | DependencyUnavailable) =>
        Effect.logWarning(`Waiting for cassandra at ${endpoint}: ${errorOf(failure).message}`)
      )
    )
    const client = yield* Effect.acquireRelease(
      connectOnce(settings).pipe(
        Effect.retry({ schedule: retry, while: (failure) => failure._tag === "NotConnected" }),
        Effect.catchTag("NotConnected", ({ error }) =>
          Effect.zipRight(
            Effect.logError(`Gave up waiting for cassandra at ${endpoint} after ${attempts} attempts`, error.message),
            Effect.fail(error)
          ))
      ),
      (client) => Effect.tryPromise(() => client.shutdown()).pipe(Effect.timeout(SHUTDOWN_TIMEOUT), Effect.ignore)
    )
    yield* Effect.logInfo(
      `Connected to cassandra at ${endpoint}, keyspace ${keyspace}, consistency ${consistencyName(consistency)}`
    )

    const execute = (what: string, cql: string, params: ReadonlyArray<unknown>, queryOptions: QueryOptions = {}) =>
      Effect.tryPromise({
        try: () => client.execute(cql, [...params], { prepare: true, consistency, ...queryOptions }),
        catch: cassandraUnavailable(what)
      })

    const writeAll = (what: string, writes: ReadonlyArray<CqlWrite>, concurrency: number) =>
      Effect.async<void, DependencyUnavailable>((resume) => {
        const options = { prepare: true, consistency, isIdempotent: true }
        const limit = Math.max(1, Math.trunc(concurrency))
        let next = 0
        let running = 0
        let failure: unknown = undefined
        const launch = (): void => {
          while (failure === undefined && running < limit && next < writes.length) {
            const write = writes[next++]!
            running++
            const request = "query" in write
              ? client.execute(write.query, [...write.params], options)
              : write.length === 1
              ? client.execute(write[0]!.query, [...write[0]!.params], options)
              : client.batch(write.map(({ params, query }) => ({ query, params: [...params] })), {
                ...options,
                logged: false
              })
            request.then(
              () => {
                running--
                launch()
              },
              (error: unknown) => {
                running--
                failure ??= error
                launch()
              }
            )
          }
          if (running === 0 && (failure !== undefined || next >= writes.length)) {
            resume(failure === undefined ? Effect.void : Effect.fail(cassandraUnavailable(what)(failure)))
          }
        }
        launch()
      })

    const executor: CqlExecutor = {
      schema: (what, cql) =>
        Effect.asVoid(Effect.tryPromise({
          try: () => client.execute(cql, [], { prepare: false }),
          catch: cassandraUnavailable(what)
        })),
      query: (what, cql, params) => execute(what, cql, params)
    }

    const migrations = options.migrations ?? chatMigrations
    const report: MigrationReport = options.applySchemaOnStartup ?? true
      ? yield* Effect.zipRight(
        executor.schema(
          `cannot create keyspace ${keyspace}`,
          `CREATE KEYSPACE IF NOT EXISTS ${keyspace} WITH replication = ${replication} AND durable_writes = true`
        ),
        applyMigrations(executor, migrations, {
          keyspace,
          historyTable,
          failFast: options.failFastOnSchemaError ?? true
        })
      )
      : yield* checkSchemaWithoutApplying(executor, migrations, keyspace, historyTable)

    return {
      client,
      keyspace,
      consistency,
      table: (name) => `${keyspace}.${name}`,
      execute,
      writeAll,
      ping: Effect.asVoid(execute("ping failed", "SELECT release_version FROM system.local", [])),
      migrations: report
    }
  })

/**
 * ApplySchemaOnStartup off: the keyspace must exist (the schema is managed by hand); pending
 * migrations are only reported, as the operator may apply them later.
 */
const checkSchemaWithoutApplying = (
  executor: CqlExecutor,
  migrations: ReadonlyArray<CassandraMigration>,
  keyspace: string,
  historyTable: string
) =>
  Effect.gen(function*() {
    const found = yield* executor.query(
      "cannot read the keyspaces",
      "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
      [keyspace]
    )
    if (found.rowLength === 0) {
      return yield* invalid(`keyspace ${keyspace} does not exist and ApplySchemaOnStartup is off`)
    }
    const recorded = yield* readAppliedMigrations(executor, keyspace, historyTable).pipe(
      Effect.catchAll((error) =>
        Effect.as(
          Effect.logWarning(`Cannot check the schema migrations of ${keyspace}: ${error.message}`),
          new Set<string>()
        )
      )
    )
    const known = (m: CassandraMigration) => recorded.has(`${m.moduleName}/${m.migrationId}`)
    const pending = migrations.filter((m) => !known(m))
    if (pending.length > 0) {
      yield* Effect.logWarning(
        `ApplySchemaOnStartup is off and ${keyspace} lacks migrations: ` +
          pending.map((m) => `${m.moduleName}/${m.migrationId}`).join(", ")
      )
    }
    const ref = ({ migrationId, moduleName }: CassandraMigration) => ({ moduleName, migrationId })
    return {
      applied: [],
      alreadyApplied: migrations.filter(known).map(ref),
      failed: undefined,
      notAttempted: pending.map(ref)
    } satisfies MigrationReport
  })
