import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, FastCheck, Option, Ref, Tracer } from "effect"
import {
  CorrelationId,
  formatTraceparent,
  type LogRecord,
  parseTraceparent,
  traced,
  withRecordContext
} from "../src/index.js"
import { recordingTracer } from "./support/recordingTracer.js"

const hexId = (length: number) =>
  FastCheck.stringMatching(new RegExp(`^[0-9a-f]{${length}}$`, "u")).filter((id) => !/^0+$/u.test(id))
const ids = FastCheck.record({ traceId: hexId(32), spanId: hexId(16), sampled: FastCheck.boolean() })

/** A header that is not a valid version-00 `traceparent`, by each way one can be wrong. */
const malformed = FastCheck.oneof(
  // anything at all (almost never valid; the filter drops the rare valid one)
  FastCheck.string({ maxLength: 80 }).filter((text) => !/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/u.test(text)),
  // all-zero ids are invalid by the specification
  FastCheck.tuple(hexId(16), FastCheck.boolean()).map(([spanId, sampled]) =>
    formatTraceparent({ traceId: "0".repeat(32), spanId, sampled })
  ),
  FastCheck.tuple(hexId(32), FastCheck.boolean()).map(([traceId, sampled]) =>
    formatTraceparent({ traceId, spanId: "0".repeat(16), sampled })
  ),
  // a valid header changed: another version, upper case, a field cut short or grown, a suffix
  ids.map((id) => formatTraceparent(id).replace(/^00/u, "01")),
  ids.map((id) => formatTraceparent(id).replace(/^00/u, "ff")),
  ids.filter(({ traceId }) => /[a-f]/u.test(traceId)).map((id) => formatTraceparent(id).toUpperCase()),
  ids.map(({ sampled, spanId, traceId }) => `00-${traceId.slice(1)}-${spanId}-${sampled ? "01" : "00"}`),
  ids.map(({ sampled, spanId, traceId }) => `00-${traceId}-${spanId}0-${sampled ? "01" : "00"}`),
  ids.map(({ spanId, traceId }) => `00-${traceId}-${spanId}-1`),
  ids.map((id) => `${formatTraceparent(id)}-extra`),
  ids.map((id) => ` ${formatTraceparent(id)}`)
)

describe("traceparent codec (W3C Trace Context, version 00)", () => {
  it.prop("parse ∘ format is the identity on trace id, span id and the sampled flag", [ids], ([id]) => {
    const parsed = parseTraceparent(formatTraceparent(id))
    expect(Option.map(parsed, ({ sampled, spanId, traceId }) => ({ traceId, spanId, sampled }))).toEqual(
      Option.some(id)
    )
  })

  it.prop("format ∘ parse is the identity on well-formed headers with the flags 00 or 01", [ids], ([id]) => {
    const header = formatTraceparent(id)
    expect(Option.map(parseTraceparent(header), formatTraceparent)).toEqual(Option.some(header))
  })

  it.prop("a malformed header is refused", [malformed], ([header]) => {
    expect(parseTraceparent(header)).toEqual(Option.none())
  }, { fastCheck: { numRuns: 500 } })

  it("reads the sampled bit of any flags byte", () => {
    const id = `00-${"ab".repeat(16)}-${"cd".repeat(8)}`
    expect(Option.map(parseTraceparent(`${id}-03`), (span) => span.sampled)).toEqual(Option.some(true))
    expect(Option.map(parseTraceparent(`${id}-02`), (span) => span.sampled)).toEqual(Option.some(false))
  })
})

/** Effect's own tracer, recording every span it makes; on for `effect`. */
const withRecordedSpans = <A, E, R>(effect: (spans: Ref.Ref<ReadonlyArray<Tracer.Span>>) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const spans = yield* Ref.make<ReadonlyArray<Tracer.Span>>([])
    const recording = yield* recordingTracer(spans)
    return yield* effect(spans).pipe(Effect.withTracer(recording), Effect.withTracerEnabled(true))
  })

const recordOf = (offset: number, traceParent: string | undefined, correlationId?: string): LogRecord => ({
  partition: 0,
  offset,
  key: "0:general",
  value: "{}",
  timestampMs: 0,
  traceParent,
  correlationId
})

describe("withRecordContext: the consumer side of a record's trace", () => {
  it.effect.prop(
    "every record with a valid traceparent gets a consumer span, the child of its producer; malformed ones are skipped and the step still runs",
    [FastCheck.array(FastCheck.oneof(ids.map(formatTraceparent), malformed, FastCheck.constant(undefined)), {
      maxLength: 6
    })],
    ([headers]) =>
      withRecordedSpans((spans) =>
        Effect.gen(function*() {
          const records = headers.map((header, offset) => recordOf(offset, header))
          const result = yield* withRecordContext("Consumer.step", records, Effect.succeed("stored"))
          expect(result).toBe("stored")
          const made = (yield* Ref.get(spans)).filter((span) => span.name === "Consumer.step")
          const valid = headers.flatMap((header) => {
            const parent = header === undefined ? Option.none() : parseTraceparent(header)
            return Option.isSome(parent) ? [parent.value] : []
          })
          expect(made.map((span) => span.kind)).toEqual(valid.map(() => "consumer"))
          expect(made.map((span) => Option.map(span.parent, (p) => [p.traceId, p.spanId]))).toEqual(
            valid.map((parent) => Option.some([parent.traceId, parent.spanId]))
          )
          expect(made.map((span) => span.traceId)).toEqual(valid.map((parent) => parent.traceId))
          // ended, with the step's exit
          for (const span of made) expect(span.status._tag).toBe("Ended")
        })
      ),
    { fastCheck: { numRuns: 40 } }
  )

  it.effect("a failing step ends its spans with the failure and fails as it did", () =>
    withRecordedSpans((spans) =>
      Effect.gen(function*() {
        const header = formatTraceparent({ traceId: "a".repeat(32), spanId: "b".repeat(16), sampled: true })
        const exit = yield* Effect.exit(withRecordContext("Consumer.step", [recordOf(7, header)], Effect.fail("down")))
        expect(exit).toEqual(Exit.fail("down"))
        const [span] = yield* Ref.get(spans)
        expect(span?.status._tag === "Ended" && Exit.isFailure(span.status.exit)).toBe(true)
      })
    ))

  it.effect("one traced record: the step runs in its span, with the sender's correlation id", () =>
    withRecordedSpans((spans) =>
      Effect.gen(function*() {
        const header = formatTraceparent({ traceId: "c".repeat(32), spanId: "d".repeat(16), sampled: true })
        const seen = yield* withRecordContext(
          "Consumer.step",
          [recordOf(1, header, "corr-1")],
          Effect.all([Effect.currentSpan, CorrelationId])
        )
        const [span] = yield* Ref.get(spans)
        expect(seen[0].spanId).toBe(span?.spanId)
        expect(seen[0].traceId).toBe("c".repeat(32))
        expect(seen[1]).toBe("corr-1")
      })
    ))

  it.effect("several traced records, or none: the step's own spans are not made (no parent to give them)", () =>
    withRecordedSpans((spans) =>
      Effect.gen(function*() {
        const inner = traced("Adapter.append")(() => Effect.void)
        const header = (n: number) =>
          formatTraceparent({ traceId: `${n}`.repeat(32), spanId: `${n}`.repeat(16), sampled: true })
        yield* withRecordContext("Consumer.step", [recordOf(1, header(1)), recordOf(2, header(2))], inner())
        yield* withRecordContext("Consumer.step", [recordOf(3, undefined), recordOf(4, "garbage")], inner())
        expect((yield* Ref.get(spans)).map((span) => span.name)).toEqual(["Consumer.step", "Consumer.step"])
      })
    ))
})

describe("traced: Effect.fn's shapes, a span only while tracing is on", () => {
  const double = traced("Test.double")(function*(n: number) {
    const span = yield* Effect.currentSpan
    return { n: n * 2, span: span.name }
  })

  it.effect("a generator body runs in a span named as given", () =>
    withRecordedSpans((spans) =>
      Effect.gen(function*() {
        expect(yield* double(21)).toEqual({ n: 42, span: "Test.double" })
        expect((yield* Ref.get(spans)).map((span) => span.name)).toEqual(["Test.double"])
      })
    ))

  it.effect("with the tracer off it runs as it is, without a span", () =>
    Effect.gen(function*() {
      const plain = traced("Test.plain")((n: number) =>
        Effect.map(Effect.option(Effect.currentParentSpan), (span) => [n, span])
      )
      expect(yield* plain(1)).toEqual([1, Option.none()])
    }).pipe(Effect.withTracerEnabled(false)))

  it.effect("a generator body starts anew on every run (a retried call)", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const flaky = traced("Test.flaky")(function*() {
        const attempt = yield* Ref.updateAndGet(attempts, (n) => n + 1)
        if (attempt < 3) return yield* Effect.fail(`attempt ${attempt}`)
        return attempt
      })
      expect(yield* Effect.retry(flaky(), { times: 5 })).toBe(3)
    }))

  it.effect("keeps the caller's services", () =>
    Effect.gen(function*() {
      const read = traced("Test.read")(function*() {
        return yield* CorrelationId
      })
      expect(yield* Effect.provideService(read(), CorrelationId, "corr-2")).toBe("corr-2")
    }))
})

describe("traced in a trace that is not kept", () => {
  it.effect("makes no span under an unsampled parent, and a span under a sampled one", () =>
    withRecordedSpans((spans) =>
      Effect.gen(function*() {
        const step = traced("Test.step")(() => Effect.map(Effect.currentParentSpan, (span) => span.spanId))
        const parent = (sampled: boolean) =>
          Tracer.externalSpan({ traceId: "e".repeat(32), spanId: "f".repeat(16), sampled })
        expect(yield* Effect.withParentSpan(step(), parent(false))).toBe("f".repeat(16))
        expect(yield* Ref.get(spans)).toEqual([])
        const kept = yield* Effect.withParentSpan(step(), parent(true))
        expect((yield* Ref.get(spans)).map((span) => [span.name, span.spanId])).toEqual([["Test.step", kept]])
      })
    ))
})
