import Database from "better-sqlite3"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { hostname } from "node:os"
import { join } from "node:path"
import { Data, Effect, Either, Option, type Scope } from "effect"
import { DependencyUnavailable } from "@chatify/domain"

/** Another live process holds the data directory: two embedded logs on one journal would corrupt it. */
export class DataDirectoryLocked extends Data.TaggedError("DataDirectoryLocked")<{
  readonly directory: string
  /** Who holds it, as that process wrote it down ("pid 123 on host-a since …"), when readable. */
  readonly holder: Option.Option<string>
}> {
  override get message(): string {
    return `${this.directory} is in use by another Chatify process` +
      Option.match(this.holder, { onNone: () => "", onSome: (holder) => ` (${holder})` })
  }
}

export const LOCK_FILE_NAME = "chatify.lock"
/** Informational only: who holds the lock. The lock itself is the SQLite lock on LOCK_FILE_NAME. */
const HOLDER_FILE_NAME = "chatify.lock.holder"

const isBusy = (error: unknown): boolean =>
  typeof error === "object" && error !== null && "code" in error &&
  (error.code === "SQLITE_BUSY" || error.code === "SQLITE_LOCKED")

const unavailable = (directory: string) => (error: unknown) =>
  new DependencyUnavailable({
    dependency: "data-directory",
    message: `cannot lock ${directory}: ${error instanceof Error ? error.message : String(error)}`
  })

/**
 * Holds the embedded data directory for the life of the scope, so that a second process on the
 * same directory refuses to start instead of appending to the same journal with its own offsets.
 *
 * The lock is SQLite's own: a dedicated database in `locking_mode=EXCLUSIVE` whose first write
 * takes an exclusive lock the connection never gives back. That lock is an fcntl lock the kernel
 * drops when the process ends, however it ends (SIGKILL, OOM, power off of a container): a crashed
 * holder can never leave a stale lock that blocks the restart. A lock file with O_EXCL and a pid
 * would: after a crash it stays, and its pid check is wrong whenever the pid is reused (in a
 * container the restarted process often gets the very same pid) or the directory is shared by
 * hosts. Within one process SQLite tracks its locks per file, so a second server in the same
 * process is refused too. Caveat: like SQLite itself, this relies on working POSIX locks, which
 * some network file systems do not provide.
 */
export const lockDataDirectory = (
  directory: string
): Effect.Effect<void, DataDirectoryLocked | DependencyUnavailable, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        mkdirSync(directory, { recursive: true })
        // no busy wait: the holder keeps its lock for its whole life, waiting cannot help
        const db = new Database(join(directory, LOCK_FILE_NAME), { timeout: 0 })
        try {
          db.pragma("locking_mode = EXCLUSIVE")
          db.exec(
            "CREATE TABLE IF NOT EXISTS holder (id INTEGER PRIMARY KEY CHECK (id = 1), description TEXT NOT NULL)"
          )
          // the first write takes the exclusive lock, kept until the connection closes
          const description = `pid ${process.pid} on ${hostname()} since ${new Date().toISOString()}`
          db.prepare("INSERT OR REPLACE INTO holder (id, description) VALUES (1, ?)").run(description)
          return { db, description }
        } catch (error) {
          db.close()
          throw error
        }
      },
      catch: (error) =>
        isBusy(error)
          ? new DataDirectoryLocked({
            directory,
            // a locked database cannot be read, so the holder also wrote itself to a plain file
            holder: Option.flatMap(
              Either.getRight(Either.try(() => readFileSync(join(directory, HOLDER_FILE_NAME), "utf8"))),
              (text) => Option.liftPredicate(text.trim(), (line) => line.length > 0)
            )
          })
          : unavailable(directory)(error)
    }).pipe(
      Effect.tap(({ description }) =>
        // best effort: only for the message of a refused second process
        Effect.ignore(Effect.try(() => writeFileSync(join(directory, HOLDER_FILE_NAME), `${description}\n`)))
      )
    ),
    ({ db }) => Effect.sync(() => db.close())
  ).pipe(Effect.asVoid)
