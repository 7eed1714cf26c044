/**
 * The server's logger: one JSON object per line on stdout (or a readable line in a terminal), with
 * the original design's enrichers (timestamp, level, message, correlation id, trace and span ids,
 * service, pod, environment, pid), the Effect log annotations and spans, and the typed cause of an
 * error; optionally every line also goes to Elasticsearch/OpenSearch (the bulk sink in
 * @chatify/adapters/logging). Nothing that looks like a secret or a token leaves it.
 *
 * Who and what a line is about is taken from the fiber's context when the line is written: the
 * caller (CurrentUser: user and connection), the correlation id, and `LogFields` (e.g. the hub
 * method). A call provides these once, with the services it needs anyway; annotating every call's
 * logs instead (a fiber-ref update per call that compares whole annotation maps) cost a send more
 * than anything it logged.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import {
  Cause,
  ConfigError,
  Context,
  Effect,
  FiberId,
  FiberRef,
  FiberRefs,
  HashMap,
  HashSet,
  Layer,
  List,
  Logger,
  type LogLevel,
  Option,
  Predicate,
  Redacted,
  Tracer
} from "effect"
import { LogSinkDroppedLines, type LogSinkService, type LogSinkSettings, makeLogSink } from "@chatify/adapters/logging"
import { CorrelationId, CurrentUser } from "@chatify/core"
import { describeConfigError, InvalidConfiguration, LOG_SERVICE_NAME, loggingConfig } from "./Config.js"

export { LogSinkDroppedLines }

/** More fields for the log lines of a call (string values), provided with its context. */
export class LogFields extends Context.Reference<LogFields>()("chatify/LogFields", {
  defaultValue: (): Readonly<Record<string, string>> => ({})
}) {}

/** `logger`, with the caller's fields from each line's fiber context added to its annotations. */
export const withCallerFields = <Message, Output>(
  logger: Logger.Logger<Message, Output>
): Logger.Logger<Message, Output> =>
  Logger.mapInputOptions(logger, (options) => {
    const context = FiberRefs.getOrDefault(options.context, FiberRef.currentContext)
    let annotations = options.annotations
    const add = (key: string, value: string) => {
      if (!HashMap.has(annotations, key)) annotations = HashMap.set(annotations, key, value)
    }
    const correlationId = Context.get(context, CorrelationId)
    if (correlationId !== undefined) add("correlationId", correlationId)
    const caller = Context.getOption(context, CurrentUser)
    if (Option.isSome(caller)) {
      add("userId", caller.value.userId)
      add("connectionId", caller.value.connectionId)
    }
    for (const [key, value] of Object.entries(Context.get(context, LogFields))) add(key, value)
    return annotations === options.annotations ? options : { ...options, annotations }
  })

export type LogFormat = "json" | "pretty"

/** Who writes the lines: the same on every line of the process. */
export interface LogEnrichment {
  readonly service: string
  readonly pod: string
  readonly environment: string
  readonly pid: number
}

export interface LoggingSettings {
  readonly format: LogFormat
  readonly minimumLevel: LogLevel.LogLevel
  readonly enrichment: LogEnrichment
  /** Elasticsearch/OpenSearch (CHATIFY__LOGGING__URI); none = stdout only. */
  readonly sink: Option.Option<LogSinkSettings>
}

// ---------------------------------------------------------------------------------------------
// Redaction: a line must never carry a credential, whatever a message or an error's text holds.

const REDACTED = "[REDACTED]"
/** Field names whose values are credentials (headers, query parameters, config keys, error fields). */
const SECRET_KEY = /authorization|password|passwd|secret|token|cookie|api[-_]?key|credential/iu
/** Cheap pre-check: only strings that mention one of these are rewritten. */
const MAY_HOLD_SECRET = /bearer|basic|eyj|authorization|password|passwd|secret|token|cookie|api[-_]?key|credential/iu
const KEY_VALUE_SECRET =
  /(authorization|password|passwd|secret|[a-z_]*token|cookie|api[-_]?key|credential)(["']?\s*[:=]\s*["']?)((?:bearer|basic)\s+)?[^\s"'&,;}\])]+/giu
const SCHEME_CREDENTIAL = /\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*/giu
/** A JWT (header.payload.signature, base64url, the header starts with `{"` = eyJ) anywhere in a text. */
const JWT = /\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/gu
/** user:password@ in a URL */
const URL_CREDENTIALS = /(\/\/)[^/\s:@]+:[^/\s@]+@/gu

/** `text` with every credential it shows replaced by [REDACTED]. */
export const redactText = (text: string): string => {
  if (!MAY_HOLD_SECRET.test(text) && !text.includes("@")) return text
  return text
    .replace(
      KEY_VALUE_SECRET,
      (_match, key: string, separator: string, scheme: string | undefined) =>
        `${key}${separator}${scheme ?? ""}${REDACTED}`
    )
    .replace(SCHEME_CREDENTIAL, (_match, scheme: string) => `${scheme} ${REDACTED}`)
    .replace(JWT, REDACTED)
    .replace(URL_CREDENTIALS, `$1${REDACTED}@`)
}

const MAX_DEPTH = 6

/** A JSON-safe copy of `value`: credentials redacted by field name and by content, cycles and depth bounded. */
export const redactValue = (value: unknown, depth = 0): unknown => {
  if (typeof value === "string") return redactText(value)
  if (typeof value === "number" || typeof value === "boolean" || value === null || value === undefined) return value
  if (typeof value === "bigint") return value.toString()
  if (typeof value === "symbol" || typeof value === "function") return String(value)
  if (Redacted.isRedacted(value)) return REDACTED
  if (depth >= MAX_DEPTH) return "[…]"
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString()
  if (Array.isArray(value)) return value.map((item) => redactValue(item, depth + 1))
  if (value instanceof Error && !Predicate.hasProperty(value, "_tag")) {
    return { name: value.name, message: redactText(value.message) }
  }
  const copy: Record<string, unknown> = {}
  for (const [key, field] of Object.entries(value)) {
    copy[key] = SECRET_KEY.test(key) ? REDACTED : redactValue(field, depth + 1)
  }
  return copy
}

// ---------------------------------------------------------------------------------------------
// One line

const textOf = (part: unknown): string => {
  if (typeof part === "string") return part
  const copy = redactValue(part)
  if (typeof copy === "string") return copy
  return copy === undefined ? "undefined" : JSON.stringify(copy)
}

const messageOf = (message: unknown): string =>
  redactText(Array.isArray(message) ? message.map(textOf).join(" ") : textOf(message))

/** The failure (or defect) a cause is about: its tag, its message and its own fields, then the whole cause. */
const errorOf = (cause: Cause.Cause<unknown>): Record<string, unknown> | undefined => {
  if (Cause.isEmptyType(cause)) return undefined
  const error = Option.getOrUndefined(Option.orElse(Cause.failureOption(cause), () => Cause.dieOption(cause)))
  const described: Record<string, unknown> = {}
  if (Predicate.hasProperty(error, "_tag") && typeof error._tag === "string") described["tag"] = error._tag
  else if (error instanceof Error) described["tag"] = error.name
  else if (Cause.isInterruptedOnly(cause)) described["tag"] = "Interrupted"
  if (error instanceof Error) described["message"] = redactText(error.message)
  else if (typeof error === "string") described["message"] = redactText(error)
  if (Predicate.isObject(error) && !Array.isArray(error)) {
    const fields = redactValue({ ...error })
    if (Predicate.isRecord(fields)) {
      delete fields["_tag"]
      delete fields["message"]
      if (Object.keys(fields).length > 0) described["fields"] = fields
    }
  }
  described["cause"] = redactText(Cause.pretty(cause, { renderErrorCause: true }))
  return described
}

/** Fields a line always has; an annotation of the same name does not replace them. */
const RESERVED = new Set([
  "@timestamp",
  "level",
  "message",
  "service",
  "pod",
  "environment",
  "pid",
  "traceId",
  "spanId",
  "fiberId",
  "spans",
  "error"
])

/** One line as a record: enrichers, annotations (flat), log spans in ms, the current span's ids, the error. */
export const logRecord = (
  options: Logger.Logger.Options<unknown>,
  enrichment: LogEnrichment
): Record<string, unknown> => {
  const record: Record<string, unknown> = {
    "@timestamp": options.date.toISOString(),
    level: options.logLevel.label,
    message: messageOf(options.message),
    service: enrichment.service,
    pod: enrichment.pod,
    environment: enrichment.environment,
    pid: enrichment.pid
  }
  for (const [key, value] of HashMap.toEntries(options.annotations)) {
    if (RESERVED.has(key)) continue
    record[key] = SECRET_KEY.test(key) ? REDACTED : redactValue(value)
  }
  const span = Context.getOption(FiberRefs.getOrDefault(options.context, FiberRef.currentContext), Tracer.ParentSpan)
  // with tracing off, Effect's spans are no-op spans whose ids read "noop": no ids then
  if (Option.isSome(span) && span.value.traceId !== "noop") {
    record["traceId"] = span.value.traceId
    record["spanId"] = span.value.spanId
  }
  record["fiberId"] = FiberId.threadName(options.fiberId)
  if (List.isCons(options.spans)) {
    const now = options.date.getTime()
    const spans: Record<string, number> = {}
    for (const logSpan of options.spans) spans[logSpan.label] = now - logSpan.startTime
    record["spans"] = spans
  }
  const error = errorOf(options.cause)
  if (error !== undefined) record["error"] = error
  return record
}

const PRETTY_LEAVE_OUT = new Set([
  "@timestamp",
  "level",
  "message",
  "service",
  "pod",
  "environment",
  "pid",
  "fiberId",
  "error"
])

/** The readable form for a terminal: time, level, message, then the other fields as key=value and the cause below. */
export const prettyLine = (record: Record<string, unknown>): string => {
  const fields = Object.entries(record)
    .filter(([key]) => !PRETTY_LEAVE_OUT.has(key))
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
  const time = String(record["@timestamp"]).slice(11, 23)
  const head = `${time} ${String(record["level"]).padEnd(5)} ${String(record["message"])}${
    fields.length > 0 ? `  ${fields.join(" ")}` : ""
  }`
  const error = record["error"]
  return Predicate.isRecord(error) && typeof error["cause"] === "string"
    ? `${head}\n  ${error["cause"].replaceAll("\n", "\n  ")}`
    : head
}

/**
 * The line for stdout in `format`; each line also goes to `sink` (as JSON), when there is one.
 * Built once per line: the JSON text written to stdout is the document the sink ships.
 */
export const makeLineLogger = (
  format: LogFormat,
  enrichment: LogEnrichment,
  sink: Option.Option<LogSinkService>
): Logger.Logger<unknown, string> =>
  withCallerFields(
    Logger.make((options) => {
      const record = logRecord(options, enrichment)
      const json = format === "json" || Option.isSome(sink) ? JSON.stringify(record) : ""
      if (Option.isSome(sink)) sink.value.offer(options.date.getTime(), json)
      return format === "json" ? json : prettyLine(record)
    })
  )

/**
 * The logger for `settings` in place of Effect's default one, with its minimum level; with a sink,
 * the sink's fiber is stopped (after a last flush) when the layer is released. The sink's own
 * warnings (cluster away, lines dropped) go to stdout only.
 */
export const layer = (settings: LoggingSettings): Layer.Layer<never> =>
  Layer.unwrapScoped(
    Effect.gen(function*() {
      const stdoutOnly = Logger.withConsoleLog(makeLineLogger(settings.format, settings.enrichment, Option.none()))
      const sink = Option.isNone(settings.sink) ? Option.none() : Option.some(
        yield* makeLogSink(settings.sink.value).pipe(
          Effect.provide(FetchHttpClient.layer),
          // eslint-disable-next-line @typescript-eslint/no-unsafe-argument -- Effect types currentLoggers with Logger<unknown, any>
          Effect.locallyWith(FiberRef.currentLoggers, () => HashSet.make(stdoutOnly))
        )
      )
      const logger = Option.isSome(sink)
        ? Logger.withConsoleLog(makeLineLogger(settings.format, settings.enrichment, sink))
        : stdoutOnly
      return Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(settings.minimumLevel))
    })
  )

/**
 * The logger as configured by the environment (CHATIFY__LOGGING__*; json unless stdout is a
 * terminal). A wrong value is logged as one JSON line naming the key, and fails startup.
 */
export const layerConfig = (stdoutIsTerminal: boolean): Layer.Layer<never, InvalidConfiguration> =>
  Layer.unwrapEffect(
    Effect.match(loggingConfig(stdoutIsTerminal), {
      onSuccess: layer,
      onFailure: (error: ConfigError.ConfigError) => {
        const invalid = new InvalidConfiguration({ message: describeConfigError(error) })
        return Layer.effectDiscard(
          Effect.zipRight(Effect.logError(invalid.message), Effect.fail(invalid)).pipe(
            Effect.provide(
              Logger.replace(
                Logger.defaultLogger,
                Logger.withConsoleLog(
                  makeLineLogger("json", {
                    service: LOG_SERVICE_NAME,
                    pod: "unknown",
                    environment: "unknown",
                    pid: process.pid
                  }, Option.none())
                )
              )
            )
          )
        )
      }
    })
  )
