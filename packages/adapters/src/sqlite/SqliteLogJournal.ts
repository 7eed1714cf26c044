import Database from "better-sqlite3"
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import type { LogRecord } from "@chatify/core"
import { DependencyUnavailable } from "@chatify/domain"
import type { LogJournal } from "../memory/MemoryLog.js"
import { backgroundCheckpoints } from "./SqliteCheckpoints.js"

interface RecordRow {
  readonly partition: number
  readonly offset: number
  readonly key: string | null
  readonly value: string
  readonly timestamp_ms: number
}

/**
 * The embedded log's journal in SQLite (WAL, synchronous=NORMAL): a send is acknowledged only
 * after its record is in the journal, so a crash of the process loses no acknowledged message,
 * and offsets keep counting up across restarts (clients resume by offset).
 */
export const makeSqliteLogJournal = (options: { readonly dataDirectory: string; readonly fileName?: string }) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        mkdirSync(options.dataDirectory, { recursive: true })
        const db = new Database(join(options.dataDirectory, options.fileName ?? "log.sqlite"))
        db.pragma("journal_mode = WAL")
        db.pragma("synchronous = NORMAL")
        db.pragma("busy_timeout = 5000")
        db.exec(`
          CREATE TABLE IF NOT EXISTS log_records (
            partition INTEGER NOT NULL, offset INTEGER NOT NULL, key TEXT, value TEXT NOT NULL,
            timestamp_ms INTEGER NOT NULL, PRIMARY KEY (partition, offset)) WITHOUT ROWID;
          CREATE TABLE IF NOT EXISTS log_low_watermarks (
            partition INTEGER PRIMARY KEY, offset INTEGER NOT NULL);
          CREATE TABLE IF NOT EXISTS group_offsets (
            group_id TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
            PRIMARY KEY (group_id, partition)) WITHOUT ROWID;
        `)
        return db
      },
      catch: (error) =>
        new DependencyUnavailable({
          dependency: "embedded-log-journal",
          message: error instanceof Error ? error.message : String(error)
        })
    }),
    (db) => Effect.sync(() => db.close())
  ).pipe(
    Effect.tap(backgroundCheckpoints),
    Effect.map((db): LogJournal => {
      const insert = db.prepare(
        "INSERT INTO log_records (partition, offset, key, value, timestamp_ms) VALUES (?, ?, ?, ?, ?)"
      )
      const commit = db.prepare(
        `INSERT INTO group_offsets (group_id, partition, next_offset) VALUES (?, ?, ?)
       ON CONFLICT (group_id, partition) DO UPDATE SET next_offset = excluded.next_offset`
      )
      const trimRecords = db.prepare("DELETE FROM log_records WHERE partition = ? AND offset < ?")
      const lowWatermark = db.prepare(
        `INSERT INTO log_low_watermarks (partition, offset) VALUES (?, ?)
       ON CONFLICT (partition) DO UPDATE SET offset = max(offset, excluded.offset)`
      )
      const appendAll = db.transaction((records: ReadonlyArray<LogRecord>) => {
        for (const record of records) {
          insert.run(record.partition, record.offset, record.key, record.value, record.timestampMs)
        }
      })
      const commitAll = db.transaction(
        (groupId: string, offsets: ReadonlyArray<{ readonly partition: number; readonly nextOffset: number }>) => {
          for (const { nextOffset, partition } of offsets) commit.run(groupId, partition, nextOffset)
        }
      )
      const trim = db.transaction((partition: number, below: number) => {
        trimRecords.run(partition, below)
        lowWatermark.run(partition, below)
      })
      return {
        load: () => {
          const records = db
            .prepare<[], RecordRow>(
              "SELECT partition, offset, key, value, timestamp_ms FROM log_records ORDER BY partition, offset"
            )
            .all()
            .map((row): LogRecord => ({
              partition: row.partition,
              offset: row.offset,
              key: row.key,
              value: row.value,
              timestampMs: row.timestamp_ms
            }))
          const nextOffsets = new Map<number, number>()
          for (
            const row of db.prepare<[], { partition: number; offset: number }>(
              "SELECT partition, offset FROM log_low_watermarks"
            ).all()
          ) {
            nextOffsets.set(row.partition, row.offset)
          }
          for (const record of records) {
            nextOffsets.set(record.partition, Math.max(nextOffsets.get(record.partition) ?? 0, record.offset + 1))
          }
          const committed = db
            .prepare<[], { group_id: string; partition: number; next_offset: number }>(
              "SELECT group_id, partition, next_offset FROM group_offsets"
            )
            .all()
            .map((row) => ({ groupId: row.group_id, partition: row.partition, offset: row.next_offset }))
          return { records, nextOffsets, committed }
        },
        append: (records) => {
          appendAll(records)
        },
        commit: (groupId, offsets) => {
          commitAll(groupId, offsets)
        },
        trim: (partition, below) => {
          trim(partition, below)
        }
      }
    })
  )
