/**
 * Issue 15, item 9: a value that fails a union reads as one sentence per field (Schema `message`
 * annotations on the domain schemas), not one "Expected …" per member of the union.
 */
import * as HttpApiError from "@effect/platform/HttpApiError"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, FastCheck, ParseResult, Schema } from "effect"
import {
  ChatScopeType,
  ChatSendRequest,
  HistoryLimit,
  HistoryLimitFromString,
  HistoryUrlParams,
  ScopePath
} from "../src/index.js"

/** Every issue of a failed decode as `path: message`, as a ValidationError lists them. */
const issuesOf = <A, I>(schema: Schema.Schema<A, I>, value: unknown): ReadonlyArray<string> =>
  Either.match(Schema.decodeUnknownEither(schema, { errors: "all" })(value), {
    onLeft: (error) =>
      ParseResult.ArrayFormatter.formatErrorSync(error).map((i) => `${i.path.join(".")}: ${i.message}`),
    onRight: () => []
  })

const SCOPE_TYPE = "scopeType: must be 0 (channel) or 1 (direct message)"
const LIMIT = "limit: must be an integer between 1 and 500"

describe("validation messages", () => {
  it("scopeType: one message whatever the value", () => {
    for (const scopeType of [2, -1, "0", "x", null, 0.5]) {
      expect(issuesOf(ChatSendRequest, { scopeType, scopeId: "general", text: "hi" }), String(scopeType)).toEqual([
        SCOPE_TYPE
      ])
    }
    expect(issuesOf(Schema.Struct({ scopeType: ChatScopeType }), { scopeType: 1 })).toEqual([])
  })

  it("a send request wrong in several fields names each of them, whatever the parse options", () => {
    const wrong = { scopeType: "0", scopeId: 7, text: 5 }
    const expected = [SCOPE_TYPE, "scopeId: Expected string, actual 7", "text: Expected string, actual 5"]
    expect(issuesOf(ChatSendRequest, wrong)).toEqual(expected)
    // as HttpApi and RpcServer decode it: with the default parse options (errors: "first")
    const decoded = Schema.decodeUnknownEither(ChatSendRequest)(wrong)
    expect(
      Either.isLeft(decoded) ?
        ParseResult.ArrayFormatter.formatErrorSync(decoded.left).map((i) => `${i.path.join(".")}: ${i.message}`) :
        []
    ).toEqual(expected)
  })

  it("limit from the query string: one message for text, fractions and values out of range", () => {
    const urlParams = Schema.Struct({ limit: Schema.optionalWith(HistoryLimitFromString, { exact: true }) })
    for (const limit of ["abc", "zz", "0", "501", "1.5", "", "-3"]) {
      expect(issuesOf(urlParams, { limit }), limit).toEqual([LIMIT])
    }
    expect(issuesOf(urlParams, { limit: "20" })).toEqual([])
    expect(issuesOf(urlParams, {})).toEqual([])
  })

  it("limit as a number (RPC History): the same message", () => {
    for (const limit of [0, 501, 1.5]) {
      expect(issuesOf(Schema.Struct({ limit: HistoryLimit }), { limit }), String(limit)).toEqual([LIMIT])
    }
  })

  it("the REST contract's path and query schemas use them (what HttpApi's decode error lists)", () =>
    Effect.gen(function*() {
      const decodePath = Schema.decodeUnknown(ScopePath)
      const decodeQuery = Schema.decodeUnknown(HistoryUrlParams)
      const pathError = yield* Effect.flip(decodePath({ scopeType: "5", scopeId: "general" }))
      const queryError = yield* Effect.flip(decodeQuery({ limit: "zz" }))
      const listed = (error: ParseResult.ParseError) =>
        HttpApiError.HttpApiDecodeError.fromParseError(error).pipe(
          Effect.map((e) => e.issues.map((i) => `${i.path.join(".")}: ${i.message}`))
        )
      expect(yield* listed(pathError)).toEqual([SCOPE_TYPE])
      expect(yield* listed(queryError)).toEqual([LIMIT])
    }))
})

describe("validation messages, for any value", () => {
  const urlParams = Schema.Struct({ limit: Schema.optionalWith(HistoryLimitFromString, { exact: true }) })

  it.prop("limit from the query string: an integer from 1 to 500, or that one message", {
    limit: FastCheck.oneof(
      FastCheck.string({ maxLength: 8 }),
      FastCheck.integer({ min: -1_000, max: 1_000 }).map(String),
      FastCheck.double({ noNaN: false }).map(String)
    )
  }, ({ limit }) => {
    const decoded = Schema.decodeUnknownEither(urlParams)({ limit })
    if (Either.isRight(decoded)) {
      expect(Number.isInteger(decoded.right.limit)).toBe(true)
      expect(decoded.right.limit).toBeGreaterThanOrEqual(1)
      expect(decoded.right.limit).toBeLessThanOrEqual(500)
    } else {
      expect(issuesOf(urlParams, { limit })).toEqual([LIMIT])
    }
    // every integer of the range, written plainly, is accepted
    if (/^\d+$/u.test(limit) && Number(limit) >= 1 && Number(limit) <= 500) expect(Either.isRight(decoded)).toBe(true)
  })

  it.prop("scopeType: 0 or 1, or that one message", { scopeType: FastCheck.anything() }, ({ scopeType }) => {
    const issues = issuesOf(ChatSendRequest, { scopeType, scopeId: "general", text: "hi" })
    expect(issues).toEqual(scopeType === 0 || scopeType === 1 ? [] : [SCOPE_TYPE])
  })
})
