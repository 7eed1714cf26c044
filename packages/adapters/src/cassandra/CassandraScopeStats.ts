import { Effect, Layer, Schema } from "effect"
import { ScopeStatsStore, traced } from "@chatify/core"
import { type ScopeRef, scopeKey, ScopeWindowStats } from "@chatify/domain"
import { AnalyticsTables } from "./AnalyticsSchema.js"
import { CassandraClient, cassandraUnavailable } from "./CassandraClient.js"
import { DAY_MILLIS } from "./CassandraHistory.js"

const WRITE_CONCURRENCY = 16

/** The columns a range read returns, as the driver decodes them (bigint as native bigint). */
const StatsRow = Schema.Struct({
  window_start_utc: Schema.DateFromSelf,
  window_end_utc: Schema.DateFromSelf,
  message_count: Schema.BigIntFromSelf,
  distinct_senders: Schema.BigIntFromSelf,
  character_count: Schema.BigIntFromSelf,
  first_event_at_utc: Schema.DateFromSelf,
  last_event_at_utc: Schema.DateFromSelf
})
const decodeStatsRow = Schema.decodeUnknownSync(StatsRow)

const bucketOf = (millis: number) => new Date(Math.floor(millis / DAY_MILLIS) * DAY_MILLIS)

const make = Effect.gen(function*() {
  const cassandra = yield* CassandraClient
  const table = cassandra.table(AnalyticsTables.scopeStats)
  const cql = {
    upsert: `INSERT INTO ${table} (scope_id, bucket, window_start_utc, window_end_utc, scope_type, message_count,
      distinct_senders, character_count, first_event_at_utc, last_event_at_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    range: `SELECT window_start_utc, window_end_utc, message_count, distinct_senders, character_count,
      first_event_at_utc, last_event_at_utc FROM ${table}
      WHERE scope_id = ? AND bucket = ? AND window_start_utc >= ? AND window_start_utc < ? LIMIT ?`
  } as const

  // An INSERT is an upsert: a window written again overwrites its row.
  const upsert = (windows: ReadonlyArray<ScopeWindowStats>) =>
    cassandra.writeAll(
      "cannot store window stats",
      windows.map((w) => ({
        query: cql.upsert,
        params: [
          scopeKey(w),
          bucketOf(w.windowStartUtc.getTime()),
          w.windowStartUtc,
          w.windowEndUtc,
          w.scopeType,
          BigInt(w.messageCount),
          BigInt(w.distinctSenders),
          BigInt(w.characterCount),
          w.firstEventAtUtc,
          w.lastEventAtUtc
        ]
      })),
      WRITE_CONCURRENCY
    )

  /** Day by day from `from`'s bucket, each clustered oldest first, until `limit` windows. */
  const range = (
    scope: ScopeRef,
    { from, limit, to }: { readonly from: Date; readonly to: Date; readonly limit: number }
  ) =>
    Effect.gen(function*() {
      const windows: Array<ScopeWindowStats> = []
      const wanted = Math.max(0, Math.trunc(limit))
      const key = scopeKey(scope)
      for (
        let bucket = bucketOf(from.getTime()).getTime();
        bucket < to.getTime() && windows.length < wanted;
        bucket += DAY_MILLIS
      ) {
        const n = wanted - windows.length
        const result = yield* cassandra.execute("cannot read window stats", cql.range, [
          key,
          new Date(bucket),
          from,
          to,
          n
        ], {
          fetchSize: n
        })
        const rows = yield* Effect.try({
          try: () =>
            result.rows.map((row) => {
              const r = decodeStatsRow(row)
              return new ScopeWindowStats({
                scopeType: scope.scopeType,
                scopeId: scope.scopeId,
                windowStartUtc: r.window_start_utc,
                windowEndUtc: r.window_end_utc,
                messageCount: Number(r.message_count),
                distinctSenders: Number(r.distinct_senders),
                characterCount: Number(r.character_count),
                firstEventAtUtc: r.first_event_at_utc,
                lastEventAtUtc: r.last_event_at_utc
              })
            }),
          catch: cassandraUnavailable("a stored window cannot be read")
        })
        windows.push(...rows)
      }
      return windows
    })

  return ScopeStatsStore.of({
    upsert: traced("CassandraScopeStats.upsert")(upsert),
    range: traced("CassandraScopeStats.range")(range)
  })
})

/** Window stats in Cassandra/ScyllaDB's scope_stats (migration Analytics/0001_scope_stats). */
export const CassandraScopeStats = {
  layer: Layer.effect(ScopeStatsStore, make)
} as const
