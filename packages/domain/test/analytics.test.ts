import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck, Schema } from "effect"
import {
  MAX_STATS_SPAN_MILLIS,
  RateLimitViolation,
  RateLimitViolationJson,
  ScopeStats,
  ScopeWindowStats,
  ScopeWindowStatsJson,
  statsRange,
  UtcDateTime
} from "../src/index.js"

const decodeWindow = Schema.decodeUnknownEither(ScopeWindowStatsJson)
const encodeWindow = Schema.encodeSync(ScopeWindowStatsJson)
const decodeViolation = Schema.decodeUnknownEither(RateLimitViolationJson)
const encodeViolation = Schema.encodeSync(RateLimitViolationJson)
const decodeDate = Schema.decodeUnknownEither(UtcDateTime)

// 2000-01-01 .. 2100-01-01, whole milliseconds
const instant = FastCheck.integer({ min: 946_684_800_000, max: 4_102_444_800_000 })
const scopeId = FastCheck.string({ minLength: 1, maxLength: 40, unit: "grapheme" })

/** A window as the job emits it: its events inside it, at least one message and one sender. */
const windowArbitrary = FastCheck.record({
  scopeType: FastCheck.constantFrom(0 as const, 1 as const),
  scopeId,
  start: instant,
  length: FastCheck.integer({ min: 1, max: 3_600_000 }),
  first: FastCheck.double({ min: 0, max: 1, noNaN: true }),
  last: FastCheck.double({ min: 0, max: 1, noNaN: true }),
  messageCount: FastCheck.integer({ min: 1, max: 1_000_000 }),
  senders: FastCheck.double({ min: 0, max: 1, noNaN: true }),
  characterCount: FastCheck.nat()
}).map((w) => {
  const [a, b] = [w.first, w.last].sort((x, y) => x - y) as [number, number]
  return new ScopeWindowStats({
    scopeType: w.scopeType,
    scopeId: w.scopeId,
    windowStartUtc: new Date(w.start),
    windowEndUtc: new Date(w.start + w.length),
    messageCount: w.messageCount,
    distinctSenders: 1 + Math.floor(w.senders * (w.messageCount - 1)),
    characterCount: w.characterCount,
    firstEventAtUtc: new Date(w.start + Math.floor(a * (w.length - 1))),
    lastEventAtUtc: new Date(w.start + Math.floor(b * (w.length - 1)))
  })
})

const violationArbitrary = FastCheck.record({
  senderId: scopeId,
  scopeType: FastCheck.constantFrom(0 as const, 1 as const),
  scopeId,
  messageCount: FastCheck.nat(),
  threshold: FastCheck.nat(),
  start: instant,
  length: FastCheck.integer({ min: 1, max: 3_600_000 }),
  detectedAfter: FastCheck.nat({ max: 3_600_000 })
}).map((v) =>
  new RateLimitViolation({
    senderId: v.senderId,
    scopeType: v.scopeType,
    scopeId: v.scopeId,
    messageCount: v.messageCount,
    threshold: v.threshold,
    windowStartUtc: new Date(v.start),
    windowEndUtc: new Date(v.start + v.length),
    detectedAtUtc: new Date(v.start + v.detectedAfter)
  })
)

describe("analytics wire contract", () => {
  it("decodes the contract's chat-analytics example", () => {
    const decoded = decodeWindow(
      `{"scopeType":0,"scopeId":"general","windowStartUtc":"2026-11-30T10:00:00.000Z",` +
        `"windowEndUtc":"2026-11-30T10:01:00.000Z","messageCount":12,"distinctSenders":3,"characterCount":345,` +
        `"firstEventAtUtc":"2026-11-30T10:00:02.500Z","lastEventAtUtc":"2026-11-30T10:00:59.999Z"}`
    )
    expect(Either.getOrThrow(decoded)).toEqual(
      new ScopeWindowStats({
        scopeType: 0,
        scopeId: "general",
        windowStartUtc: new Date(Date.UTC(2026, 10, 30, 10)),
        windowEndUtc: new Date(Date.UTC(2026, 10, 30, 10, 1)),
        messageCount: 12,
        distinctSenders: 3,
        characterCount: 345,
        firstEventAtUtc: new Date(Date.UTC(2026, 10, 30, 10, 0, 2, 500)),
        lastEventAtUtc: new Date(Date.UTC(2026, 10, 30, 10, 0, 59, 999))
      })
    )
  })

  it("decodes the contract's chat-rate-limit-events example", () => {
    const decoded = decodeViolation(
      `{"senderId":"alice","scopeType":0,"scopeId":"general","messageCount":31,"threshold":30,` +
        `"windowStartUtc":"2026-11-30T10:00:00Z","windowEndUtc":"2026-11-30T10:00:10Z","detectedAtUtc":"2026-11-30T10:00:10.004Z"}`
    )
    expect(Either.getOrThrow(decoded).messageCount).toBe(31)
    expect(Either.getOrThrow(decoded).windowEndUtc).toEqual(new Date(Date.UTC(2026, 10, 30, 10, 0, 10)))
  })

  it.prop("a window survives encode → decode unchanged", { window: windowArbitrary }, ({ window }) => {
    expect(Either.getOrThrow(decodeWindow(encodeWindow(window)))).toEqual(window)
  })

  it.prop("a violation survives encode → decode unchanged", { violation: violationArbitrary }, ({ violation }) => {
    expect(Either.getOrThrow(decodeViolation(encodeViolation(violation)))).toEqual(violation)
  })

  it.prop(
    "a window whose fields contradict each other is refused",
    {
      window: windowArbitrary,
      breakage: FastCheck.constantFrom(
        "empty window",
        "no messages",
        "more senders than messages",
        "no sender",
        "event after the window",
        "first after last",
        "negative characters",
        "fractional count",
        "unknown scopeType",
        "date without zone"
      )
    },
    ({ breakage, window }) => {
      const json = JSON.parse(encodeWindow(window)) as Record<string, unknown>
      const end = window.windowEndUtc.toISOString()
      const broken: Record<string, unknown> = {
        "empty window": { windowEndUtc: window.windowStartUtc.toISOString() },
        "no messages": { messageCount: 0, distinctSenders: 0 },
        "more senders than messages": { distinctSenders: window.messageCount + 1 },
        "no sender": { distinctSenders: 0 },
        "event after the window": { lastEventAtUtc: end },
        "first after last": {
          firstEventAtUtc: window.lastEventAtUtc.toISOString(),
          lastEventAtUtc: window.firstEventAtUtc.toISOString(),
          // a window with one event instant has nothing to swap: break its count instead
          ...(window.firstEventAtUtc.getTime() === window.lastEventAtUtc.getTime() ? { messageCount: -1 } : {})
        },
        "negative characters": { characterCount: -1 },
        "fractional count": { messageCount: window.messageCount + 0.5 },
        "unknown scopeType": { scopeType: 2 },
        "date without zone": { windowStartUtc: window.windowStartUtc.toISOString().replace("Z", "") }
      }
      const changes = broken[breakage] as Record<string, unknown>
      expect(Either.isLeft(decodeWindow(JSON.stringify({ ...json, ...changes })))).toBe(true)
    }
  )

  it("refuses what is no JSON object, or lacks a field", () => {
    for (const text of ["", "null", "[]", "{", `{"scopeType":0}`, "42"]) {
      expect(Either.isLeft(decodeWindow(text))).toBe(true)
      expect(Either.isLeft(decodeViolation(text))).toBe(true)
    }
  })

  it("UtcDateTime takes Java's Instant.toString() forms and offsets, and refuses anything without a zone", () => {
    const at = (text: string) => Either.getOrThrow(decodeDate(text)).toISOString()
    expect(at("2026-11-30T10:00:00Z")).toBe("2026-11-30T10:00:00.000Z")
    expect(at("2026-11-30T10:00Z")).toBe("2026-11-30T10:00:00.000Z")
    expect(at("2026-11-30T10:00:00.123456Z")).toBe("2026-11-30T10:00:00.123Z")
    expect(at("2026-11-30T10:00:00.123456789Z")).toBe("2026-11-30T10:00:00.123Z")
    expect(at("2026-11-30T11:00:00+01:00")).toBe("2026-11-30T10:00:00.000Z")
    for (
      const text of ["2026-11-30", "2026-11-30T10:00:00", "yesterday", "1732960800000", "", "2026-13-45T99:99:99Z"]
    ) {
      expect(Either.isLeft(decodeDate(text))).toBe(true)
    }
  })

  it.prop("UtcDateTime encodes any instant to a text it decodes back", { at: instant }, ({ at }) => {
    const text = Schema.encodeSync(UtcDateTime)(new Date(at))
    expect(Either.getOrThrow(decodeDate(text)).getTime()).toBe(at)
  })

  it.prop(
    "ScopeStats survives the JSON round trip",
    { windows: FastCheck.array(windowArbitrary, { maxLength: 5 }) },
    ({ windows }) => {
      const stats = new ScopeStats({
        scopeType: 0,
        scopeId: "general",
        fromUtc: new Date(0),
        toUtc: new Date(1),
        windows
      })
      const json = Schema.encodeSync(Schema.parseJson(ScopeStats))(stats)
      expect(Schema.decodeSync(Schema.parseJson(ScopeStats))(json)).toEqual(stats)
    }
  )
})

describe("statsRange", () => {
  const now = Date.UTC(2026, 10, 30, 12)

  it("defaults to the hour before now, or before `to`", () => {
    expect(statsRange({}, now)).toEqual(Either.right({ from: new Date(now - 3_600_000), to: new Date(now) }))
    const to = new Date(now - 86_400_000)
    expect(statsRange({ to }, now)).toEqual(Either.right({ from: new Date(to.getTime() - 3_600_000), to }))
  })

  it.prop(
    "accepts exactly the ranges with from < to that span at most 24 hours",
    { from: instant, span: FastCheck.integer({ min: -MAX_STATS_SPAN_MILLIS, max: 2 * MAX_STATS_SPAN_MILLIS }) },
    ({ from, span }) => {
      const result = statsRange({ from: new Date(from), to: new Date(from + span) }, now)
      if (span <= 0) expect(result).toEqual(Either.left({ field: "from", message: "must be before to" }))
      else if (span > MAX_STATS_SPAN_MILLIS) expect(Either.isLeft(result) && result.left.field).toBe("to")
      else expect(result).toEqual(Either.right({ from: new Date(from), to: new Date(from + span) }))
    }
  )
})
