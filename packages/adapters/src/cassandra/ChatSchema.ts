import type { CassandraMigration } from "./CassandraMigrations.js"

/** The chat module's tables. */
export const ChatTables = {
  /** The history, newest first within a (scope, time bucket) partition. */
  messages: "chat_messages",
  /** Per scope, the time buckets that hold messages, newest first: pages skip empty days. */
  scopeBuckets: "chat_scope_buckets",
  /** The same messages in log order, for gap-free resume by broker offset. */
  messagesByOffset: "chat_messages_by_offset",
  /** Per scope and broker partition, the offset buckets that hold messages, ascending. */
  offsetBuckets: "chat_offset_buckets",
  /** Settings the stored layout depends on (the bucket width), fixed at the first start. */
  settings: "chat_history_settings"
} as const

/**
 * Offsets per partition of chat_messages_by_offset. Part of the stored layout, so a constant rather
 * than a setting: it bounds a partition to this many messages, whatever the scope's traffic.
 */
export const OFFSET_BUCKET_WIDTH = 100_000

/**
 * 0001_init_chat: the original's chat_messages (scope_id holds `{scopeType}:{scopeId}`), partitioned
 * by (scope_id, bucket) so no partition grows without bound, plus the tables that let pages and
 * replays walk only the buckets that hold messages. Table options as in the original design.
 */
const initChat: CassandraMigration = {
  moduleName: "Chat",
  migrationId: "0001_init_chat",
  statements: (ks) => [
    `CREATE TABLE IF NOT EXISTS ${ks}.${ChatTables.messages} (
      scope_id         text,
      bucket           timestamp,
      created_at_utc   timestamp,
      message_id       uuid,
      scope_type       int,
      sender_id        text,
      text             text,
      origin_pod_id    text,
      broker_partition int,
      broker_offset    bigint,
      PRIMARY KEY ((scope_id, bucket), created_at_utc, message_id)
    ) WITH CLUSTERING ORDER BY (created_at_utc DESC, message_id DESC)
      AND gc_grace_seconds = 864000
      AND compaction = {'class': 'SizeTieredCompactionStrategy'}
      AND compression = {'class': 'LZ4Compressor'}`,
    `CREATE TABLE IF NOT EXISTS ${ks}.${ChatTables.scopeBuckets} (
      scope_id text,
      bucket   timestamp,
      PRIMARY KEY (scope_id, bucket)
    ) WITH CLUSTERING ORDER BY (bucket DESC)`,
    `CREATE TABLE IF NOT EXISTS ${ks}.${ChatTables.messagesByOffset} (
      scope_id         text,
      broker_partition int,
      offset_bucket    bigint,
      broker_offset    bigint,
      created_at_utc   timestamp,
      message_id       uuid,
      scope_type       int,
      sender_id        text,
      text             text,
      origin_pod_id    text,
      PRIMARY KEY ((scope_id, broker_partition, offset_bucket), broker_offset)
    ) WITH CLUSTERING ORDER BY (broker_offset ASC)
      AND gc_grace_seconds = 864000
      AND compression = {'class': 'LZ4Compressor'}`,
    `CREATE TABLE IF NOT EXISTS ${ks}.${ChatTables.offsetBuckets} (
      scope_id         text,
      broker_partition int,
      offset_bucket    bigint,
      PRIMARY KEY ((scope_id, broker_partition), offset_bucket)
    ) WITH CLUSTERING ORDER BY (offset_bucket ASC)`,
    `CREATE TABLE IF NOT EXISTS ${ks}.${ChatTables.settings} (
      name  text PRIMARY KEY,
      value bigint
    )`
  ]
}

/** The chat module's migrations, in the order they apply. */
export const chatMigrations: ReadonlyArray<CassandraMigration> = [initChat]
