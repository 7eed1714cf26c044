import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { NdjsonLines, type NdjsonRead } from "../src/realtime/NdjsonLines.js"

const valuesOf = (reads: ReadonlyArray<NdjsonRead>) =>
  reads.flatMap((read) => (read._tag === "Lines" ? read.values : [read._tag]))

/** `text` cut at the given points (taken modulo its length). */
const cut = (text: string, points: ReadonlyArray<number>): Array<string> => {
  const at = [...new Set(points.map((point) => point % (text.length + 1)))].sort((a, b) => a - b)
  return [...at, text.length].map((end, i) => text.slice(i === 0 ? 0 : at[i - 1], end))
}

describe("NdjsonLines", () => {
  it.prop(
    "reads every line once, in order, however the text is cut into frames",
    { values: FastCheck.array(FastCheck.jsonValue(), { maxLength: 20 }), points: FastCheck.array(FastCheck.nat()) },
    ({ points, values }) => {
      const lines = new NdjsonLines(1_000_000)
      const text = values.map((value) => `${JSON.stringify(value)}\n`).join("")
      const read = valuesOf(cut(text, points).map((frame) => lines.read(frame)))
      // JSON has no -0: what a client sends is what JSON.parse makes of it
      expect(read).toStrictEqual(values.map((value): unknown => JSON.parse(JSON.stringify(value))))
      expect(lines.midLine).toBe(false)
    }
  )

  it.prop(
    "holds the start of a line until its newline comes",
    { value: FastCheck.jsonValue(), at: FastCheck.nat() },
    ({ at, value }) => {
      const line = JSON.stringify(value)
      const split = 1 + (at % line.length)
      const lines = new NdjsonLines(1_000_000)
      expect(lines.read(line.slice(0, split))).toStrictEqual({ _tag: "Lines", values: [] })
      expect(lines.midLine).toBe(true)
      expect(valuesOf([lines.read(`${line.slice(split)}\n`)])).toStrictEqual([JSON.parse(line)])
    }
  )

  it.prop(
    "refuses a line longer than the bound, whole or in pieces, and starts over after it",
    { extra: FastCheck.integer({ min: 1, max: 50 }), pieces: FastCheck.integer({ min: 1, max: 5 }) },
    ({ extra, pieces }) => {
      const lines = new NdjsonLines(64)
      const long = `"${"x".repeat(64 + extra)}"`
      const frames = cut(long, Array.from({ length: pieces }, (_, i) => Math.floor((long.length * i) / pieces)))
      // the server closes the connection at the first refusal: nothing is read after it
      let refused = false
      for (const frame of frames) {
        if (lines.read(frame)._tag === "TooLong") {
          refused = true
          break
        }
      }
      expect(refused).toBe(true)
      expect(new NdjsonLines(64).read(`${long}\n`)._tag).toBe("TooLong")
      expect(lines.midLine).toBe(false)
      expect(lines.read("{\"ok\":1}\n")).toStrictEqual({ _tag: "Lines", values: [{ ok: 1 }] })
    }
  )

  it.prop(
    "names a line that is not JSON, and keeps nothing of it",
    { junk: FastCheck.string({ minLength: 1 }).filter((text) => !text.includes("\n")) },
    ({ junk }) => {
      let json = true
      try {
        JSON.parse(junk)
      } catch {
        json = false
      }
      FastCheck.pre(!json)
      const lines = new NdjsonLines(1_000)
      expect(lines.read(`1\n${junk}\n2\n`)._tag).toBe("NotJson")
      expect(lines.midLine).toBe(false)
    }
  )
})
