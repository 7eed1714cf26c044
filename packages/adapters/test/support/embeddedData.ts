import { join } from "node:path"
import Database from "better-sqlite3"

/**
 * What an embedded server left in its data directory, read as an operator would with `sqlite3
 * -readonly`: both files opened read-only, once no process holds them. For tests that check what a
 * process stored before it exited (not what a restart makes of it).
 */
export interface EmbeddedData {
  /** Per partition the log has written to, the offset after its last record: the log's end. */
  readonly logEndOffsets: ReadonlyMap<number, number>
  /** The messageId of every record the log journal still holds (it trims what every group committed). */
  readonly logMessageIds: ReadonlyArray<string>
  /** Per partition, the next offset `groupId` committed. */
  readonly committedOffsets: (groupId: string) => ReadonlyMap<number, number>
  /** The messageId of every message in the history store. */
  readonly historyMessageIds: ReadonlyArray<string>
}

const readOnly = <A>(path: string, read: (db: Database.Database) => A): A => {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    return read(db)
  } finally {
    db.close()
  }
}

const messageIdOf = (value: string): string => {
  const parsed: unknown = JSON.parse(value)
  return typeof parsed === "object" && parsed !== null && "messageId" in parsed && typeof parsed.messageId === "string"
    ? parsed.messageId
    : `<no messageId in ${value.slice(0, 80)}>`
}

export const readEmbeddedData = (dataDirectory: string): EmbeddedData => {
  const log = readOnly(join(dataDirectory, "log.sqlite"), (db) => ({
    // a partition trimmed to nothing keeps its end as its low watermark
    ends: db.prepare<[], { partition: number; end: number }>(
      `SELECT partition, max(end) AS end FROM (
         SELECT partition, max(offset) + 1 AS end FROM log_records GROUP BY partition
         UNION ALL SELECT partition, offset AS end FROM log_low_watermarks
       ) GROUP BY partition`
    ).all(),
    values: db.prepare<[], string>("SELECT value FROM log_records ORDER BY partition, offset").pluck().all(),
    committed: db.prepare<[], { group_id: string; partition: number; next_offset: number }>(
      "SELECT group_id, partition, next_offset FROM group_offsets"
    ).all()
  }))
  const historyMessageIds = readOnly(
    join(dataDirectory, "chatify.sqlite"),
    (db) => db.prepare<[], string>("SELECT message_id FROM chat_messages").pluck().all()
  )
  return {
    logEndOffsets: new Map(log.ends.map((row) => [row.partition, row.end])),
    logMessageIds: log.values.map(messageIdOf),
    committedOffsets: (groupId) =>
      new Map(log.committed.filter((row) => row.group_id === groupId).map((row) => [row.partition, row.next_offset])),
    historyMessageIds
  }
}
