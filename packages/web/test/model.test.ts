/** The page's pure parts (src/Model.ts): property tests of the timeline, the token reader, the stored scopes, the words. */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, FastCheck as fc, Option } from "effect"
import {
  ChatEvent,
  directMessageScopeId,
  EnrichedChatEvent,
  Forbidden,
  RateLimited,
  type ScopeRef,
  ValidationError
} from "@chatify/domain"
import {
  emptyTimeline,
  mergeEvents,
  readStoredScopes,
  scopeTitle,
  sendErrorText,
  tokenUser,
  writeStoredScopes
} from "../src/Model.js"

const event = fc.record({ messageId: fc.uuid({ version: 4 }), offset: fc.nat({ max: 1_000 }), text: fc.string() }).map((
  { messageId, offset, text }
) =>
  new EnrichedChatEvent({
    chatEvent: new ChatEvent({
      messageId,
      scopeType: 0,
      scopeId: "general",
      senderId: "alice",
      text,
      createdAtUtc: new Date(1_700_000_000_000 + offset),
      originPodId: "pod"
    }),
    partition: 0,
    offset
  })
)

/** Events as a subscription and history pages may bring them: repeats, any order, in batches. */
const deliveries = fc.array(event, { maxLength: 30 }).chain((events) =>
  fc.array(fc.subarray(events), { maxLength: 6 }).map((batches) => ({ events, batches }))
)

describe("the timeline", () => {
  it.prop("holds each message once, in log order, however the batches overlap", { deliveries }, ({ deliveries }) => {
    const timeline = deliveries.batches.reduce(mergeEvents, emptyTimeline)
    const delivered = new Map(deliveries.batches.flat().map((item) => [item.chatEvent.messageId, item]))
    expect(new Set(timeline.order).size).toBe(timeline.order.length)
    expect(new Set(timeline.order)).toEqual(new Set(delivered.keys()))
    const offsets = timeline.order.map((id) => timeline.byId.get(id)!.offset)
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b))
  })

  it.prop("ends the same whatever order the batches came in", { deliveries }, ({ deliveries }) => {
    const forward = deliveries.batches.reduce(mergeEvents, emptyTimeline)
    const backward = [...deliveries.batches].reverse().reduce(mergeEvents, emptyTimeline)
    const byOffsetThenId = (order: ReadonlyArray<string>, timeline: typeof forward) =>
      order.map((id) => `${timeline.byId.get(id)!.offset}:${id}`)
    expect(byOffsetThenId(backward.order, backward)).toEqual(byOffsetThenId(forward.order, forward))
  })

  it.prop("is left as it was (the same object) by events it already holds", {
    events: fc.array(event, { maxLength: 20 })
  }, ({ events }) => {
    const timeline = mergeEvents(emptyTimeline, events)
    expect(mergeEvents(timeline, events)).toBe(timeline)
  })
})

const base64url = (text: string) => Buffer.from(text, "utf8").toString("base64url")
const jwt = (claims: Record<string, unknown>) =>
  `${base64url(JSON.stringify({ alg: "HS256" }))}.${base64url(JSON.stringify(claims))}.c2ln`

describe("tokenUser", () => {
  it.prop("reads sub, then user_id, as the server does", {
    sub: fc.option(fc.string({ unit: "grapheme", minLength: 1 }), { nil: undefined }),
    userId: fc.option(fc.string({ unit: "grapheme", minLength: 1 }), { nil: undefined })
  }, ({ sub, userId }) => {
    const token = jwt({ ...(sub === undefined ? {} : { sub }), ...(userId === undefined ? {} : { user_id: userId }) })
    expect(tokenUser(token)).toEqual(Option.fromNullable(sub ?? userId))
  })

  it.prop("never throws on text that is no token, and names nobody then", { text: fc.string() }, ({ text }) => {
    const user = tokenUser(text)
    if (Option.isSome(user)) expect(text.split(".").length).toBeGreaterThan(1)
  })

  it("names nobody for a payload that is not JSON, or has an empty or non-string sub", () => {
    expect(tokenUser(`x.${base64url("not json")}.y`)).toEqual(Option.none())
    expect(tokenUser(jwt({ sub: "" }))).toEqual(Option.none())
    expect(tokenUser(jwt({ sub: 42 }))).toEqual(Option.none())
    expect(tokenUser("x.!!!.y")).toEqual(Option.none())
  })
})

const scope: fc.Arbitrary<ScopeRef> = fc.record({
  scopeType: fc.constantFrom(0 as const, 1 as const),
  scopeId: fc.string()
})

describe("the stored scopes", () => {
  it.prop("read back what was written", { scopes: fc.array(scope, { maxLength: 8 }) }, ({ scopes }) => {
    expect(readStoredScopes(writeStoredScopes(scopes))).toEqual(scopes)
  })

  it.prop("read nothing (never throw) from text this page did not write", { text: fc.string() }, ({ text }) => {
    const scopes = readStoredScopes(text)
    for (const { scopeType } of scopes) expect([0, 1]).toContain(scopeType)
  })

  it("read nothing from nothing, or from a stored value of another shape", () => {
    expect(readStoredScopes(null)).toEqual([])
    expect(readStoredScopes("[{\"scopeType\":2,\"scopeId\":\"x\"}]")).toEqual([])
    expect(readStoredScopes("{}")).toEqual([])
  })
})

describe("the words of a refused send", () => {
  it.prop("name the retry time of a rate limit", { error: Arbitrary.make(RateLimited) }, ({ error }) => {
    const text = sendErrorText(error)
    expect(text).toContain(`Try again in ${error.retryAfterSeconds} second`)
    expect(text).toContain(`at most ${error.limit} in ${error.windowSeconds} s`)
  })

  it.prop(
    "name every offending field and what is wrong with it",
    { error: Arbitrary.make(ValidationError) },
    ({ error }) => {
      const text = sendErrorText(error)
      for (const { field, message } of error.errors) expect(text).toContain(`${field} ${message}`)
    }
  )

  it("say why a write was forbidden, and that a lost connection sent nothing", () => {
    expect(sendErrorText(new Forbidden({ message: "only the two members may write here" }))).toBe(
      "Not sent: you may not write here (only the two members may write here)"
    )
    expect(sendErrorText({ _tag: "RpcClientError" })).toContain("no connection to the server")
  })
})

describe("scope titles", () => {
  const id = fc.string({ minLength: 1, maxLength: 20 })
  it.prop("name a DM by the other member, whichever of the two reads it", { me: id, other: id }, ({ me, other }) => {
    fc.pre(me !== other)
    const ref: ScopeRef = { scopeType: 1, scopeId: directMessageScopeId(me, other) }
    expect(scopeTitle(ref, me)).toBe(`@${other}`)
    expect(scopeTitle(ref, other)).toBe(`@${me}`)
  })

  it("name a channel by its id", () => {
    expect(scopeTitle({ scopeType: 0, scopeId: "general" }, undefined)).toBe("#general")
  })
})
