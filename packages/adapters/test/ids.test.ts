import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck, Schema, TestClock } from "effect"
import { IdGenerator } from "@chatify/core"
import { makeUuidV4Source, uuidV4, uuidV7, UuidV7IdGenerator } from "../src/memory/index.js"

const isUuid = Schema.is(Schema.UUID)
const timestampOf = (id: string) => Number.parseInt(id.replaceAll("-", "").slice(0, 12), 16)

describe("UUID v7 ids", () => {
  it.prop(
    "are RFC 9562 version 7 UUIDs carrying their millisecond timestamp",
    {
      now: FastCheck.integer({ min: 0, max: 2 ** 48 - 1 }),
      random: FastCheck.uint8Array({ minLength: 10, maxLength: 10 })
    },
    ({ now, random }) => {
      const id = uuidV7(now, random)
      expect(isUuid(id)).toBe(true)
      expect(id[14]).toBe("7")
      expect(["8", "9", "a", "b"]).toContain(id[19])
      expect(timestampOf(id)).toBe(now)
      // the random bits, less the version's and variant's
      const hex = Buffer.from(random).toString("hex")
      const bits = id.replaceAll("-", "").slice(12)
      expect(bits.slice(1, 4)).toBe(hex.slice(1, 4))
      expect(Number.parseInt(bits.slice(4, 6), 16) & 0x3f).toBe(random[2]! & 0x3f)
      expect(bits.slice(6)).toBe(hex.slice(6))
    }
  )

  it.prop(
    "sort by creation time when their milliseconds differ",
    { a: FastCheck.integer({ min: 0, max: 2 ** 47 }), gap: FastCheck.integer({ min: 1, max: 2 ** 40 }) },
    ({ a, gap }) => {
      const bytes = crypto.getRandomValues(new Uint8Array(10))
      expect(uuidV7(a, bytes) < uuidV7(a + gap, bytes.map((b) => 255 - b))).toBe(true)
    }
  )

  it.effect("the IdGenerator layer mints distinct ids from the Clock", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.UTC(2026, 0, 15))
      const ids = yield* IdGenerator
      const minted = yield* Effect.all(Array.from({ length: 1000 }, () => ids.next))
      expect(new Set(minted).size).toBe(1000)
      expect(minted.every((id) => timestampOf(id) === Date.UTC(2026, 0, 15))).toBe(true)
    }).pipe(Effect.provide(UuidV7IdGenerator)))
})

describe("UUID v4 ids", () => {
  it.prop(
    "are RFC 9562 version 4 UUIDs of the given random bytes",
    { random: FastCheck.uint8Array({ minLength: 16, maxLength: 16 }) },
    ({ random }) => {
      const id = uuidV4(random)
      expect(isUuid(id)).toBe(true)
      expect(id[14]).toBe("4")
      expect(["8", "9", "a", "b"]).toContain(id[19])
      const hex = Buffer.from(random).toString("hex")
      const bits = id.replaceAll("-", "")
      expect(bits.slice(0, 12)).toBe(hex.slice(0, 12))
      expect(bits.slice(13, 16)).toBe(hex.slice(13, 16))
      expect(Number.parseInt(bits.slice(16, 18), 16) & 0x3f).toBe(random[8]! & 0x3f)
      expect(bits.slice(18)).toBe(hex.slice(18))
    }
  )

  it("a source mints distinct ids across refills of its pool", () => {
    const next = makeUuidV4Source()
    const ids = Array.from({ length: 5000 }, next)
    expect(new Set(ids).size).toBe(5000)
    expect(ids.every(isUuid)).toBe(true)
  })
})
