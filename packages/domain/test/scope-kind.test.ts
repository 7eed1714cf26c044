/**
 * Issue 15, item 6: a channel id never passes for a direct message, and a DM id in another order
 * or encoding is refused naming the canonical one, on every path through the policy (validateSend
 * for sends, validateScope for subscribe, history and presence).
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck, Option } from "effect"
import {
  canonicalDirectMessageScopeId,
  defaultPolicyLimits,
  directMessageScopeId,
  type ScopeRef,
  validateScope,
  validateSend
} from "../src/index.js"

const send = (scope: ScopeRef) =>
  validateSend(defaultPolicyLimits, { senderId: "alice", originPodId: "pod-a", text: "hi", ...scope })

/** The one error of a refused scope, from both entry points (they must agree). */
const refusal = (scope: ScopeRef) => {
  const viaSend = send(scope)
  const viaScope = validateScope(defaultPolicyLimits, scope)
  if (Either.isRight(viaSend) || Either.isRight(viaScope)) throw new Error(`${JSON.stringify(scope)} was accepted`)
  expect(viaSend.left.errors).toEqual(viaScope.left.errors)
  expect(viaSend.left.errors.map((e) => e.field)).toEqual(["scopeId"])
  return viaSend.left.errors[0].message
}

describe("scope kinds: channels and direct messages", () => {
  it("refuses a channel whose id looks like a direct-message id, in any letter case", () => {
    for (const scopeId of ["dm:alice:bob", "dm:bob:alice", "DM:alice:bob", "Dm:x", "dm:"]) {
      expect(refusal({ scopeType: 0, scopeId }), scopeId).toBe(
        "must not start with \"dm:\" for a channel (scopeType 0): that prefix is reserved for direct messages (scopeType 1)"
      )
    }
    // a "dm" elsewhere in a channel id is fine
    for (const scopeId of ["general", "admin:dm:x", "dm-lovers", " dm:x"]) {
      expect(Either.isRight(validateScope(defaultPolicyLimits, { scopeType: 0, scopeId })), scopeId).toBe(true)
    }
  })

  it("refuses a direct-message id that is not canonical, naming the canonical one", () => {
    expect(refusal({ scopeType: 1, scopeId: "dm:bob:alice" })).toBe(
      "must be the canonical direct-message id \"dm:alice:bob\" (the two members sorted, each percent-encoded; see directMessageScopeId)"
    )
    // the same members under another percent-encoding
    expect(refusal({ scopeType: 1, scopeId: "dm:%61lice:bob" })).toContain("\"dm:alice:bob\"")
    const canonical = directMessageScopeId("zoë", "a:b")
    expect(refusal({ scopeType: 1, scopeId: `dm:${encodeURIComponent("zoë")}:${encodeURIComponent("a:b")}` }))
      .toContain(
        JSON.stringify(canonical)
      )
    for (const scopeId of ["dm:alice", "dm:a:b:c", "dm:%E0%A4%A:bob"]) {
      expect(refusal({ scopeType: 1, scopeId }), scopeId).toBe(
        "must be a direct-message id \"dm:{member}:{member}\" (each member percent-encoded)"
      )
    }
  })

  it("accepts canonical DM ids and leaves other scopeType 1 ids to the ScopeAuthorizer", () => {
    for (const scopeId of [directMessageScopeId("bob", "alice"), directMessageScopeId("zoë", "a:b"), "not-a-dm"]) {
      expect(Either.isRight(send({ scopeType: 1, scopeId })), scopeId).toBe(true)
      expect(Either.isRight(validateScope(defaultPolicyLimits, { scopeType: 1, scopeId })), scopeId).toBe(true)
    }
  })

  it("canonicalDirectMessageScopeId sorts and re-encodes the members", () => {
    expect(canonicalDirectMessageScopeId("dm:bob:alice")).toEqual(Option.some("dm:alice:bob"))
    expect(canonicalDirectMessageScopeId("dm:alice:bob")).toEqual(Option.some("dm:alice:bob"))
    expect(canonicalDirectMessageScopeId("general")).toEqual(Option.none())
    expect(canonicalDirectMessageScopeId("dm:a:b:c")).toEqual(Option.none())
  })
})

/** User ids made mostly of what could confuse a `dm:{a}:{b}` id (':' and '%'), and some others. */
const member = FastCheck.string({ unit: FastCheck.constantFrom(..."ab:%3A25é/"), minLength: 1, maxLength: 8 })

/**
 * `value` percent-encoded another way that decodes to the same: each character either as
 * encodeURIComponent writes it or as its UTF-8 bytes, in upper- or lower-case hex.
 */
const encodedSomehow = (value: string) =>
  FastCheck.array(FastCheck.constantFrom("component", "BYTES", "bytes"), {
    minLength: [...value].length,
    maxLength: [...value].length
  }).map((ways) =>
    [...value].map((character, index) => {
      const way = ways[index]
      if (way === "component") return encodeURIComponent(character)
      const bytes = [...new TextEncoder().encode(character)].map((byte) => `%${byte.toString(16).padStart(2, "0")}`)
        .join("")
      return way === "BYTES" ? bytes.toUpperCase() : bytes
    }).join("")
  )

/** Two members and a `dm:` id naming them in either order, each encoded somehow. */
const namedPair = FastCheck.tuple(member, member).chain(([a, b]) =>
  FastCheck.record({ first: encodedSomehow(a), second: encodedSomehow(b), swap: FastCheck.boolean() }).map((
    { first, second, swap }
  ) => ({ a, b, scopeId: `dm:${swap ? `${second}:${first}` : `${first}:${second}`}` }))
)

describe("scope kinds, for any ids", () => {
  it.prop("a DM id naming two members is accepted exactly when canonical, else refused naming the canonical one", {
    pair: namedPair
  }, ({ pair: { a, b, scopeId } }) => {
    const canonical = directMessageScopeId(a, b)
    expect(canonicalDirectMessageScopeId(scopeId)).toEqual(Option.some(canonical))
    if (scopeId === canonical) {
      expect(Either.isRight(validateScope(defaultPolicyLimits, { scopeType: 1, scopeId }))).toBe(true)
      expect(Either.isRight(send({ scopeType: 1, scopeId }))).toBe(true)
    } else {
      expect(refusal({ scopeType: 1, scopeId })).toContain(`canonical direct-message id ${JSON.stringify(canonical)}`)
    }
  })

  it.prop("no channel id that starts with dm:, in any case, is accepted", {
    prefix: FastCheck.constantFrom("dm:", "DM:", "Dm:", "dM:"),
    rest: FastCheck.string({ maxLength: 20 })
  }, ({ prefix, rest }) => {
    const scopeId = `${prefix}${rest}`
    expect(Either.isLeft(validateScope(defaultPolicyLimits, { scopeType: 0, scopeId })), scopeId).toBe(true)
    expect(Either.isLeft(send({ scopeType: 0, scopeId })), scopeId).toBe(true)
  })

  it.prop("a channel id without that prefix is never refused for looking like a DM", {
    scopeId: FastCheck.oneof(
      FastCheck.string({ unit: FastCheck.constantFrom(..."dDmM: x"), maxLength: 12 }),
      FastCheck.string({ maxLength: 20 })
    ).filter((id) => !/^dm:/iu.test(id))
  }, ({ scopeId }) => {
    const refused = validateScope(defaultPolicyLimits, { scopeType: 0, scopeId })
    if (Either.isLeft(refused)) {
      for (const error of refused.left.errors) expect(error.message).not.toContain("dm:")
    }
  })
})
