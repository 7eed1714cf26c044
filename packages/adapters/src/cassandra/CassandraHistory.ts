import type { types } from "cassandra-driver"
import { Effect, Layer, Schema } from "effect"
import { ChatHistory, type HistorySlice, traced } from "@chatify/core"
import {
  ChatEvent,
  DependencyUnavailable,
  EnrichedChatEvent,
  type HistoryCursorPosition,
  type ScopeRef,
  scopeKey,
  type StreamPosition
} from "@chatify/domain"
import {
  CASSANDRA_DEPENDENCY,
  CassandraClient,
  type CassandraOptions,
  cassandraUnavailable,
  type CqlStatement,
  type CqlWrite
} from "./CassandraClient.js"
import { Consistency } from "./CassandraConsistency.js"
import type { SchemaMigrationFailed } from "./CassandraMigrations.js"
import { ChatTables, OFFSET_BUCKET_WIDTH } from "./ChatSchema.js"

export interface CassandraHistoryOptions {
  /**
   * The width of a chat_messages time bucket; defaults to one day. It is recorded at the first start
   * and may not change afterwards: buckets of two widths would overlap and misorder pages.
   */
  readonly bucketMillis?: number | undefined
  /** Writes in flight at once while appending a batch; defaults to 32. */
  readonly writeConcurrency?: number | undefined
}

export const DAY_MILLIS = 24 * 60 * 60 * 1000
const DEFAULT_WRITE_CONCURRENCY = 32
// Bucket keys read per round trip: a page usually needs one or two buckets, a sparse scope more.
const BUCKET_KEYS_PER_READ = 16
const BUCKET_MILLIS_SETTING = "bucket_millis"

const COLUMNS = "created_at_utc, message_id, sender_id, text, origin_pod_id, broker_partition, broker_offset"

// The driver's Uuid (its 16 bytes), recognised by shape so that this module does not load the driver
const UuidColumn = Schema.declare(
  (u: unknown): u is types.Uuid =>
    u instanceof Object && "buffer" in u && Buffer.isBuffer(u.buffer) && u.buffer.length === 16,
  { identifier: "Uuid" }
)

/** The columns both message tables return, as the driver decodes them (bigint as native bigint). */
const MessageRow = Schema.Struct({
  created_at_utc: Schema.DateFromSelf,
  message_id: UuidColumn,
  sender_id: Schema.String,
  text: Schema.String,
  origin_pod_id: Schema.String,
  broker_partition: Schema.Int,
  broker_offset: Schema.BigIntFromSelf
})
const decodeMessageRow = Schema.decodeUnknownSync(MessageRow)

const BucketRow = Schema.Struct({ bucket: Schema.DateFromSelf })
const decodeBucketRow = Schema.decodeUnknownSync(BucketRow)
const OffsetBucketRow = Schema.Struct({ offset_bucket: Schema.BigIntFromSelf })
const decodeOffsetBucketRow = Schema.decodeUnknownSync(OffsetBucketRow)

/** The scope is the one asked for: scope_id holds its key, so it is not parsed back out of the row. */
const toEvents = (scope: ScopeRef, result: types.ResultSet) =>
  Effect.try({
    try: (): ReadonlyArray<EnrichedChatEvent> =>
      result.rows.map((row) => {
        const r = decodeMessageRow(row)
        return new EnrichedChatEvent({
          chatEvent: new ChatEvent({
            messageId: r.message_id.toString(),
            scopeType: scope.scopeType,
            scopeId: scope.scopeId,
            senderId: r.sender_id,
            text: r.text,
            createdAtUtc: r.created_at_utc,
            originPodId: r.origin_pod_id
          }),
          partition: r.broker_partition,
          offset: Number(r.broker_offset)
        })
      }),
    catch: cassandraUnavailable("a stored message cannot be read")
  })

const decodeKeys = <K>(result: types.ResultSet, decode: (row: types.Row) => K) =>
  Effect.try({
    try: () => result.rows.map(decode),
    catch: cassandraUnavailable("a stored bucket key cannot be read")
  })

/** The driver's paging state of a result, when more rows may follow. */
const pageStateOf = (result: types.ResultSet): string | undefined => {
  const state: unknown = result.pageState
  return typeof state === "string" && state.length > 0 ? state : undefined
}

interface KeyPage<K> {
  readonly keys: ReadonlyArray<K>
  readonly pageState: string | undefined
}

/**
 * Reads `wanted` events bucket by bucket, in the order the bucket index lists them. The index only
 * lists buckets that received a message, so a sparse scope costs one read per non-empty bucket,
 * never one per empty day.
 */
const readAcrossBuckets = <K>(
  readKeys: (pageState: string | undefined) => Effect.Effect<KeyPage<K>, DependencyUnavailable>,
  readBucket: (key: K, wanted: number) => Effect.Effect<ReadonlyArray<EnrichedChatEvent>, DependencyUnavailable>,
  wanted: number
) =>
  Effect.gen(function*() {
    const items: Array<EnrichedChatEvent> = []
    let pageState: string | undefined = undefined
    do {
      const page: KeyPage<K> = yield* readKeys(pageState)
      for (const key of page.keys) {
        if (items.length >= wanted) return items
        items.push(...(yield* readBucket(key, wanted - items.length)))
      }
      pageState = page.pageState
    } while (pageState !== undefined && items.length < wanted)
    return items
  })

const make = (options: CassandraHistoryOptions) =>
  Effect.gen(function*() {
    const cassandra = yield* CassandraClient
    const bucketMillis = options.bucketMillis ?? DAY_MILLIS
    if (!Number.isSafeInteger(bucketMillis) || bucketMillis <= 0) {
      return yield* new DependencyUnavailable({
        dependency: CASSANDRA_DEPENDENCY,
        message: `bucketMillis must be a positive integer, got ${bucketMillis}`
      })
    }
    const concurrency = Math.max(1, Math.trunc(options.writeConcurrency ?? DEFAULT_WRITE_CONCURRENCY))
    const t = {
      messages: cassandra.table(ChatTables.messages),
      scopeBuckets: cassandra.table(ChatTables.scopeBuckets),
      byOffset: cassandra.table(ChatTables.messagesByOffset),
      offsetBuckets: cassandra.table(ChatTables.offsetBuckets),
      settings: cassandra.table(ChatTables.settings)
    }
    yield* checkBucketWidth(t.settings, bucketMillis)

    const cql = {
      insertMessage: `INSERT INTO ${t.messages} (scope_id, bucket, created_at_utc, message_id, scope_type, sender_id,
        text, origin_pod_id, broker_partition, broker_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      insertScopeBucket: `INSERT INTO ${t.scopeBuckets} (scope_id, bucket) VALUES (?, ?)`,
      insertByOffset: `INSERT INTO ${t.byOffset} (scope_id, broker_partition, offset_bucket, broker_offset,
        created_at_utc, message_id, scope_type, sender_id, text, origin_pod_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      insertOffsetBucket: `INSERT INTO ${t.offsetBuckets} (scope_id, broker_partition, offset_bucket) VALUES (?, ?, ?)`,
      // Both bucket indexes are clustered in the order they are walked, so no ORDER BY is needed.
      scopeBuckets: `SELECT bucket FROM ${t.scopeBuckets} WHERE scope_id = ?`,
      scopeBucketsUpTo: `SELECT bucket FROM ${t.scopeBuckets} WHERE scope_id = ? AND bucket <= ?`,
      newest: `SELECT ${COLUMNS} FROM ${t.messages} WHERE scope_id = ? AND bucket = ? LIMIT ?`,
      olderThan: `SELECT ${COLUMNS} FROM ${t.messages}
        WHERE scope_id = ? AND bucket = ? AND (created_at_utc, message_id) < (?, ?) LIMIT ?`,
      offsetBucketsFrom: `SELECT offset_bucket FROM ${t.offsetBuckets}
        WHERE scope_id = ? AND broker_partition = ? AND offset_bucket >= ?`,
      afterOffset: `SELECT ${COLUMNS} FROM ${t.byOffset}
        WHERE scope_id = ? AND broker_partition = ? AND offset_bucket = ? AND broker_offset > ? LIMIT ?`
    } as const

    const bucketOf = (createdAtMs: number) => new Date(Math.floor(createdAtMs / bucketMillis) * bucketMillis)
    const offsetBucketOf = (offset: number) => BigInt(Math.floor(offset / OFFSET_BUCKET_WIDTH))

    /*
     * Two phases of independent idempotent writes rather than a logged batch: the index rows first,
     * then both copies of each message. A failure part-way leaves at worst an index entry for a bucket
     * still empty (a page reads it and moves on), never a message no index leads to; the history
     * writer commits its offsets only after append succeeded, so it retries the whole batch and the
     * upserts converge on the same rows. A logged batch would add the batchlog's extra writes for an
     * all-or-nothing that the retry already gives, and multi-partition batches trip Cassandra's
     * batch size limits on large batches.
     *
     * Rows of one partition (a scope's day bucket; a scope's offset bucket on its partition) go as
     * one unlogged batch of a few rows: one request, one mutation on the replica. Index entries this
     * process has written already are not written again (they never change); the memory of them is
     * bounded and simply forgotten when full.
     */
    const indexed = new Set<string>()
    const MAX_INDEXED = 100_000
    const remember = (entries: Iterable<string>) => {
      if (indexed.size > MAX_INDEXED) indexed.clear()
      for (const entry of entries) indexed.add(entry)
    }
    // an unlogged batch stays well under Cassandra's batch_size_warn_threshold (5 KiB by default)
    const MAX_BATCH_ROWS = 16
    const MAX_BATCH_CHARS = 4_000
    const partitionBatches = (rows: Map<string, Array<CqlStatement & { readonly size: number }>>) => {
      const writes: Array<CqlWrite> = []
      for (const statements of rows.values()) {
        let batch: Array<CqlStatement> = []
        let size = 0
        for (const statement of statements) {
          if (batch.length > 0 && (batch.length >= MAX_BATCH_ROWS || size + statement.size > MAX_BATCH_CHARS)) {
            writes.push(batch)
            batch = []
            size = 0
          }
          batch.push({ query: statement.query, params: statement.params })
          size += statement.size
        }
        if (batch.length > 0) writes.push(batch)
      }
      return writes
    }
    const push = <K, V>(map: Map<K, Array<V>>, key: K, value: V) => {
      const list = map.get(key)
      if (list === undefined) map.set(key, [value])
      else list.push(value)
    }

    const append = (events: ReadonlyArray<EnrichedChatEvent>) =>
      Effect.suspend(() => {
        // A redelivery inside one batch is written once: the first occurrence wins, as in SQLite.
        const seen = new Set<string>()
        const indexWrites = new Map<string, CqlStatement>()
        const messages = new Map<string, Array<CqlStatement & { readonly size: number }>>()
        const byOffset = new Map<string, Array<CqlStatement & { readonly size: number }>>()
        for (const { chatEvent: e, offset, partition } of events) {
          if (seen.has(e.messageId)) continue
          seen.add(e.messageId)
          const key = scopeKey(e)
          const createdAt = e.createdAtUtc
          const bucket = bucketOf(createdAt.getTime())
          const offsetBucket = offsetBucketOf(offset)
          const scopeBucket = `s\n${key}\n${bucket.getTime()}`
          if (!indexed.has(scopeBucket)) {
            indexWrites.set(scopeBucket, { query: cql.insertScopeBucket, params: [key, bucket] })
          }
          const offsetBucketKey = `o\n${key}\n${partition}\n${offsetBucket}`
          if (!indexed.has(offsetBucketKey)) {
            indexWrites.set(offsetBucketKey, { query: cql.insertOffsetBucket, params: [key, partition, offsetBucket] })
          }
          const size = e.text.length + e.senderId.length + e.originPodId.length + 2 * key.length + 100
          push(messages, scopeBucket, {
            query: cql.insertMessage,
            params: [
              key,
              bucket,
              createdAt,
              e.messageId,
              e.scopeType,
              e.senderId,
              e.text,
              e.originPodId,
              partition,
              BigInt(offset)
            ],
            size
          })
          push(byOffset, offsetBucketKey, {
            query: cql.insertByOffset,
            params: [
              key,
              partition,
              offsetBucket,
              BigInt(offset),
              createdAt,
              e.messageId,
              e.scopeType,
              e.senderId,
              e.text,
              e.originPodId
            ],
            size
          })
        }
        if (seen.size === 0) return Effect.void
        const writeMessages = cassandra.writeAll(
          "cannot append messages",
          [...partitionBatches(messages), ...partitionBatches(byOffset)],
          concurrency
        )
        if (indexWrites.size === 0) return writeMessages
        return cassandra.writeAll("cannot index buckets", [...indexWrites.values()], concurrency).pipe(
          Effect.tap(() => remember(indexWrites.keys())),
          Effect.zipRight(writeMessages)
        )
      })

    const page = (
      scope: ScopeRef,
      { before, limit }: { readonly limit: number; readonly before: HistoryCursorPosition | undefined }
    ) =>
      Effect.gen(function*() {
        const wanted = Math.max(0, Math.trunc(limit))
        if (wanted === 0) return { items: [], next: undefined } satisfies HistorySlice
        const key = scopeKey(scope)
        const readKeys = (pageState: string | undefined) =>
          cassandra.execute(
            "cannot read the buckets of a scope",
            before === undefined ? cql.scopeBuckets : cql.scopeBucketsUpTo,
            before === undefined ? [key] : [key, bucketOf(before.createdAtMs)],
            { fetchSize: BUCKET_KEYS_PER_READ, ...(pageState === undefined ? {} : { pageState }) }
          ).pipe(
            Effect.flatMap((result) =>
              Effect.map(decodeKeys(result, (row) => decodeBucketRow(row).bucket), (keys) => ({
                keys,
                pageState: pageStateOf(result)
              }))
            )
          )
        // Newest first is the clustering order; the cursor only excludes rows in its own bucket, every
        // older bucket is wholly below it.
        const readBucket = (bucket: Date, n: number) =>
          cassandra.execute(
            "cannot read a page",
            before === undefined ? cql.newest : cql.olderThan,
            before === undefined
              ? [key, bucket, n]
              : [key, bucket, new Date(before.createdAtMs), before.messageId, n],
            { fetchSize: n }
          ).pipe(Effect.flatMap((result) => toEvents(scope, result)))

        // One item more than asked tells whether another page exists, so the last page has no cursor.
        const rows = yield* readAcrossBuckets(readKeys, readBucket, wanted + 1)
        const items = rows.slice(0, wanted)
        const last = items.at(-1)
        const next = rows.length > wanted && last !== undefined
          ? { createdAtMs: last.chatEvent.createdAtUtc.getTime(), messageId: last.chatEvent.messageId }
          : undefined
        return { items, next } satisfies HistorySlice
      })

    const after = (scope: ScopeRef, position: StreamPosition, limit: number) =>
      Effect.gen(function*() {
        const wanted = Math.max(0, Math.trunc(limit))
        if (wanted === 0) return []
        const key = scopeKey(scope)
        const readKeys = (pageState: string | undefined) =>
          cassandra.execute(
            "cannot read the offset buckets of a scope",
            cql.offsetBucketsFrom,
            [key, position.partition, offsetBucketOf(position.offset)],
            { fetchSize: BUCKET_KEYS_PER_READ, ...(pageState === undefined ? {} : { pageState }) }
          ).pipe(
            Effect.flatMap((result) =>
              Effect.map(decodeKeys(result, (row) => decodeOffsetBucketRow(row).offset_bucket), (keys) => ({
                keys,
                pageState: pageStateOf(result)
              }))
            )
          )
        const readBucket = (offsetBucket: bigint, n: number) =>
          cassandra.execute(
            "cannot read after a position",
            cql.afterOffset,
            [key, position.partition, offsetBucket, BigInt(position.offset), n],
            { fetchSize: n }
          ).pipe(Effect.flatMap((result) => toEvents(scope, result)))
        return yield* readAcrossBuckets(readKeys, readBucket, wanted)
      })

    return ChatHistory.of({
      append: traced("CassandraHistory.append")(append),
      page: traced("CassandraHistory.page")(page),
      after: traced("CassandraHistory.after")(after),
      ping: cassandra.ping
    })
  })

/**
 * Records the bucket width at the first start (a lightweight transaction, so two pods starting
 * together agree) and refuses another one later: the stored buckets were cut with it.
 */
const checkBucketWidth = (settingsTable: string, bucketMillis: number) =>
  Effect.gen(function*() {
    const cassandra = yield* CassandraClient
    const local = cassandra.consistency === Consistency.localQuorum ||
      cassandra.consistency === Consistency.localOne
    const result = yield* cassandra.execute(
      "cannot record the history bucket width",
      `INSERT INTO ${settingsTable} (name, value) VALUES (?, ?) IF NOT EXISTS`,
      [BUCKET_MILLIS_SETTING, BigInt(bucketMillis)],
      { serialConsistency: local ? Consistency.localSerial : Consistency.serial }
    )
    if (result.wasApplied()) return
    // first() is null without rows, whatever its type says
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
    const stored: unknown = result.first()?.get("value")
    if (stored !== BigInt(bucketMillis)) {
      return yield* new DependencyUnavailable({
        dependency: CASSANDRA_DEPENDENCY,
        message: `the history in ${cassandra.keyspace} is bucketed by ${String(stored)} ms, not ${bucketMillis} ms: ` +
          "the bucket width cannot change once messages are stored"
      })
    }
  })

/** The production history store: Cassandra or ScyllaDB, shaped as the original's chat_messages. */
export const CassandraHistory = {
  /** The history on an existing CassandraClient (shared with other adapters of the process). */
  layer: (options: CassandraHistoryOptions = {}): Layer.Layer<ChatHistory, DependencyUnavailable, CassandraClient> =>
    Layer.effect(ChatHistory, make(options)),
  /** The history with its own client: connects, brings the schema up to date, then serves. */
  layerWithClient: (
    options: CassandraOptions & CassandraHistoryOptions
  ): Layer.Layer<ChatHistory, DependencyUnavailable | SchemaMigrationFailed> =>
    Layer.provide(Layer.effect(ChatHistory, make(options)), CassandraClient.layer(options))
} as const
