/**
 * Spans for use cases and adapters, and the W3C trace context that carries a send's trace through
 * the log to the consumers of every pod.
 *
 * The server turns Effect's tracer off when no exporter is configured. `traced` then runs the body
 * as it is: no span, no context copy, no stack capture. Effect.fn pays for all three on every call
 * even with the tracer off: measured with bench/effect-fn-cost.ts on the 2-core box, 30–100 µs a
 * call against under 2 µs for `traced` (tracer on: 40–60 µs against 17–25 µs) — with a span per use
 * case and adapter method, more than a send's whole budget of about 200 µs.
 */
import { Context, Effect, type Fiber, FiberRef, Option, Tracer } from "effect"
import { isGeneratorFunction, type YieldWrap } from "effect/Utils"
import type { LogRecord } from "./Ports.js"
import { CorrelationId } from "./Ports.js"

type AnyEffect = Effect.Effect<unknown, unknown, unknown>
type Yielded = YieldWrap<AnyEffect>
type ErrorOf<Eff> = [Eff] extends [never] ? never
  : [Eff] extends [YieldWrap<Effect.Effect<infer _A, infer E, infer _R>>] ? E
  : never
type ContextOf<Eff> = [Eff] extends [never] ? never
  : [Eff] extends [YieldWrap<Effect.Effect<infer _A, infer _E, infer R>>] ? R
  : never

/** What `traced(name)` takes: Effect.fn's two shapes, a generator function or a function returning an Effect. */
export interface Traced {
  <Eff extends Yielded, AEff, Args extends Array<unknown>>(
    body: (...args: Args) => Generator<Eff, AEff, never>
  ): (...args: Args) => Effect.Effect<AEff, ErrorOf<Eff>, ContextOf<Eff>>
  <Args extends Array<unknown>, A, E, R>(body: (...args: Args) => Effect.Effect<A, E, R>): (
    ...args: Args
  ) => Effect.Effect<A, E, R>
}

/**
 * `Effect.fn(name)` for use cases and adapter methods: `traced("Chat.send")(function*(request) {…})`
 * (or a function returning an Effect). Its calls run in a span called `name` while tracing is on
 * and the trace is kept (sampled), and as they are otherwise.
 */
export const traced = (name: string, options?: Omit<Tracer.SpanOptions, "captureStackTrace">): Traced => {
  const spanOptions: Tracer.SpanOptions = { ...options, captureStackTrace: false }
  return ((body: (...args: Array<unknown>) => unknown) => {
    // a generator body is started anew on every run of its Effect (a retried call, a repeat)
    const effectOf: (args: Array<unknown>) => AnyEffect = isGeneratorFunction(body)
      ? (args) => Effect.gen(() => body(...args) as Generator<Yielded, unknown, never>)
      : (args) => body(...args) as AnyEffect
    return (...args: Array<unknown>): AnyEffect =>
      Effect.withFiberRuntime<unknown, unknown, unknown>((fiber) => {
        if (!fiber.getFiberRef(FiberRef.currentTracerEnabled)) return effectOf(args)
        // In a trace that is not kept a span records nothing, and the parent's ids already carry
        // the decision on (its traceparent says "not sampled"): no span, which costs 20 µs or so.
        const parent = Context.getOption(fiber.currentContext, Tracer.ParentSpan)
        return Option.isSome(parent) && !parent.value.sampled
          ? effectOf(args)
          : Effect.withSpan(effectOf(args), name, spanOptions)
      })
  })
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
export const recordContext: Effect.Effect<RecordContext> = Effect.withFiberRuntime((fiber) =>
  Effect.succeed(recordContextOf(fiber))
)

/** `recordContext` of a running fiber, for an adapter that reads it within a step of its own. */
export const recordContextOf = (fiber: Fiber.RuntimeFiber<unknown, unknown>): RecordContext => {
  const context = fiber.currentContext
  const correlationId = Context.get(context, CorrelationId)
  if (!fiber.getFiberRef(FiberRef.currentTracerEnabled)) return { traceParent: undefined, correlationId }
  const span = Context.getOption(context, Tracer.ParentSpan)
  return { traceParent: Option.isSome(span) ? formatTraceparent(span.value) : undefined, correlationId }
}

/**
 * Runs a consumer's step over `records` in one span per traced record, each the child of the send
 * that produced the record (its `traceparent`): one span per event per consumer at most, and none
 * while tracing is off or for records without a trace. The step's log lines carry the senders'
 * correlation id: as `CorrelationId` when the records share one, else as `correlationIds`.
 * A malformed `traceparent` is ignored (the record is processed, without a span).
 *
 * The step's own spans (an adapter's append, say) and its log lines join the send's trace when the
 * step is about one traced record. A step over several has no single parent, and over none no
 * parent at all: its inner spans would each start a trace of their own, per batch, so there are none.
 */
export const withRecordContext = <A, E, R>(
  name: string,
  records: Iterable<LogRecord>,
  step: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => withRecordSpans(name, records, withCorrelation(records, step))

/**
 * `withRecordContext` without the correlation ids: for a step whose log lines say whose records
 * they are by themselves (see `withCorrelation`), which spares the context copy of each run.
 */
export const withRecordSpans = <A, E, R>(
  name: string,
  records: Iterable<LogRecord>,
  correlated: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime<A, E, R>((fiber) => {
    if (!fiber.getFiberRef(FiberRef.currentTracerEnabled)) return correlated
    const parents: Array<[LogRecord, Tracer.ExternalSpan]> = []
    for (const record of records) {
      if (record.traceParent === undefined) continue
      const parent = parseTraceparent(record.traceParent)
      if (Option.isSome(parent)) parents.push([record, parent.value])
    }
    if (parents.length === 0) return Effect.withTracerEnabled(correlated, false)
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
        Effect.onExit(
          spans.length === 1
            ? Effect.withParentSpan(correlated, spans[0]!)
            : Effect.withTracerEnabled(correlated, false),
          (exit) =>
            Effect.flatMap(
              Effect.clockWith((clock) => clock.currentTimeNanos),
              (now) =>
                Effect.sync(() => {
                  for (const span of spans) span.end(now, exit)
                })
            )
        )
    )
  })

/**
 * The log lines of `step` with the correlation id of the senders of `records`: as `CorrelationId`
 * when they share one, else as `correlationIds`.
 */
export const withCorrelation = <A, E, R>(
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
