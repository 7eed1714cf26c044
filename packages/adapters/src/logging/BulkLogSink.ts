/**
 * Ships log lines (JSON documents, already formatted) to Elasticsearch or OpenSearch through the
 * `_bulk` API, into one index per UTC day: `{prefix}-{yyyy.MM.dd}`.
 *
 * Logging must stay as cheap as writing to the console, whatever the cluster does: `offer` only
 * appends to a bounded in-memory buffer (dropping the oldest line when it is full, counted in
 * `chatify_log_sink_dropped_lines_total`), and one background fiber ships batches, on size or on
 * interval, retrying with backoff. Each line gets its id before its first attempt and is sent with
 * `create`, so a retry after a lost answer stores nothing twice (the cluster answers 409).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import {
  Chunk,
  Context,
  Duration,
  Effect,
  Fiber,
  Layer,
  Metric,
  MutableQueue,
  Option,
  Redacted,
  Schedule,
  Schema,
  type Scope
} from "effect"

export interface LogSinkSettings {
  /** The cluster's base URL, e.g. http://127.0.0.1:9200 */
  readonly uri: string
  readonly username: Option.Option<string>
  readonly password: Option.Option<Redacted.Redacted<string>>
  /** Lines go to `{indexPrefix}-{yyyy.MM.dd}` (UTC day of the line's timestamp). */
  readonly indexPrefix: string
  /** Lines per `_bulk` request; reaching it also starts a flush before the interval is up. */
  readonly batchSize: number
  /** How long a line waits at most before it is shipped. */
  readonly flushInterval: Duration.Duration
  /** Lines held while the cluster is slow or away; past it the oldest are dropped (and counted). */
  readonly bufferSize: number
  /** How long one batch is retried before it is dropped (and counted): the cluster is away too long. */
  readonly retryFor: Duration.Duration
  /** One `_bulk` request's timeout. */
  readonly requestTimeout: Duration.Duration
  /** On shutdown, how long the last lines may take to ship. */
  readonly shutdownTimeout: Duration.Duration
}

export const defaultLogSinkTuning = {
  batchSize: 500,
  flushInterval: Duration.seconds(1),
  bufferSize: 20_000,
  retryFor: Duration.minutes(2),
  requestTimeout: Duration.seconds(10),
  shutdownTimeout: Duration.seconds(5)
} as const

/** Lines the sink gave up on: the buffer overflowed, a batch was retried too long, or the cluster refused a line. */
export const LogSinkDroppedLines = Metric.counter("chatify_log_sink_dropped_lines_total", {
  description: "Log lines the Elasticsearch/OpenSearch sink dropped (buffer full, cluster away too long, or refused)",
  incremental: true
})

export interface LogSinkService {
  /** Buffers one line (a JSON object as text) written at `timestampMs`; never blocks, never fails. */
  readonly offer: (timestampMs: number, document: string) => void
  /** Lines dropped by this sink so far (the metric counts those of every sink of the process). */
  readonly dropped: () => number
}

export class LogSink extends Context.Tag("@chatify/adapters/LogSink")<LogSink, LogSinkService>() {}

export class BulkRequestFailed extends Schema.TaggedError<BulkRequestFailed>()("BulkRequestFailed", {
  message: Schema.String,
  /** Lines of the batch still to be stored. */
  pending: Schema.Number
}) {}

const pad2 = (n: number) => (n < 10 ? `0${n}` : `${n}`)

/** `{prefix}-{yyyy.MM.dd}` of the UTC day of `timestampMs`. */
export const indexName = (prefix: string, timestampMs: number): string => {
  const date = new Date(timestampMs)
  return `${prefix}-${date.getUTCFullYear()}.${pad2(date.getUTCMonth() + 1)}.${pad2(date.getUTCDate())}`
}

export interface PendingLine {
  readonly id: string
  readonly index: string
  readonly document: string
}

/** The `_bulk` body: a `create` action with the line's id and index, then the line, each on its own line. */
export const bulkBody = (lines: ReadonlyArray<PendingLine>): string => {
  let body = ""
  for (const line of lines) {
    body += `{"create":{"_index":${JSON.stringify(line.index)},"_id":${JSON.stringify(line.id)}}}\n${line.document}\n`
  }
  return body
}

const BulkItemResult = Schema.Struct({ status: Schema.Number })

/** The part of a `_bulk` answer the sink reads: one result per line, in the order sent. */
export const BulkResponse = Schema.Struct({
  errors: Schema.Boolean,
  items: Schema.Array(Schema.Record({ key: Schema.String, value: BulkItemResult }))
})
const decodeBulkResponse = Schema.decodeUnknown(BulkResponse)

export interface BulkOutcome {
  /** Lines to send again: the cluster was busy (429) or failed (5xx) on them. */
  readonly retry: ReadonlyArray<PendingLine>
  /** Lines the cluster refused for good (a mapping conflict, a document it cannot parse). */
  readonly refused: number
}

/**
 * Sorts each line of a batch by its result: stored (2xx, or 409 = stored by an earlier attempt),
 * to retry (429, 5xx, or no result at all), or refused.
 */
export const classifyBulkResults = (
  lines: ReadonlyArray<PendingLine>,
  response: typeof BulkResponse.Type
): BulkOutcome => {
  const retry: Array<PendingLine> = []
  let refused = 0
  lines.forEach((line, i) => {
    const item = response.items[i]
    const status = item === undefined ? undefined : Object.values(item)[0]?.status
    if (status === undefined || status === 429 || status >= 500) retry.push(line)
    else if (status >= 300 && status !== 409) refused += 1
  })
  return { retry, refused }
}

/** Keyword for ids and names (searched exactly), date for the timestamp, text for the message. */
export const indexTemplate = (indexPrefix: string) => ({
  index_patterns: [`${indexPrefix}-*`],
  priority: 100,
  template: {
    mappings: {
      dynamic_templates: [
        // every other string field (annotations) is an exact value too, not analyzed text
        { strings_as_keywords: { match_mapping_type: "string", mapping: { type: "keyword", ignore_above: 1024 } } }
      ],
      properties: {
        "@timestamp": { type: "date" },
        level: { type: "keyword" },
        message: { type: "text" },
        correlationId: { type: "keyword" },
        traceId: { type: "keyword" },
        spanId: { type: "keyword" },
        service: { type: "keyword" },
        pod: { type: "keyword" },
        environment: { type: "keyword" },
        pid: { type: "integer" },
        fiberId: { type: "keyword" },
        userId: { type: "keyword" },
        connectionId: { type: "keyword" },
        messageId: { type: "keyword" },
        scopeId: { type: "keyword" },
        error: {
          properties: { tag: { type: "keyword" }, message: { type: "text" }, cause: { type: "text" } }
        }
      }
    }
  }
})

const newLineId = () => crypto.randomUUID()

/**
 * The sink: a bounded buffer and the fiber that ships it, stopped with the scope after one last
 * flush (bounded by `shutdownTimeout`).
 */
export const makeLogSink = (
  settings: LogSinkSettings
): Effect.Effect<LogSinkService, never, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const base = settings.uri.replace(/\/+$/u, "")
    const authorized = (request: HttpClientRequest.HttpClientRequest) =>
      Option.match(settings.username, {
        onNone: () => request,
        onSome: (username) =>
          HttpClientRequest.basicAuth(
            request,
            username,
            Option.match(settings.password, { onNone: () => "", onSome: Redacted.value })
          )
      })
    const client = (yield* HttpClient.HttpClient).pipe(HttpClient.filterStatusOk)

    const buffer = MutableQueue.bounded<{ readonly timestampMs: number; readonly document: string }>(
      settings.bufferSize
    )
    const wake = yield* Effect.makeLatch(false)
    let closed = false
    let droppedCount = 0
    /** The batch being shipped, kept for the flush on shutdown if the shipper is interrupted mid-request. */
    let inFlight: ReadonlyArray<PendingLine> = []

    const drop = (lines: number) =>
      Effect.suspend(() => {
        droppedCount += lines
        return Metric.incrementBy(LogSinkDroppedLines, lines)
      })

    const post = (path: string, method: "PUT" | "POST", body: string, contentType: string) =>
      client.execute(
        authorized(
          (method === "PUT" ? HttpClientRequest.put : HttpClientRequest.post)(`${base}${path}`).pipe(
            HttpClientRequest.bodyText(body, contentType)
          )
        )
      ).pipe(
        Effect.flatMap((response) => response.json),
        Effect.scoped,
        Effect.timeoutFail({
          duration: settings.requestTimeout,
          onTimeout: () =>
            new BulkRequestFailed({
              message: `no answer within ${Duration.format(settings.requestTimeout)}`,
              pending: 0
            })
        })
      )

    /** One `_bulk` request; fails with what is left to send. */
    const sendOnce = (lines: ReadonlyArray<PendingLine>): Effect.Effect<BulkOutcome, BulkRequestFailed> =>
      post("/_bulk", "POST", bulkBody(lines), "application/x-ndjson").pipe(
        Effect.flatMap(decodeBulkResponse),
        Effect.map((response) => response.errors ? classifyBulkResults(lines, response) : { retry: [], refused: 0 }),
        Effect.mapError((error) => new BulkRequestFailed({ message: error.message, pending: lines.length }))
      )

    const retrySchedule = Schedule.exponential("100 millis").pipe(
      Schedule.either(Schedule.spaced("5 seconds")),
      Schedule.jittered
    )

    let outage = false
    /** Ships `lines` until stored, refused, or retried for `within`; counts what it gives up on. */
    const ship = (lines: ReadonlyArray<PendingLine>, within: Duration.Duration) =>
      Effect.gen(function*() {
        inFlight = lines
        const attempt = Effect.suspend(() => sendOnce(inFlight)).pipe(
          Effect.flatMap(({ refused, retry }) => {
            inFlight = retry
            return Effect.zipRight(
              refused > 0 ? drop(refused) : Effect.void,
              retry.length === 0
                ? Effect.void
                : Effect.fail(
                  new BulkRequestFailed({ message: `${retry.length} lines to retry`, pending: retry.length })
                )
            )
          }),
          Effect.tapError((error) =>
            outage ? Effect.void : Effect.zipRight(
              Effect.sync(() => {
                outage = true
              }),
              Effect.logWarning(`Log sink: ${base} is not storing log lines (${error.message}); buffering and retrying`)
            )
          )
        )
        yield* attempt.pipe(
          Effect.retry(Schedule.upTo(retrySchedule, within)),
          Effect.zipRight(
            Effect.suspend(() => {
              if (!outage) return Effect.void
              outage = false
              return Effect.logInfo(`Log sink: ${base} stores log lines again (${droppedCount} dropped so far)`)
            })
          ),
          Effect.catchAll((error) =>
            Effect.zipRight(
              drop(inFlight.length),
              Effect.logWarning(
                Duration.isZero(within)
                  ? `Log sink: could not ship ${inFlight.length} log lines at shutdown (${error.message})`
                  : `Log sink: dropped ${inFlight.length} log lines after retrying for ${
                    Duration.format(within)
                  } (${error.message})`
              )
            )
          )
        )
        inFlight = []
      })

    // in flight as soon as it leaves the buffer: an interruption before `ship` starts loses nothing
    const takeBatch = Effect.sync((): ReadonlyArray<PendingLine> => {
      inFlight = Chunk.toReadonlyArray(MutableQueue.pollUpTo(buffer, settings.batchSize)).map((line) => ({
        id: newLineId(),
        index: indexName(settings.indexPrefix, line.timestampMs),
        document: line.document
      }))
      return inFlight
    })

    /** Ships everything buffered now, batch after batch. */
    const drain = (within: Duration.Duration) =>
      Effect.gen(function*() {
        while (true) {
          const batch = yield* takeBatch
          if (batch.length === 0) return
          yield* ship(batch, within)
          if (batch.length < settings.batchSize) return
        }
      })

    // the template first: an index created before it would map ids as analyzed text
    const installTemplate = post(
      `/_index_template/${encodeURIComponent(settings.indexPrefix)}`,
      "PUT",
      JSON.stringify(indexTemplate(settings.indexPrefix)),
      "application/json"
    ).pipe(
      Effect.tapError((error) =>
        outage ? Effect.void : Effect.zipRight(
          Effect.sync(() => {
            outage = true
          }),
          Effect.logWarning(
            `Log sink: cannot install the index template at ${base} yet (${error.message}); buffering and retrying`
          )
        )
      ),
      Effect.retry(retrySchedule)
    )

    const shipper = yield* Effect.gen(function*() {
      yield* installTemplate
      while (true) {
        // wakes on a full batch or when the interval is up, whichever is first
        yield* wake.await.pipe(Effect.timeout(settings.flushInterval), Effect.ignore)
        yield* wake.close
        yield* drain(settings.retryFor)
      }
    }).pipe(Effect.interruptible, Effect.forkScoped)

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closed = true
        yield* Fiber.interrupt(shipper)
        const unsent = inFlight
        const lastLines = Effect.zipRight(
          unsent.length > 0 ? ship(unsent, Duration.zero) : Effect.void,
          drain(Duration.zero)
        )
        // finalizers run uninterruptibly: without `interruptible` the timeout could not cut a hanging request short
        yield* lastLines.pipe(
          Effect.interruptible,
          Effect.timeout(settings.shutdownTimeout),
          Effect.catchAll(() =>
            Effect.suspend(() => {
              const left = inFlight.length + MutableQueue.length(buffer)
              MutableQueue.pollUpTo(buffer, Number.POSITIVE_INFINITY)
              return Effect.zipRight(
                drop(left),
                Effect.logWarning(
                  `Log sink: ${left} log lines not shipped within ${
                    Duration.format(settings.shutdownTimeout)
                  } of shutdown`
                )
              )
            })
          )
        )
      })
    )

    return {
      offer: (timestampMs, document) => {
        if (closed) return
        if (MutableQueue.isFull(buffer)) {
          MutableQueue.poll(buffer, undefined)
          droppedCount += 1
          LogSinkDroppedLines.unsafeUpdate(1, [])
        }
        MutableQueue.offer(buffer, { timestampMs, document })
        if (MutableQueue.length(buffer) >= settings.batchSize) wake.unsafeOpen()
      },
      dropped: () => droppedCount
    }
  })

/** The sink as a service, stopped (after a last flush) with the layer. */
export const layer = (settings: LogSinkSettings): Layer.Layer<LogSink, never, HttpClient.HttpClient> =>
  Layer.scoped(LogSink, makeLogSink(settings))
