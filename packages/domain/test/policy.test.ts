import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck } from "effect"
import {
  type ChatScopeType,
  defaultPolicyLimits,
  isValidId,
  isValidText,
  MAX_CLIENT_MESSAGE_ID_LENGTH,
  type PolicyLimits,
  type SendCandidate,
  validateScopeId,
  validateSend,
  ValidationError
} from "../src/index.js"

// ---------------------------------------------------------------------------------------------
// An independent reference of ChatDomainPolicy, written from the rules, sharing nothing with the
// implementation (no regular expressions, no string iteration helpers: UTF-16 is decoded by hand).
//
//   ids:  1..maxIdLength code points, not whitespace-only, no control characters, no lone surrogates,
//         no format characters (Cf: bidi controls, zero-width characters, soft hyphen, tags, …)
//   text: not empty, not whitespace-only, at most maxTextLength code points,
//         no control characters other than \t \n \r (lone surrogates are not well-formed text either)
// ---------------------------------------------------------------------------------------------

interface Decoded {
  readonly codePoints: ReadonlyArray<number>
  readonly wellFormed: boolean
}

const decodeUtf16 = (s: string): Decoded => {
  const codePoints: Array<number> = []
  let wellFormed = true
  for (let i = 0; i < s.length; i++) {
    const unit = s.charCodeAt(i)
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        codePoints.push(0x10000 + ((unit - 0xd800) << 10) + (next - 0xdc00))
        i++
        continue
      }
    }
    if (unit >= 0xd800 && unit <= 0xdfff) wellFormed = false
    codePoints.push(unit)
  }
  return { codePoints, wellFormed }
}

/**
 * Whitespace: the Unicode White_Space property, plus U+FEFF (ZERO WIDTH NO-BREAK SPACE), which
 * ECMAScript counts as whitespace. U+FEFF is the one point where ECMAScript (`\s`) and Unicode /
 * .NET's Char.IsWhiteSpace differ in a way that matters here (U+0085 is whitespace in Unicode but
 * not in ECMAScript, yet it is a C1 control character and rejected anyway). See the report.
 */
const isWhitespace = (cp: number): boolean =>
  (cp >= 0x09 && cp <= 0x0d) ||
  cp === 0x20 ||
  cp === 0x85 ||
  cp === 0xa0 ||
  cp === 0x1680 ||
  (cp >= 0x2000 && cp <= 0x200a) ||
  cp === 0x2028 ||
  cp === 0x2029 ||
  cp === 0x202f ||
  cp === 0x205f ||
  cp === 0x3000 ||
  cp === 0xfeff

/** General category Cc: C0 controls, DEL and C1 controls. */
const isControl = (cp: number): boolean => cp <= 0x1f || (cp >= 0x7f && cp <= 0x9f)

/**
 * General category Cf (format), Unicode 17, written out from UnicodeData.txt: invisible characters
 * that steer how their neighbours are shown (bidi controls, zero-width characters, …).
 */
const FORMAT_RANGES: ReadonlyArray<readonly [number, number]> = [
  [0x00ad, 0x00ad], // soft hyphen
  [0x0600, 0x0605], // Arabic number signs
  [0x061c, 0x061c], // ARABIC LETTER MARK (bidi)
  [0x06dd, 0x06dd],
  [0x070f, 0x070f],
  [0x0890, 0x0891],
  [0x08e2, 0x08e2],
  [0x180e, 0x180e], // MONGOLIAN VOWEL SEPARATOR
  [0x200b, 0x200f], // ZWSP, ZWNJ, ZWJ, LRM, RLM
  [0x202a, 0x202e], // LRE, RLE, PDF, LRO, RLO
  [0x2060, 0x2064], // WORD JOINER, invisible operators
  [0x2066, 0x206f], // LRI, RLI, FSI, PDI, deprecated format characters
  [0xfeff, 0xfeff], // ZERO WIDTH NO-BREAK SPACE (BOM)
  [0xfff9, 0xfffb], // interlinear annotation
  [0x110bd, 0x110bd],
  [0x110cd, 0x110cd],
  [0x13430, 0x1343f], // Egyptian hieroglyph format controls
  [0x1bca0, 0x1bca3], // shorthand format controls
  [0x1d173, 0x1d17a], // musical symbol format controls
  [0xe0001, 0xe0001], // LANGUAGE TAG
  [0xe0020, 0xe007f] // tag characters
]

const isFormat = (cp: number): boolean => FORMAT_RANGES.some(([from, to]) => cp >= from && cp <= to)

const referenceValidId = (limits: PolicyLimits, s: string): boolean => {
  const { codePoints, wellFormed } = decodeUtf16(s)
  return (
    codePoints.length >= 1 &&
    codePoints.length <= limits.maxIdLength &&
    !codePoints.every(isWhitespace) &&
    !codePoints.some(isControl) &&
    !codePoints.some(isFormat) &&
    wellFormed
  )
}

const referenceValidText = (limits: PolicyLimits, s: string): boolean => {
  const { codePoints, wellFormed } = decodeUtf16(s)
  return (
    codePoints.length >= 1 &&
    codePoints.length <= limits.maxTextLength &&
    !codePoints.every(isWhitespace) &&
    !codePoints.some((cp) => isControl(cp) && cp !== 0x09 && cp !== 0x0a && cp !== 0x0d) &&
    wellFormed
  )
}

type Field = "senderId" | "scopeId" | "text" | "originPodId"

const referenceInvalidFields = (limits: PolicyLimits, c: SendCandidate): ReadonlyArray<Field> => {
  const invalid: Array<Field> = []
  if (!referenceValidId(limits, c.senderId)) invalid.push("senderId")
  if (!referenceValidId(limits, c.scopeId)) invalid.push("scopeId")
  if (!referenceValidText(limits, c.text)) invalid.push("text")
  if (!referenceValidId(limits, c.originPodId)) invalid.push("originPodId")
  return invalid
}

// ---------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------

const tricky = FastCheck.constantFrom(
  " ",
  "\t",
  "\n",
  "\r",
  "\u000b",
  "\u000c",
  "\u0000",
  "\u001f",
  "\u007f",
  "\u0085",
  "\u009f",
  "\u00a0",
  "\u1680",
  "\u2028",
  "\u3000",
  "\ufeff",
  "\u200b",
  "\u200d",
  "\u200e",
  "\u202e",
  "\u2066",
  "\u2069",
  "\u061c",
  "\u00ad",
  "\u{e0041}",
  "a",
  "Z",
  "é",
  "😀",
  "\ud800",
  "\udc00",
  "\ud83d",
  "\ude00"
)

/** Strings over a mix of alphabets, biased to short lengths so the small limits below are crossed. */
const anyString = (maxLength: number): FastCheck.Arbitrary<string> =>
  FastCheck.oneof(
    FastCheck.string({ maxLength }),
    FastCheck.string({ unit: "grapheme", maxLength }),
    FastCheck.string({ unit: "grapheme-composite", maxLength }),
    FastCheck.string({ unit: "binary", maxLength }),
    FastCheck.string({ unit: "binary-ascii", maxLength }),
    FastCheck.string({ unit: tricky, maxLength }),
    FastCheck.string({ unit: FastCheck.constantFrom(" ", "\t", "\n", "\r", "\u00a0", "\u3000"), maxLength }),
    FastCheck.string({ unit: FastCheck.constantFrom("a", "é", "😀", "中"), minLength: 1, maxLength })
  )

/** Mostly-valid values, so that a good share of generated candidates is valid in every field. */
const plausible = (maxLength: number): FastCheck.Arbitrary<string> =>
  FastCheck.string({ unit: FastCheck.constantFrom("a", "b", "-", "é", "😀", "中", " "), minLength: 1, maxLength })
    .filter(
      (s) => s.trim().length > 0
    )

const field = (maxLength: number): FastCheck.Arbitrary<string> =>
  FastCheck.oneof({ arbitrary: plausible(maxLength), weight: 3 }, { arbitrary: anyString(maxLength), weight: 2 })

const scopeType: FastCheck.Arbitrary<ChatScopeType> = FastCheck.constantFrom(0, 1)

const smallLimits: FastCheck.Arbitrary<PolicyLimits> = FastCheck.record({
  maxIdLength: FastCheck.integer({ min: 1, max: 8 }),
  maxTextLength: FastCheck.integer({ min: 1, max: 10 })
})

const limits: FastCheck.Arbitrary<PolicyLimits> = FastCheck.oneof(
  smallLimits,
  FastCheck.constant(defaultPolicyLimits)
)

const candidate: FastCheck.Arbitrary<SendCandidate> = FastCheck.record({
  senderId: field(10),
  scopeType,
  scopeId: field(10),
  text: field(12),
  originPodId: field(10)
})

const fieldsOf = (error: ValidationError): ReadonlyArray<string> => error.errors.map((e) => e.field)

// ---------------------------------------------------------------------------------------------

describe("the reference itself", () => {
  it("agrees with the rules on hand-picked cases", () => {
    const l = defaultPolicyLimits
    expect(referenceValidId(l, "alice")).toBe(true)
    expect(referenceValidId(l, "😀")).toBe(true)
    expect(referenceValidId(l, " a ")).toBe(true)
    expect(referenceValidId(l, "")).toBe(false)
    expect(referenceValidId(l, " \u3000 ")).toBe(false)
    expect(referenceValidId(l, "a\tb")).toBe(false)
    expect(referenceValidId(l, "a\u0085")).toBe(false)
    expect(referenceValidId(l, "a\ud800")).toBe(false)
    expect(referenceValidId(l, "\ud83d\ude00")).toBe(true)
    expect(referenceValidText(l, "line 1\r\nline\t2")).toBe(true)
    expect(referenceValidText(l, "bell\u0007")).toBe(false)
    expect(referenceValidText(l, "\n\t ")).toBe(false)
  })
})

describe("ChatDomainPolicy: validateSend", () => {
  it.prop(
    "accepts exactly the candidates whose every field is valid, and names exactly the invalid fields",
    { limits, c: candidate },
    ({ c, limits }) => {
      const invalid = referenceInvalidFields(limits, c)
      const result = validateSend(limits, c)
      if (invalid.length === 0) {
        expect(result).toEqual(Either.right(c))
      } else {
        expect(Either.isLeft(result)).toBe(true)
        if (Either.isLeft(result)) {
          expect(result.left).toBeInstanceOf(ValidationError)
          expect([...new Set(fieldsOf(result.left))].sort()).toEqual([...invalid].sort())
          for (const e of result.left.errors) expect(e.message.length).toBeGreaterThan(0)
        }
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "a single invalid field is the only one named",
    {
      limits,
      // one code point per field: valid under every limit generated here
      base: FastCheck.record({
        senderId: plausible(1),
        scopeType,
        scopeId: plausible(1),
        text: plausible(1),
        originPodId: plausible(1)
      }),
      which: FastCheck.constantFrom<Field>("senderId", "scopeId", "text", "originPodId"),
      bad: FastCheck.constantFrom(
        "",
        " ",
        "\t\n",
        "a\u0000",
        "a\u007f",
        "a\u0085",
        "a\u009f",
        "\ud800",
        "x\udc00",
        "\u3000\u00a0"
      )
    },
    ({ bad, base, limits, which }) => {
      const c: SendCandidate = { ...base, [which]: bad }
      const result = validateSend(limits, c)
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) expect([...new Set(fieldsOf(result.left))]).toEqual([which])
    },
    { fastCheck: { numRuns: 200 } }
  )

  it("lists every invalid field when all are invalid", () => {
    const result = validateSend(defaultPolicyLimits, {
      senderId: "",
      scopeType: 0,
      scopeId: " ",
      text: "\u0000",
      originPodId: "\ud800"
    })
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) {
      expect([...fieldsOf(result.left)].sort()).toEqual(["originPodId", "scopeId", "senderId", "text"])
    }
  })

  it("returns the candidate itself, extra properties included, when valid", () => {
    const c = {
      senderId: "alice",
      scopeType: 1 as const,
      scopeId: "alice:bob",
      text: "hi\n\tthere\r\n",
      originPodId: "pod-1",
      extra: 42
    }
    const result = validateSend(defaultPolicyLimits, c)
    expect(Either.isRight(result)).toBe(true)
    if (Either.isRight(result)) {
      expect(result.right).toBe(c)
      expect(result.right.extra).toBe(42)
    }
  })

  it("text may contain tab and line breaks but ids may not", () => {
    const base: SendCandidate = { senderId: "a", scopeType: 0, scopeId: "b", text: "ok", originPodId: "p" }
    expect(Either.isRight(validateSend(defaultPolicyLimits, { ...base, text: "a\tb\nc\rd" }))).toBe(true)
    for (const ch of ["\t", "\n", "\r"]) {
      const result = validateSend(defaultPolicyLimits, { ...base, scopeId: `a${ch}b` })
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) expect(fieldsOf(result.left)).toEqual(["scopeId"])
    }
    for (
      const ch of ["\u0000", "\u0008", "\u000b", "\u000c", "\u000e", "\u001f", "\u007f", "\u0080", "\u0085", "\u009f"]
    ) {
      const result = validateSend(defaultPolicyLimits, { ...base, text: `a${ch}b` })
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) expect(fieldsOf(result.left)).toEqual(["text"])
    }
  })
})

describe("ChatDomainPolicy: single fields", () => {
  it.prop("isValidId agrees with the reference", { limits, s: anyString(12) }, ({ limits, s }) => {
    expect(isValidId(limits, s)).toBe(referenceValidId(limits, s))
  }, { fastCheck: { numRuns: 300 } })

  it.prop("isValidText agrees with the reference", { limits, s: anyString(14) }, ({ limits, s }) => {
    expect(isValidText(limits, s)).toBe(referenceValidText(limits, s))
  }, { fastCheck: { numRuns: 300 } })

  it.prop(
    "validateScopeId agrees with the reference and names scopeId",
    { limits, s: anyString(12) },
    ({ limits, s }) => {
      const result = validateScopeId(limits, s)
      if (referenceValidId(limits, s)) {
        expect(result).toEqual(Either.right(s))
      } else {
        expect(Either.isLeft(result)).toBe(true)
        if (Either.isLeft(result)) expect([...new Set(fieldsOf(result.left))]).toEqual(["scopeId"])
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("whitespace-only is rejected for every kind of whitespace", () => {
    for (const ws of [" ", "\u00a0", "\u1680", "\u2000", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]) {
      expect(isValidId(defaultPolicyLimits, ws.repeat(3))).toBe(false)
      expect(isValidText(defaultPolicyLimits, ws.repeat(3))).toBe(false)
      expect(isValidText(defaultPolicyLimits, `\t${ws}\r\n`)).toBe(false)
      expect(isValidId(defaultPolicyLimits, `${ws}x${ws}`)).toBe(true)
    }
  })

  it("lone surrogates anywhere are rejected; well-formed pairs are accepted", () => {
    for (const s of ["\ud800", "\udfff", "a\ud83d", "\ude00a", "\ude00\ud83d", "😀\ud83d"]) {
      expect(isValidId(defaultPolicyLimits, s)).toBe(false)
      expect(isValidText(defaultPolicyLimits, s)).toBe(false)
    }
    for (const s of ["\ud83d\ude00", "\ud800\udc00", "\udbff\udfff"]) {
      expect(isValidId(defaultPolicyLimits, s)).toBe(true)
      expect(isValidText(defaultPolicyLimits, s)).toBe(true)
    }
  })
})

describe("ChatDomainPolicy: look-alike ids (format characters)", () => {
  /** The characters the hardening issue names: bidi controls and zero-width characters. */
  const named = [
    ...[0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c],
    ...[0x200b, 0x200c, 0x200d, 0x2060, 0xfeff]
  ]
  /** Any Cf code point: one of the named ones, or any point of any range of the table. */
  const formatCodePoint: FastCheck.Arbitrary<number> = FastCheck.oneof(
    FastCheck.constantFrom(...named),
    FastCheck.constantFrom(...FORMAT_RANGES).chain(([from, to]) => FastCheck.integer({ min: from, max: to }))
  )
  /** Valid ids from many scripts (Latin, Arabic and Hebrew letters, CJK, emoji with VS16, combining marks). */
  const validId: FastCheck.Arbitrary<string> = FastCheck.string({
    unit: FastCheck.constantFrom("a", "Z", "0", "-", ":", "é", "e\u0301", "ع", "ש", "中", "😀", "❤\ufe0f", " ", "%"),
    minLength: 1,
    maxLength: 12
  }).filter((s) => referenceValidId(defaultPolicyLimits, s))
  const hex = (cp: number) => `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`

  it.prop(
    "any id with a format character anywhere is refused, naming the field and the character",
    {
      before: FastCheck.oneof(FastCheck.constant(""), validId),
      cp: formatCodePoint,
      after: FastCheck.oneof(FastCheck.constant(""), validId),
      which: FastCheck.constantFrom<"senderId" | "scopeId" | "originPodId">("senderId", "scopeId", "originPodId")
    },
    ({ after, before, cp, which }) => {
      const id = `${before}${String.fromCodePoint(cp)}${after}`
      const base: SendCandidate = {
        senderId: "alice",
        scopeType: 0,
        scopeId: "general",
        text: "hi",
        originPodId: "pod-1"
      }
      const sent = validateSend(defaultPolicyLimits, { ...base, [which]: id })
      expect(Either.isLeft(sent)).toBe(true)
      if (Either.isLeft(sent)) {
        expect(sent.left).toBeInstanceOf(ValidationError)
        expect(fieldsOf(sent.left)).toEqual([which])
        const [error] = sent.left.errors
        if (id.trim() === "") {
          // U+FEFF alone: ECMAScript whitespace, so the whitespace rule speaks first
          expect(error.message).toBe("must not be whitespace only")
        } else {
          // the first format character of the id is the one named
          const first = [...id].map((c) => c.codePointAt(0) ?? 0).find(isFormat)
          expect(error.message).toContain("invisible format characters")
          expect(error.message).toContain(`(found ${hex(first ?? cp)})`)
        }
      }
      expect(isValidId(defaultPolicyLimits, id)).toBe(false)
      const scope = validateScopeId(defaultPolicyLimits, id)
      expect(Either.isLeft(scope)).toBe(true)
      if (Either.isLeft(scope)) expect(fieldsOf(scope.left)).toEqual(["scopeId"])
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop("valid ids are still accepted, in any script", { id: validId }, ({ id }) => {
    expect(validateScopeId(defaultPolicyLimits, id)).toEqual(Either.right(id))
    const c: SendCandidate = { senderId: id, scopeType: 1, scopeId: id, text: "hi", originPodId: id }
    expect(validateSend(defaultPolicyLimits, c)).toEqual(Either.right(c))
  }, { fastCheck: { numRuns: 300 } })

  it("refuses every named character in a scope id; text keeps them (emoji ZWJ sequences)", () => {
    for (const cp of named) {
      const id = `gen${String.fromCodePoint(cp)}eral`
      const result = validateScopeId(defaultPolicyLimits, id)
      expect(Either.isLeft(result), hex(cp)).toBe(true)
      if (Either.isLeft(result)) {
        expect(result.left.errors).toEqual([{
          field: "scopeId",
          message:
            `must not contain invisible format characters such as bidi controls or zero-width characters (found ${
              hex(cp)
            })`
        }])
      }
    }
    expect(isValidText(defaultPolicyLimits, "family: 👨\u200d👩\u200d👧, \u202eright-to-left")).toBe(true)
  })

  it("the reference's Cf table is this runtime's \\p{Cf}", () => {
    // Written out by hand so that the reference shares nothing with the implementation; this check
    // says when a newer Unicode (a Node upgrade) adds format characters the table lacks.
    const fromTable: Array<number> = []
    const fromRuntime: Array<number> = []
    for (let block = 0; block < 0x110000; block += 0x1000) {
      const codePoints = Array.from({ length: 0x1000 }, (_, i) => block + i).filter((cp) => cp < 0xd800 || cp > 0xdfff)
      fromTable.push(...codePoints.filter(isFormat))
      for (const match of String.fromCodePoint(...codePoints).matchAll(/\p{Cf}/gu)) {
        fromRuntime.push(match[0].codePointAt(0) ?? -1)
      }
    }
    expect(fromTable.map(hex)).toEqual(fromRuntime.map(hex))
  })
})

describe("ChatDomainPolicy: boundary lengths in code points", () => {
  const { maxIdLength, maxTextLength } = defaultPolicyLimits

  it("default limits are 256 for ids and 4096 for text", () => {
    expect(defaultPolicyLimits).toEqual({ maxIdLength: 256, maxTextLength: 4096 })
  })

  for (
    const [name, unit] of [
      ["ASCII", "a"],
      ["BMP", "é"],
      ["astral (emoji count as one)", "😀"]
    ] as const
  ) {
    it(`ids: exactly maxIdLength ${name} characters accepted, one more rejected`, () => {
      expect(isValidId(defaultPolicyLimits, unit.repeat(maxIdLength))).toBe(true)
      expect(isValidId(defaultPolicyLimits, unit.repeat(maxIdLength + 1))).toBe(false)
      const ok = validateScopeId(defaultPolicyLimits, unit.repeat(maxIdLength))
      expect(Either.isRight(ok)).toBe(true)
      const tooLong = validateScopeId(defaultPolicyLimits, unit.repeat(maxIdLength + 1))
      expect(Either.isLeft(tooLong)).toBe(true)
      if (Either.isLeft(tooLong)) expect(fieldsOf(tooLong.left)).toEqual(["scopeId"])
    })

    it(`text: exactly maxTextLength ${name} characters accepted, one more rejected`, () => {
      const base: SendCandidate = { senderId: "a", scopeType: 0, scopeId: "b", text: "", originPodId: "p" }
      expect(validateSend(defaultPolicyLimits, { ...base, text: unit.repeat(maxTextLength) })).toEqual(
        Either.right({ ...base, text: unit.repeat(maxTextLength) })
      )
      const tooLong = validateSend(defaultPolicyLimits, { ...base, text: unit.repeat(maxTextLength + 1) })
      expect(Either.isLeft(tooLong)).toBe(true)
      if (Either.isLeft(tooLong)) expect(fieldsOf(tooLong.left)).toEqual(["text"])
    })
  }

  it("a mixed ASCII/emoji id of exactly maxIdLength code points (more UTF-16 units) is accepted", () => {
    const s = "a😀".repeat(maxIdLength / 2)
    expect(s.length).toBe(maxIdLength * 1.5)
    expect(isValidId(defaultPolicyLimits, s)).toBe(true)
    expect(isValidId(defaultPolicyLimits, s + "😀")).toBe(false)
  })

  it.prop(
    "n code points are accepted iff n <= the limit, for any limit (astral characters included)",
    {
      maxIdLength: FastCheck.integer({ min: 1, max: 300 }),
      maxTextLength: FastCheck.integer({ min: 1, max: 300 }),
      chars: FastCheck.array(FastCheck.constantFrom("a", "é", "😀", "中", "𝄞", " "), { minLength: 1, maxLength: 310 })
    },
    ({ chars, maxIdLength, maxTextLength }) => {
      const s = `x${chars.join("")}`
      const n = chars.length + 1
      const custom: PolicyLimits = { maxIdLength, maxTextLength }
      expect(isValidId(custom, s)).toBe(n <= maxIdLength)
      expect(isValidText(custom, s)).toBe(n <= maxTextLength)
    },
    { fastCheck: { numRuns: 200 } }
  )
})

describe("ChatDomainPolicy: configurable limits", () => {
  const custom: PolicyLimits = { maxIdLength: 3, maxTextLength: 5 }
  const base: SendCandidate = { senderId: "abc", scopeType: 0, scopeId: "😀😀😀", text: "12345", originPodId: "p" }

  it("custom limits are honoured at their boundaries", () => {
    expect(Either.isRight(validateSend(custom, base))).toBe(true)
    const result = validateSend(custom, { ...base, senderId: "abcd", scopeId: "😀😀😀😀", text: "123456" })
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) expect([...fieldsOf(result.left)].sort()).toEqual(["scopeId", "senderId", "text"])
  })

  it("what custom limits reject, the defaults accept, and vice versa", () => {
    const long = { ...base, text: "x".repeat(100) }
    expect(Either.isLeft(validateSend(custom, long))).toBe(true)
    expect(Either.isRight(validateSend(defaultPolicyLimits, long))).toBe(true)
    const generous: PolicyLimits = { maxIdLength: 1000, maxTextLength: 10_000 }
    const huge = { ...base, senderId: "s".repeat(1000), text: "t".repeat(10_000) }
    expect(Either.isLeft(validateSend(defaultPolicyLimits, huge))).toBe(true)
    expect(Either.isRight(validateSend(generous, huge))).toBe(true)
    expect(Either.isLeft(validateSend(generous, { ...huge, senderId: "s".repeat(1001) }))).toBe(true)
  })

  it("a limit of 1 accepts exactly one code point", () => {
    const one: PolicyLimits = { maxIdLength: 1, maxTextLength: 1 }
    expect(isValidId(one, "😀")).toBe(true)
    expect(isValidId(one, "ab")).toBe(false)
    expect(isValidText(one, "😀")).toBe(true)
    expect(isValidText(one, "😀😀")).toBe(false)
  })
})

describe("ChatDomainPolicy: clientMessageId", () => {
  // one code point per field: valid under every limit generated here
  const base: SendCandidate = { senderId: "a", scopeType: 0, scopeId: "g", text: "h", originPodId: "p" }
  // the id rule, with its own limit
  const clientIdLimits: PolicyLimits = { ...defaultPolicyLimits, maxIdLength: MAX_CLIENT_MESSAGE_ID_LENGTH }
  const aroundTheLimit = FastCheck.tuple(
    FastCheck.integer({ min: 120, max: 136 }),
    FastCheck.constantFrom("a", "😀", "é", "e\u0301")
  )
    .map(([n, unit]) => unit.repeat(n))

  it.prop(
    "accepted exactly when it is a valid id of at most 128 code points; otherwise the only field named",
    { id: FastCheck.oneof(anyString(12), aroundTheLimit, FastCheck.uuid()), limits },
    ({ id, limits }) => {
      const c: SendCandidate = { ...base, clientMessageId: id }
      const result = validateSend(limits, c)
      if (referenceValidId(clientIdLimits, id)) {
        expect(result).toEqual(Either.right(c))
      } else {
        expect(Either.isLeft(result)).toBe(true)
        if (Either.isLeft(result)) expect(fieldsOf(result.left)).toEqual(["clientMessageId"])
      }
    },
    { fastCheck: { numRuns: 400 } }
  )

  it("absent, nothing is checked; its limit is 128 whatever the id limit is", () => {
    expect(MAX_CLIENT_MESSAGE_ID_LENGTH).toBe(128)
    expect(validateSend(defaultPolicyLimits, base)).toEqual(Either.right(base))
    const short: PolicyLimits = { maxIdLength: 1, maxTextLength: 1 }
    const c = { ...base, clientMessageId: "x".repeat(128) }
    expect(validateSend(short, c)).toEqual(Either.right(c))
    const tooLong = validateSend(defaultPolicyLimits, { ...base, clientMessageId: "😀".repeat(129) })
    expect(Either.isLeft(tooLong) ? tooLong.left.errors : []).toEqual([
      { field: "clientMessageId", message: "must be at most 128 characters" }
    ])
  })
})
