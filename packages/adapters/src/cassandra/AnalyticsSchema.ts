import type { CassandraMigration } from "./CassandraMigrations.js"

/** The analytics module's tables. */
export const AnalyticsTables = {
  /** Window statistics from the analytics job, per (scope, UTC day of the window's start), oldest first. */
  scopeStats: "scope_stats"
} as const

/**
 * 0001_scope_stats: one row per (scope, window start), so a window written again replaces its row.
 * scope_id holds `{scopeType}:{scopeId}` as in chat_messages; a day bucket bounds each partition.
 */
const initScopeStats: CassandraMigration = {
  moduleName: "Analytics",
  migrationId: "0001_scope_stats",
  statements: (ks) => [
    `CREATE TABLE IF NOT EXISTS ${ks}.${AnalyticsTables.scopeStats} (
      scope_id           text,
      bucket             timestamp,
      window_start_utc   timestamp,
      window_end_utc     timestamp,
      scope_type         int,
      message_count      bigint,
      distinct_senders   bigint,
      character_count    bigint,
      first_event_at_utc timestamp,
      last_event_at_utc  timestamp,
      PRIMARY KEY ((scope_id, bucket), window_start_utc)
    ) WITH CLUSTERING ORDER BY (window_start_utc ASC)
      AND compression = {'class': 'LZ4Compressor'}`
  ]
}

/** The analytics module's migrations, in the order they apply (after the chat module's). */
export const analyticsMigrations: ReadonlyArray<CassandraMigration> = [initScopeStats]
