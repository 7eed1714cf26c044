import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import type { ScopeStatsStore } from "@chatify/core"
import {
  AnalyticsTables,
  analyticsMigrations,
  CassandraClient,
  CassandraScopeStats,
  chatMigrations
} from "../src/cassandra/index.js"
import { scopeStatsContract } from "./contracts/ScopeStatsContract.js"
import { dropKeyspace } from "./support/cassandraAdmin.js"
import { endpoints, ensureService } from "./support/services.js"

// This file's own keyspace, so parallel and earlier runs never meet.
const keyspace = `chatify_test_stats_${randomUUID().replaceAll("-", "").slice(0, 12)}`

let scope: Scope.CloseableScope | undefined
let shared: Context.Context<CassandraClient | ScopeStatsStore> | undefined

const sharedContext = () => {
  if (shared === undefined) throw new Error("beforeAll did not build the shared layer")
  return shared
}

beforeAll(async () => {
  await ensureService("cassandra")
  const built = await Effect.runPromise(
    Effect.gen(function*() {
      const s = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        CassandraScopeStats.layer.pipe(
          Layer.provideMerge(
            CassandraClient.layer({
              contactPoints: [endpoints.cassandra.host],
              port: endpoints.cassandra.port,
              keyspace,
              migrations: [...chatMigrations, ...analyticsMigrations]
            })
          )
        ),
        s
      )
      return { s, context }
    })
  )
  scope = built.s
  shared = built.context
}, 300_000)

afterAll(async () => {
  const s = scope
  if (s === undefined) return
  await Effect.runPromise(
    dropKeyspace(keyspace).pipe(
      Effect.tapError((error) => Effect.logWarning(`Could not drop test keyspace ${keyspace}`, error)),
      Effect.ignore,
      Effect.ensuring(Scope.close(s, Exit.void))
    )
  )
}, 150_000)

scopeStatsContract("CassandraScopeStats", () => Layer.succeedContext(sharedContext()))

describe("CassandraScopeStats schema", () => {
  it.live("the Analytics migration created scope_stats, one partition per scope and day, windows ascending", () =>
    Effect.gen(function*() {
      const cassandra = Context.get(sharedContext(), CassandraClient)
      expect(cassandra.migrations.applied).toContainEqual({ moduleName: "Analytics", migrationId: "0001_scope_stats" })
      const columns = yield* cassandra.execute(
        "test query",
        `SELECT column_name, kind, clustering_order FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?`,
        [keyspace, AnalyticsTables.scopeStats]
      )
      const key = columns.rows
        .filter((row) => row.get("kind") !== "regular")
        .map((row) => ["kind", "column_name", "clustering_order"].map((c) => String(row.get(c))).join(":"))
        .sort()
      expect(key).toEqual([
        "clustering:window_start_utc:asc",
        "partition_key:bucket:none",
        "partition_key:scope_id:none"
      ])
    }))
})
