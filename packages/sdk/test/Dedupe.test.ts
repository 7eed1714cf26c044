import { describe, expect, it } from "@effect/vitest"
import { makeMessageIdLru } from "../src/index.js"

describe("MessageIdLru", () => {
  it("reports a repeat only while the id is remembered", () => {
    const lru = makeMessageIdLru(2)
    expect(lru.firstSeen("a")).toBe(true)
    expect(lru.firstSeen("a")).toBe(false)
    expect(lru.firstSeen("b")).toBe(true)
    expect(lru.firstSeen("c")).toBe(true) // evicts "a", the least recently seen
    expect(lru.size()).toBe(2)
    expect(lru.firstSeen("a")).toBe(true)
  })

  it("counts a repeat as a use, so a hot id outlives colder ones", () => {
    const lru = makeMessageIdLru(2)
    lru.firstSeen("a")
    lru.firstSeen("b")
    expect(lru.firstSeen("a")).toBe(false) // "b" is now the least recently seen
    lru.firstSeen("c")
    expect(lru.firstSeen("a")).toBe(false)
    expect(lru.firstSeen("b")).toBe(true)
  })

  it("stays bounded, with at least one slot", () => {
    const lru = makeMessageIdLru(10)
    for (let i = 0; i < 1_000; i++) lru.firstSeen(`id-${i}`)
    expect(lru.size()).toBe(10)
    const tiny = makeMessageIdLru(0)
    expect(tiny.firstSeen("x")).toBe(true)
    expect(tiny.firstSeen("x")).toBe(false)
  })
})
