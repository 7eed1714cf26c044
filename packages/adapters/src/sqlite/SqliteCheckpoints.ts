import type Database from "better-sqlite3"
import { createRequire } from "node:module"
import { Worker } from "node:worker_threads"
import { Context, Duration, Effect, Layer, Option, Runtime, type Scope } from "effect"
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

/** From the worker: a database's checkpoints fail, or it was closed as asked. */
type FromWorker =
  | { readonly _tag: "Failing"; readonly id: number; readonly error: string }
  | { readonly _tag: "Closed"; readonly id: number }

// The worker's whole program: a connection of its own to each database it is given, a PASSIVE
// checkpoint (which never waits for, nor blocks, the writer) on each one's ticks, a clean close
// of each when asked.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads")
const Database = require(workerData.driver)
const databases = new Map()
parentPort.on("message", (message) => {
  if (message._tag === "Open") {
    let failing = false
    let db
    const checkpoint = () => {
      try {
        db = db ?? new Database(message.path, { fileMustExist: true })
        db.pragma("wal_checkpoint(PASSIVE)")
        failing = false
      } catch (error) {
        if (!failing) parentPort.postMessage({ _tag: "Failing", id: message.id, error: error instanceof Error ? error.message : String(error) })
        failing = true
      }
    }
    const timer = setInterval(checkpoint, message.intervalMillis)
    databases.set(message.id, () => { clearInterval(timer); db?.close() })
  } else if (message._tag === "Close") {
    databases.get(message.id)?.()
    databases.delete(message.id)
    parentPort.postMessage({ _tag: "Closed", id: message.id })
  }
})
`

/**
 * One worker thread that runs the background checkpoints of every SQLite database of the process
 * (each worker is a V8 isolate of its own, about 12 MB of resident memory). Provide
 * `SqliteCheckpointer.layer` once where several databases are opened; `backgroundCheckpoints`
 * without it starts a worker for its database alone.
 */
export class SqliteCheckpointer extends Context.Tag("@chatify/adapters/SqliteCheckpointer")<SqliteCheckpointer, {
  /** Checkpoints `db` in the background until the scope closes. */
  readonly register: (
    db: Database.Database,
    options?: BackgroundCheckpointOptions
  ) => Effect.Effect<void, DependencyUnavailable, Scope.Scope>
}>() {
  static readonly layer: Layer.Layer<SqliteCheckpointer> = Layer.scoped(
    SqliteCheckpointer,
    Effect.suspend(() => makeCheckpointer)
  )
}

const cannotStart = (db: Database.Database, error: unknown) =>
  new DependencyUnavailable({
    dependency: "sqlite-checkpoints",
    message: `cannot start background checkpoints for ${db.name}: ${
      error instanceof Error ? error.message : String(error)
    }`
  })

/** A checkpointer whose worker starts with the first database and stops with the scope. */
const makeCheckpointer = Effect.gen(function*() {
  const runtime = yield* Effect.runtime<never>()
  const logWarning = Runtime.runFork(runtime)
  let worker: { readonly thread: Worker; readonly exited: Promise<void> } | undefined
  const names = new Map<number, string>()
  const closed = new Map<number, () => void>()
  let nextId = 0

  const start = () => {
    const thread = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { driver: createRequire(import.meta.url).resolve("better-sqlite3") }
    })
    const exited = new Promise<void>((resolve) => thread.once("exit", () => resolve()))
    // A checkpointer never keeps the process alive; a failing one leaves the fallback to the writers.
    thread.unref()
    thread.on("message", (message: FromWorker) => {
      if (message._tag === "Closed") return closed.get(message.id)?.()
      logWarning(Effect.logWarning(`Background checkpoints of ${names.get(message.id)} fail: ${message.error}`))
    })
    thread.on("error", (error) => {
      logWarning(Effect.logWarning(`Background checkpoints stopped: ${error.message}`))
      for (const done of closed.values()) done()
    })
    return { thread, exited }
  }

  yield* Effect.addFinalizer(() =>
    Effect.suspend(() => {
      const running = worker
      if (running === undefined) return Effect.void
      return Effect.promise(() => running.thread.terminate()).pipe(Effect.timeout(CLOSE_TIMEOUT), Effect.ignore)
    })
  )

  const register = (db: Database.Database, options: BackgroundCheckpointOptions = {}) =>
    Effect.acquireRelease(
      Effect.try({
        try: () => {
          db.pragma(`wal_autocheckpoint = ${options.fallbackPages ?? DEFAULT_FALLBACK_PAGES}`)
          worker = worker ?? start()
          const id = nextId++
          names.set(id, db.name)
          worker.thread.postMessage({
            _tag: "Open",
            id,
            path: db.name,
            intervalMillis: Duration.toMillis(options.interval ?? DEFAULT_INTERVAL)
          })
          return { id, thread: worker.thread, exited: worker.exited }
        },
        catch: (error) => cannotStart(db, error)
      }),
      // the worker's connection closes before the writer's (released first, acquired later)
      ({ exited, id, thread }) =>
        Effect.async<void>((resume) => {
          closed.set(id, () => resume(Effect.void))
          thread.postMessage({ _tag: "Close", id })
          void exited.then(() => resume(Effect.void))
        }).pipe(
          Effect.timeout(CLOSE_TIMEOUT),
          Effect.ignore,
          Effect.ensuring(Effect.sync(() => {
            closed.delete(id)
            names.delete(id)
          }))
        )
    ).pipe(Effect.asVoid)

  return SqliteCheckpointer.of({ register })
})

/**
 * Moves a WAL database's checkpoints off the event loop. A checkpoint copies the WAL into the
 * database file and fsyncs both; run by SQLite after a commit (its default, every 1,000 pages), it
 * stalls the writing thread, and with it every fiber, for as long as the disk takes. Here a worker
 * thread runs them on its own connection, and less often (pages rewritten meanwhile are copied
 * once); the writer keeps a high threshold of its own as a fallback. Durability is unchanged:
 * commits are in the WAL either way (synchronous=NORMAL), a checkpoint only moves them into the
 * main file. The worker is the process's shared one when `SqliteCheckpointer` is provided.
 */
export const backgroundCheckpoints = (
  db: Database.Database,
  options: BackgroundCheckpointOptions = {}
): Effect.Effect<void, DependencyUnavailable, Scope.Scope> =>
  Effect.flatMap(Effect.serviceOption(SqliteCheckpointer), (shared) =>
    Option.match(shared, {
      onSome: (checkpointer) => checkpointer.register(db, options),
      onNone: () => Effect.flatMap(makeCheckpointer, (own) => own.register(db, options))
    }))
