/**
 * Issue 15, item 9: a value that fails a union reads as one sentence per field (Schema `message`
 * annotations on the domain schemas), not one "Expected …" per member of the union.
 */
import * as HttpApiError from "@effect/platform/HttpApiError"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, ParseResult, Schema } from "effect"
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
