import { mkdirSync } from "node:fs"
import { join } from "node:path"
import Database from "better-sqlite3"
import { Clock, Duration, Effect, Either, Layer, Schedule } from "effect"
import { DEFAULT_SEND_CLAIM_LEASE_MILLIS, type SendClaim, SendDeduplicator, type SendKey, traced } from "@chatify/core"
import {
  type ChatEvent,
  decodeChatEventJson,
  DependencyUnavailable,
  encodeChatEventJson,
  EnrichedChatEvent
} from "@chatify/domain"
import { backgroundCheckpoints } from "./SqliteCheckpoints.js"

export interface SqliteSendDeduplicatorOptions {
  readonly dataDirectory: string
  /** Defaults to "idempotency.sqlite": a file of its own, so claims never wait for the history's writes. */
  readonly fileName?: string | undefined
  /** How long a send is remembered (from its first claim, and again from its completion). */
  readonly windowSeconds: number
  /** How long a claim holds (see DEFAULT_SEND_CLAIM_LEASE_MILLIS). */
  readonly leaseMillis?: number | undefined
  /** How often expired rows are deleted; defaults to a minute. */
  readonly purgeInterval?: Duration.DurationInput | undefined
}

const DEPENDENCY = "sqlite-idempotency"
const DEFAULT_FILE_NAME = "idempotency.sqlite"
const BUSY_TIMEOUT_MILLIS = 5_000

const unavailable = (what: string) => (cause: unknown): DependencyUnavailable =>
  new DependencyUnavailable({
    dependency: DEPENDENCY,
    message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}`
  })

/**
 * A row per (sender, clientMessageId): `event_json`, the first attempt's ChatEvent; `owner` and
 * `lease_until_ms`, the claim; `broker_partition` and `broker_offset` once the send completed (then
 * `event_json` is its event). A row past `expires_at_ms` counts as absent and is purged in the background.
 */
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS sent_messages (
    sender_id         TEXT    NOT NULL,
    client_message_id TEXT    NOT NULL,
    event_json        TEXT    NOT NULL,
    owner             TEXT    NOT NULL,
    lease_until_ms    INTEGER NOT NULL,
    broker_partition  INTEGER,
    broker_offset     INTEGER,
    expires_at_ms     INTEGER NOT NULL,
    PRIMARY KEY (sender_id, client_message_id)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS sent_messages_by_expiry ON sent_messages (expires_at_ms);
`

interface Row {
  readonly event_json: string
  readonly lease_until_ms: number
  readonly broker_partition: number | null
  readonly broker_offset: number | null
  readonly expires_at_ms: number
}

/** What a claim found, before its JSON is decoded (outside the transaction). */
type RawClaim =
  | { readonly _tag: "Claimed"; readonly eventJson: string | undefined }
  | { readonly _tag: "Sent"; readonly eventJson: string; readonly partition: number; readonly offset: number }
  | { readonly _tag: "InProgress" }

/** One operation waiting for the turn's transaction, with the time it was asked at and how to answer it. */
type Operation =
  | {
    readonly _tag: "claim"
    readonly key: SendKey
    readonly candidate: ChatEvent
    readonly now: number
    readonly resume: (result: Effect.Effect<RawClaim, DependencyUnavailable>) => void
  }
  | {
    readonly _tag: "complete"
    readonly key: SendKey
    readonly sent: EnrichedChatEvent
    readonly now: number
    readonly resume: (result: Effect.Effect<void, DependencyUnavailable>) => void
  }
  | {
    readonly _tag: "release"
    readonly key: SendKey
    readonly owner: string
    readonly now: number
    readonly resume: (result: Effect.Effect<void, DependencyUnavailable>) => void
  }

const make = (options: SqliteSendDeduplicatorOptions) =>
  Effect.gen(function*() {
    const windowMillis = options.windowSeconds * 1000
    const leaseMillis = options.leaseMillis ?? DEFAULT_SEND_CLAIM_LEASE_MILLIS
    const path = join(options.dataDirectory, options.fileName ?? DEFAULT_FILE_NAME)
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          mkdirSync(options.dataDirectory, { recursive: true })
          const db = new Database(path)
          try {
            db.pragma("journal_mode = WAL")
            db.pragma("synchronous = NORMAL")
            db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MILLIS}`)
            db.exec(SCHEMA)
          } catch (error) {
            db.close()
            throw error
          }
          return db
        },
        catch: unavailable(`cannot open ${path}`)
      }),
      (db) => Effect.try(() => db.close()).pipe(Effect.ignore)
    )
    yield* backgroundCheckpoints(db)

    const encodeEvent = (event: ChatEvent): string =>
      Either.getOrThrowWith(encodeChatEventJson(event), (error) => error)

    const statements = yield* Effect.try({
      try: () => {
        const select = db.prepare<[string, string], Row>(`
          SELECT event_json, lease_until_ms, broker_partition, broker_offset, expires_at_ms
          FROM sent_messages WHERE sender_id = ? AND client_message_id = ?
        `)
        // a new claim, also over an expired row the purge has not reached yet
        const insert = db.prepare<[string, string, string, string, number, number]>(`
          INSERT INTO sent_messages (sender_id, client_message_id, event_json, owner, lease_until_ms, expires_at_ms)
          VALUES (?, ?, ?, ?, ?, ?)
          ON CONFLICT (sender_id, client_message_id) DO UPDATE SET
            event_json = excluded.event_json, owner = excluded.owner, lease_until_ms = excluded.lease_until_ms,
            broker_partition = NULL, broker_offset = NULL, expires_at_ms = excluded.expires_at_ms
        `)
        const takeOver = db.prepare<[string, number, string, string]>(
          "UPDATE sent_messages SET owner = ?, lease_until_ms = ? WHERE sender_id = ? AND client_message_id = ?"
        )
        // the first result stays (unless its row expired)
        const complete = db.prepare<[string, string, string, number, number, number, number]>(`
          INSERT INTO sent_messages
            (sender_id, client_message_id, event_json, owner, lease_until_ms, broker_partition, broker_offset, expires_at_ms)
          VALUES (?, ?, ?, '', 0, ?, ?, ?)
          ON CONFLICT (sender_id, client_message_id) DO UPDATE SET
            event_json = excluded.event_json, owner = '', lease_until_ms = 0,
            broker_partition = excluded.broker_partition, broker_offset = excluded.broker_offset,
            expires_at_ms = excluded.expires_at_ms
          WHERE sent_messages.broker_offset IS NULL OR sent_messages.expires_at_ms <= ?
        `)
        const release = db.prepare<[string, string, string, number]>(`
          UPDATE sent_messages SET lease_until_ms = 0
          WHERE sender_id = ? AND client_message_id = ? AND owner = ? AND broker_offset IS NULL AND expires_at_ms > ?
        `)
        const purge = db.prepare<[number]>("DELETE FROM sent_messages WHERE expires_at_ms <= ?")

        const claim = (
          { candidate, key, now }: { readonly key: SendKey; readonly candidate: ChatEvent; readonly now: number }
        ): RawClaim => {
          const row = select.get(key.senderId, key.clientMessageId)
          if (row === undefined || row.expires_at_ms <= now) {
            insert.run(
              key.senderId,
              key.clientMessageId,
              encodeEvent(candidate),
              candidate.messageId,
              now + leaseMillis,
              now + windowMillis
            )
            return { _tag: "Claimed", eventJson: undefined }
          }
          if (row.broker_partition !== null && row.broker_offset !== null) {
            return {
              _tag: "Sent",
              eventJson: row.event_json,
              partition: row.broker_partition,
              offset: row.broker_offset
            }
          }
          if (row.lease_until_ms > now) return { _tag: "InProgress" }
          takeOver.run(candidate.messageId, now + leaseMillis, key.senderId, key.clientMessageId)
          return { _tag: "Claimed", eventJson: row.event_json }
        }
        // A turn's operations, in the order they were asked: of two claims of one key, the first wins.
        // IMMEDIATE (below): the write lock first, so claims are atomic across processes on this file too.
        const runAll = db.transaction((operations: ReadonlyArray<Operation>): ReadonlyArray<RawClaim | undefined> =>
          operations.map((operation) => {
            switch (operation._tag) {
              case "claim":
                return claim(operation)
              case "complete": {
                const { key, now, sent } = operation
                complete.run(
                  key.senderId,
                  key.clientMessageId,
                  encodeEvent(sent.chatEvent),
                  sent.partition,
                  sent.offset,
                  now + windowMillis,
                  now
                )
                return undefined
              }
              case "release":
                release.run(operation.key.senderId, operation.key.clientMessageId, operation.owner, operation.now)
                return undefined
            }
          })
        )
        return { runAll, purge }
      },
      catch: unavailable("cannot prepare statements")
    })

    // Group commit, as the log journal's: the operations of one event-loop turn (every send that ran
    // in it) go into one transaction, then each is answered. A claim costs a turn of latency, and a
    // send two commits shared with every other send of its turns instead of two of its own.
    let pending: Array<Operation> = []
    let scheduled: ReturnType<typeof setImmediate> | undefined
    const flush = () => {
      scheduled = undefined
      const batch = pending
      pending = []
      if (batch.length === 0) return
      let results: ReadonlyArray<RawClaim | undefined>
      try {
        results = statements.runAll.immediate(batch)
      } catch (error) {
        // rolled back: nothing of the batch is stored
        const failed = Effect.fail(unavailable("cannot store clientMessageIds")(error))
        for (const operation of batch) operation.resume(failed)
        return
      }
      batch.forEach((operation, i) => {
        if (operation._tag === "claim") {
          const raw = results[i]
          operation.resume(raw === undefined ? Effect.fail(unavailable("claim")("no result")) : Effect.succeed(raw))
        } else {
          operation.resume(Effect.void)
        }
      })
    }
    // whatever is pending when the store closes is still stored and answered, before the file closes
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        if (scheduled !== undefined) clearImmediate(scheduled)
        flush()
      })
    )
    const enqueue = (operation: Operation) => {
      pending.push(operation)
      scheduled ??= setImmediate(flush)
    }

    const decodeEvent = (json: string) =>
      Either.mapLeft(decodeChatEventJson(json), unavailable("a stored event does not decode"))

    // expired rows go in the background: a claim never pays for them
    yield* Clock.currentTimeMillis.pipe(
      Effect.flatMap((now) => Effect.try({ try: () => statements.purge.run(now), catch: unavailable("cannot purge") })),
      Effect.catchAll((error) => Effect.logWarning(`Could not purge expired clientMessageIds: ${error.message}`)),
      Effect.repeat(Schedule.spaced(options.purgeInterval ?? Duration.minutes(1))),
      Effect.forkScoped
    )

    return SendDeduplicator.of({
      claim: traced("SqliteSendDeduplicator.claim")((key: SendKey, candidate: ChatEvent) =>
        Clock.currentTimeMillis.pipe(
          Effect.flatMap((now) =>
            Effect.async<RawClaim, DependencyUnavailable>((resume) =>
              enqueue({ _tag: "claim", key, candidate, now, resume })
            )
          ),
          Effect.flatMap((raw): Either.Either<SendClaim, DependencyUnavailable> => {
            switch (raw._tag) {
              case "InProgress":
                return Either.right(raw)
              case "Claimed":
                return raw.eventJson === undefined
                  ? Either.right({ _tag: "Claimed", event: candidate })
                  : Either.map(decodeEvent(raw.eventJson), (event) => ({ _tag: "Claimed", event }))
              case "Sent":
                return Either.map(decodeEvent(raw.eventJson), (chatEvent) => ({
                  _tag: "Sent",
                  sent: new EnrichedChatEvent({ chatEvent, partition: raw.partition, offset: raw.offset })
                }))
            }
          })
        )
      ),
      complete: traced("SqliteSendDeduplicator.complete")((key: SendKey, sent: EnrichedChatEvent) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.async<void, DependencyUnavailable>((resume) => enqueue({ _tag: "complete", key, sent, now, resume })))
      ),
      release: traced("SqliteSendDeduplicator.release")((key: SendKey, owner: string) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.async<void, DependencyUnavailable>((resume) =>
            enqueue({ _tag: "release", key, owner, now, resume })
          ))
      )
    })
  })

/**
 * The embedded default's SendDeduplicator: a SQLite file in the data directory (WAL), so a repeat is
 * recognized across restarts too. Expired rows are purged every `purgeInterval`.
 */
export const SqliteSendDeduplicator = {
  layer: (options: SqliteSendDeduplicatorOptions): Layer.Layer<SendDeduplicator, DependencyUnavailable> =>
    Layer.scoped(SendDeduplicator, make(options))
} as const
