/**
 * Spans for use cases and adapters, and the W3C trace context that carries a send's trace through
 * the log to the consumers of every pod.
 *
 * The server turns Effect's tracer off when no exporter is configured. `traced` then runs the body
 * as it is: no span, no context copy, no stack capture (Effect.fn costs all three even with the
 * tracer off), so tracing costs nothing unless it is on.
 */
import { Context, Effect, FiberRef, Option, Tracer } from "effect"
import type { LogRecord } from "./Ports.js"
import { CorrelationId } from "./Ports.js"

/**
 * `Effect.fn(name)`'s shape for a function returning an Effect: its calls run in a span called
 * `name` while tracing is on, and as they are while it is off.
 */
export const traced = (name: string, options?: Omit<Tracer.SpanOptions, "captureStackTrace">) => {
  const spanOptions: Tracer.SpanOptions = { ...options, captureStackTrace: false }
  return <Args extends ReadonlyArray<unknown>, A, E, R>(body: (...args: Args) => Effect.Effect<A, E, R>) =>
  (...args: Args): Effect.Effect<A, E, R> =>
    Effect.withFiberRuntime<A, E, R>((fiber) =>
      fiber.getFiberRef(FiberRef.currentTracerEnabled)
        ? Effect.withSpan(body(...args), name, spanOptions)
        : body(...args)
    )
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/u
const ZERO_TRACE_ID = "0".repeat(32)
const ZERO_SPAN_ID = "0".repeat(16)

/** The `traceparent` header (W3C Trace Context, version 00) of a span. */
export const formatTraceparent = (span: Pick<Tracer.AnySpan, "traceId" | "spanId" | "sampled">): string =>
  `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

/**
 * The remote parent a `traceparent` header names; none for anything that is not a valid version-00
 * header (all-zero ids are invalid by the specification).
 */
export const parseTraceparent = (header: string): Option.Option<Tracer.ExternalSpan> => {
  const match = TRACEPARENT.exec(header)
  if (match === null) return Option.none()
  const [, traceId = "", spanId = "", flags = "00"] = match
  if (traceId === ZERO_TRACE_ID || spanId === ZERO_SPAN_ID) return Option.none()
  return Option.some(Tracer.externalSpan({ traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 }))
}

/** What a produced record carries besides its event: the trace to continue and whose send it is. */
export interface RecordContext {
  readonly traceParent: string | undefined
  readonly correlationId: string | undefined
}

/**
 * The current span as a `traceparent` (while tracing is on) and the caller's correlation id, for a
 * producer to put in the record's headers.
 */
export const recordContext: Effect.Effect<RecordContext> = Effect.withFiberRuntime((fiber) => {
  const context = fiber.currentContext
  const correlationId = Context.get(context, CorrelationId)
  if (!fiber.getFiberRef(FiberRef.currentTracerEnabled)) {
    return Effect.succeed({ traceParent: undefined, correlationId })
  }
  const span = Context.getOption(context, Tracer.ParentSpan)
  return Effect.succeed({
    traceParent: Option.isSome(span) ? formatTraceparent(span.value) : undefined,
    correlationId
  })
})

/**
 * Runs a consumer's step over `records` in one span per traced record, each the child of the send
 * that produced the record (its `traceparent`): one span per event per consumer at most, and none
 * while tracing is off or for records without a trace. The step's log lines carry the senders'
 * correlation id: as `CorrelationId` when the records share one, else as `correlationIds`.
 */
export const withRecordContext = <A, E, R>(
  name: string,
  records: Iterable<LogRecord>,
  step: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime<A, E, R>((fiber) => {
    const correlated = withCorrelation(records, step)
    if (!fiber.getFiberRef(FiberRef.currentTracerEnabled)) return correlated
    const parents: Array<[LogRecord, Tracer.ExternalSpan]> = []
    for (const record of records) {
      if (record.traceParent === undefined) continue
      const parent = parseTraceparent(record.traceParent)
      if (Option.isSome(parent)) parents.push([record, parent.value])
    }
    if (parents.length === 0) return correlated
    return Effect.flatMap(
      Effect.forEach(parents, ([record, parent]) =>
        Effect.makeSpan(name, {
          parent,
          kind: "consumer",
          captureStackTrace: false,
          attributes: {
            "messaging.destination.partition.id": String(record.partition),
            "messaging.kafka.offset": record.offset,
            ...(record.correlationId === undefined ? {} : { correlationId: record.correlationId })
          }
        })),
      (spans) =>
        Effect.onExit(correlated, (exit) =>
          Effect.flatMap(
            Effect.clockWith((clock) => clock.currentTimeNanos),
            (now) =>
              Effect.sync(() => {
                for (const span of spans) span.end(now, exit)
              })
          ))
    )
  })

const withCorrelation = <A, E, R>(
  records: Iterable<LogRecord>,
  step: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => {
  let single: string | undefined
  let several: Set<string> | undefined
  for (const { correlationId } of records) {
    if (correlationId === undefined || correlationId === single) continue
    if (single === undefined) single = correlationId
    else (several ??= new Set([single])).add(correlationId)
  }
  if (several !== undefined) return Effect.annotateLogs(step, "correlationIds", Array.from(several).join(","))
  return single === undefined ? step : Effect.provideService(step, CorrelationId, single)
}
