import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc, Schema } from "effect"
import { bulkBody, BulkResponse, classifyBulkResults, indexName, indexTemplate } from "../src/logging/index.js"

const prefix = fc.stringMatching(/^[a-z][a-z0-9-]{0,30}$/u)
/** Any instant from 1970 to 9999. */
const timestamp = fc.integer({ min: 0, max: Date.UTC(9999, 11, 31, 23, 59, 59, 999) })
const pendingLine = fc.record({
  id: fc.uuid(),
  index: prefix,
  document: fc.dictionary(fc.string(), fc.jsonValue()).map((value) => JSON.stringify(value))
})

describe("bulk log sink encoding", () => {
  it.prop(
    "the index of a line is {prefix}-{yyyy.MM.dd} of its UTC day",
    { prefix, timestamp },
    ({ prefix, timestamp }) => {
      const day = new Date(timestamp).toISOString().slice(0, 10).replaceAll("-", ".")
      expect(indexName(prefix, timestamp)).toBe(`${prefix}-${day}`)
    }
  )

  it.prop("a _bulk body is a create action with id and index, then the document, one per line", {
    lines: fc.array(pendingLine, { maxLength: 20 })
  }, ({ lines }) => {
    const body = bulkBody(lines)
    expect(body.endsWith("\n") || lines.length === 0).toBe(true)
    const rows = body.split("\n").slice(0, -1)
    expect(rows).toHaveLength(lines.length * 2)
    lines.forEach((line, i) => {
      expect(JSON.parse(rows[2 * i] ?? "")).toEqual({ create: { _index: line.index, _id: line.id } })
      expect(rows[2 * i + 1]).toBe(line.document)
    })
  })

  it.prop(
    "a bulk answer sorts each line: stored (2xx, 409 = stored before), retried (429, 5xx, missing) or refused",
    {
      lines: fc.array(pendingLine, { minLength: 1, maxLength: 30 }),
      statuses: fc.array(fc.constantFrom(200, 201, 409, 400, 404, 429, 500, 503), { maxLength: 30 })
    },
    ({ lines, statuses }) => {
      const response = Schema.decodeUnknownSync(BulkResponse)({
        took: 3,
        errors: true,
        items: statuses.slice(0, lines.length).map((status) => ({ create: { _index: "i", status } }))
      })
      const { refused, retry } = classifyBulkResults(lines, response)
      const expected = lines.map((_, i) => statuses[i])
      expect(retry).toEqual(lines.filter((_, i) => {
        const status = expected[i]
        return status === undefined || status === 429 || status >= 500
      }))
      expect(refused).toBe(expected.filter((status) => status === 400 || status === 404).length)
    }
  )

  it("the index template maps ids as keywords and the timestamp as a date, for the prefix's indices", () => {
    const template = indexTemplate("logs-chatify-chatapi")
    expect(template.index_patterns).toEqual(["logs-chatify-chatapi-*"])
    const properties = template.template.mappings.properties
    expect(properties["@timestamp"].type).toBe("date")
    for (const id of ["correlationId", "traceId", "spanId", "pod", "userId", "messageId"] as const) {
      expect(properties[id].type).toBe("keyword")
    }
  })
})
