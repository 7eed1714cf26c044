import { describe, expect, it } from "@effect/vitest"
import { FastCheck, Option } from "effect"
import { directMessageMembers, directMessageScopeId } from "../src/index.js"

/** User ids made mostly of the characters that could confuse a `dm:{a}:{b}` id: ':' and '%', and some others. */
const userId = FastCheck.string({ unit: FastCheck.constantFrom(..."ab:%3A25 é/"), minLength: 1, maxLength: 8 })

describe("directMessageScopeId", () => {
  it.prop(
    "is the same whoever asks, and its members read back from it, sorted",
    { a: userId, b: userId },
    ({ a, b }) => {
      const id = directMessageScopeId(a, b)
      expect(directMessageScopeId(b, a)).toBe(id)
      expect(directMessageMembers(id)).toEqual(Option.some([a, b].sort()))
    }
  )

  it.prop("two different pairs never share an id (each member is percent-encoded: ':' only separates)", {
    p: FastCheck.tuple(userId, userId),
    q: FastCheck.tuple(userId, userId)
  }, ({ p, q }) => {
    const same = [...p].sort().join("\u0000") === [...q].sort().join("\u0000")
    expect(directMessageScopeId(...p) === directMessageScopeId(...q)).toBe(same)
  })

  it.prop("x:y with z, and x with y:z, are two conversations", { x: userId, y: userId, z: userId }, ({ x, y, z }) => {
    // unencoded, both would read dm:x:y:z whenever the sort keeps their order
    const p = [`${x}:${y}`, z].sort()
    const q = [x, `${y}:${z}`].sort()
    const samePair = p[0] === q[0] && p[1] === q[1]
    expect(directMessageScopeId(`${x}:${y}`, z) === directMessageScopeId(x, `${y}:${z}`)).toBe(samePair)
  })

  it.prop("holds exactly two ':' (the prefix's and the separator), and nothing that decodes differently", {
    a: userId,
    b: userId
  }, ({ a, b }) => {
    const id = directMessageScopeId(a, b)
    expect(id.split(":").length).toBe(3)
    expect(id.slice(3).split(":").map(decodeURIComponent).sort()).toEqual([a, b].sort())
  })

  it("an id in another encoding or order names no conversation", () => {
    expect(directMessageMembers("dm:ann%3Ax:bob")).toEqual(Option.some(["ann:x", "bob"]))
    for (const other of ["dm:ann%3ax:bob", "dm:bob:ann%3Ax", "dm:ann:x:bob", "dm:50%:bob", "dm:%61nn:bob", "dm:ann"]) {
      expect(directMessageMembers(other), other).toEqual(Option.none())
    }
  })
})
