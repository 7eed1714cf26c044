import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect, Layer, Schedule } from "effect"
import { backgroundCheckpoints, SqliteCheckpointer } from "../src/sqlite/index.js"

const directories: Array<string> = []
afterEach(() => {
  for (const dir of directories.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** A WAL database with a table, closed with the scope. */
const walDatabase = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = mkdtempSync(join(tmpdir(), "chatify-checkpoints-"))
    directories.push(dir)
    const db = new Database(join(dir, "test.sqlite"))
    db.pragma("journal_mode = WAL")
    db.pragma("synchronous = NORMAL")
    db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    return db
  }),
  (db) => Effect.sync(() => db.close())
)

describe("background checkpoints", () => {
  it.scopedLive("copy the WAL into the database file without the writer checkpointing", () =>
    Effect.gen(function*() {
      const db = yield* walDatabase
      yield* backgroundCheckpoints(db, { interval: "20 millis" })
      // The writer's own threshold is far above what this test writes: only the worker can move it.
      expect(db.pragma("wal_autocheckpoint", { simple: true })).toBe(16_384)
      const before = statSync(db.name).size
      const insert = db.prepare("INSERT INTO items (body) VALUES (?)")
      db.transaction(() => {
        for (let i = 0; i < 2_000; i++) insert.run(`item ${i} `.repeat(20))
      })()
      yield* Effect.sync(() => statSync(db.name).size).pipe(
        Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (size) => size > before + 100_000 }),
        Effect.timeout("10 seconds")
      )
      expect(statSync(db.name).size).toBeGreaterThan(before + 100_000)
    }))

  it.scopedLive("stop with their scope, leaving the database usable", () =>
    Effect.gen(function*() {
      const db = yield* walDatabase
      yield* Effect.scoped(backgroundCheckpoints(db))
      db.prepare("INSERT INTO items (body) VALUES (?)").run("after")
      expect(db.prepare("SELECT count(*) FROM items").pluck().get()).toBe(1)
    }))

  /** The process's threads (Linux): a worker thread brings its own. */
  const threads = () => readdirSync("/proc/self/task").length
  const writeAndAwaitCheckpoint = (db: Database.Database) =>
    Effect.gen(function*() {
      const before = statSync(db.name).size
      const insert = db.prepare("INSERT INTO items (body) VALUES (?)")
      db.transaction(() => {
        for (let i = 0; i < 2_000; i++) insert.run(`item ${i} `.repeat(20))
      })()
      return yield* Effect.sync(() => statSync(db.name).size).pipe(
        Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (size) => size > before + 100_000 }),
        Effect.timeout("10 seconds")
      )
    })

  it.scopedLive("share one worker among the databases of a process when SqliteCheckpointer is provided", () =>
    Effect.gen(function*() {
      const first = yield* walDatabase
      const second = yield* walDatabase
      const third = yield* walDatabase
      yield* backgroundCheckpoints(first, { interval: "20 millis" })
      // the worker's threads start as it boots: wait until their number holds still
      let withOneWorker = threads()
      for (let steady = 0; steady < 3;) {
        yield* Effect.sleep("100 millis")
        const now = threads()
        steady = now === withOneWorker ? steady + 1 : 0
        withOneWorker = now
      }
      yield* backgroundCheckpoints(second, { interval: "20 millis" })
      yield* backgroundCheckpoints(third)
      yield* writeAndAwaitCheckpoint(first)
      yield* writeAndAwaitCheckpoint(second)
      expect(threads()).toBe(withOneWorker)
      // one database's release leaves the others' checkpoints running
      yield* Effect.scoped(backgroundCheckpoints(yield* walDatabase))
      yield* writeAndAwaitCheckpoint(second)
    }).pipe(Effect.provide(Layer.fresh(SqliteCheckpointer.layer))))

  it.scopedLive("without SqliteCheckpointer, each database gets a worker of its own", () =>
    Effect.gen(function*() {
      const start = threads()
      yield* backgroundCheckpoints(yield* walDatabase)
      yield* backgroundCheckpoints(yield* walDatabase)
      // each worker's threads appear as it boots
      const deadline = Date.now() + 10_000
      while (threads() < start + 2 && Date.now() < deadline) yield* Effect.sleep("50 millis")
      expect(threads()).toBeGreaterThanOrEqual(start + 2)
    }))
})
