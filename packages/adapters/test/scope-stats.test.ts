import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect, Layer } from "effect"
import { ChatHistory, ScopeStatsStore } from "@chatify/core"
import { ScopeWindowStats } from "@chatify/domain"
import { MemoryScopeStats } from "../src/memory/index.js"
import { SqliteHistory, SqliteScopeStats } from "../src/sqlite/index.js"
import { scopeStatsContract } from "./contracts/ScopeStatsContract.js"

/** A fresh directory, removed with everything in it when the scope closes. */
const tempDirectory = Effect.acquireRelease(
  Effect.try(() => mkdtempSync(join(tmpdir(), "chatify-stats-"))),
  (directory) => Effect.try(() => rmSync(directory, { recursive: true, force: true })).pipe(Effect.ignore)
)

scopeStatsContract("MemoryScopeStats", () => MemoryScopeStats)

scopeStatsContract(
  "SqliteScopeStats",
  () => Layer.unwrapScoped(Effect.map(tempDirectory, (dataDirectory) => SqliteScopeStats.layer({ dataDirectory })))
)

const window = new ScopeWindowStats({
  scopeType: 0,
  scopeId: "general",
  windowStartUtc: new Date("2026-11-30T10:00:00.000Z"),
  windowEndUtc: new Date("2026-11-30T10:01:00.000Z"),
  messageCount: 12,
  distinctSenders: 3,
  characterCount: 345,
  firstEventAtUtc: new Date("2026-11-30T10:00:01.000Z"),
  lastEventAtUtc: new Date("2026-11-30T10:00:59.000Z")
})

describe("SqliteScopeStats", () => {
  it.scoped("shares the history's file: its own table and migration, the data kept across a restart", () =>
    Effect.gen(function*() {
      const dataDirectory = yield* tempDirectory
      const both = Layer.merge(SqliteHistory.layer({ dataDirectory }), SqliteScopeStats.layer({ dataDirectory }))
      const range = { from: new Date("2026-11-30T00:00:00Z"), to: new Date("2026-12-01T00:00:00Z"), limit: 10 }
      yield* Effect.gen(function*() {
        yield* (yield* ScopeStatsStore).upsert([window])
        yield* (yield* ChatHistory).ping
      }).pipe(Effect.provide(both))
      // a second start applies nothing again and finds the window
      const read = yield* Effect.flatMap(ScopeStatsStore, (store) => store.range(window, range)).pipe(
        Effect.provide(SqliteScopeStats.layer({ dataDirectory }))
      )
      expect(read).toEqual([window])

      const db = new Database(join(dataDirectory, "chatify.sqlite"), { readonly: true })
      const migrations = db.prepare(
        "SELECT module_name, migration_id FROM schema_migrations ORDER BY module_name, migration_id"
      )
        .all()
      db.close()
      expect(migrations).toEqual([
        { module_name: "analytics", migration_id: "0001_scope_stats" },
        { module_name: "chat", migration_id: "0001_init_chat" },
        { module_name: "chat", migration_id: "0002_chat_messages_clustered_by_scope" }
      ])
    }))
})
