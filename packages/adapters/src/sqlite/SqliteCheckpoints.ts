import type Database from "better-sqlite3"
import { createRequire } from "node:module"
import { Worker } from "node:worker_threads"
import { Duration, Effect, Runtime, type Scope } from "effect"
import { DependencyUnavailable } from "@chatify/domain"

export interface BackgroundCheckpointOptions {
  /** How often the worker copies the WAL back into the database file. */
  readonly interval?: Duration.DurationInput
  /**
   * WAL pages past which the writing connection checkpoints by itself after a commit: what bounds
   * the WAL should the worker stop, and under writes that never pause (the WAL only starts over
   * once a checkpoint has caught up with the writer, which then has little left to copy).
   */
  readonly fallbackPages?: number
}

const DEFAULT_INTERVAL = Duration.millis(500)
const DEFAULT_FALLBACK_PAGES = 16_384
const CLOSE_TIMEOUT = Duration.seconds(5)

// The worker's whole program: its own connection to the file, a PASSIVE checkpoint (which never
// waits for, nor blocks, the writer) on every tick, and a clean close when asked.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads")
const Database = require(workerData.driver)
const db = new Database(workerData.path, { fileMustExist: true })
let failing = false
const timer = setInterval(() => {
  try {
    db.pragma("wal_checkpoint(PASSIVE)")
    failing = false
  } catch (error) {
    if (!failing) parentPort.postMessage({ error: error instanceof Error ? error.message : String(error) })
    failing = true
  }
}, workerData.intervalMillis)
parentPort.on("message", () => {
  clearInterval(timer)
  db.close()
  parentPort.close()
})
`

/**
 * Moves a WAL database's checkpoints off the event loop. A checkpoint copies the WAL into the
 * database file and fsyncs both; run by SQLite after a commit (its default, every 1,000 pages), it
 * stalls the writing thread, and with it every fiber, for as long as the disk takes. Here a worker
 * thread runs them on its own connection, and less often (pages rewritten meanwhile are copied
 * once); the writer keeps a high threshold of its own as a fallback. Durability is unchanged:
 * commits are in the WAL either way (synchronous=NORMAL), a checkpoint only moves them into the
 * main file.
 */
export const backgroundCheckpoints = (
  db: Database.Database,
  options: BackgroundCheckpointOptions = {}
): Effect.Effect<void, DependencyUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const logWarning = Runtime.runFork(runtime)
    yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          db.pragma(`wal_autocheckpoint = ${options.fallbackPages ?? DEFAULT_FALLBACK_PAGES}`)
          const worker = new Worker(WORKER_SOURCE, {
            eval: true,
            workerData: {
              driver: createRequire(import.meta.url).resolve("better-sqlite3"),
              path: db.name,
              intervalMillis: Duration.toMillis(options.interval ?? DEFAULT_INTERVAL)
            }
          })
          const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()))
          // A checkpointer never keeps the process alive; a failing one leaves the fallback to the writer.
          worker.unref()
          worker.on("message", (message: { readonly error: string }) => {
            logWarning(Effect.logWarning(`Background checkpoints of ${db.name} fail: ${message.error}`))
          })
          worker.on("error", (error) => {
            logWarning(Effect.logWarning(`Background checkpoints of ${db.name} stopped: ${error.message}`))
          })
          return { worker, exited }
        },
        catch: (error) =>
          new DependencyUnavailable({
            dependency: "sqlite-checkpoints",
            message: `cannot start background checkpoints for ${db.name}: ${
              error instanceof Error ? error.message : String(error)
            }`
          })
      }),
      ({ exited, worker }) =>
        Effect.sync(() => worker.postMessage("close")).pipe(
          Effect.zipRight(Effect.promise(() => exited)),
          Effect.timeoutTo({
            duration: CLOSE_TIMEOUT,
            onSuccess: () => Effect.void,
            onTimeout: () => Effect.promise(() => worker.terminate())
          }),
          Effect.flatten
        )
    )
  })
