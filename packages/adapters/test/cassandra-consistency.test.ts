import { describe, expect, it } from "@effect/vitest"
import { types } from "cassandra-driver"
import { Option } from "effect"
import { Consistency, consistencyName, parseConsistency } from "../src/cassandra/index.js"

describe("Cassandra consistency levels", () => {
  // kept apart from the driver so that reading the configuration does not load it
  it("have the driver's codes", () => {
    expect(Consistency).toEqual(types.consistencies)
  })

  it("are parsed by CQL or driver name and named back", () => {
    for (const [name, code] of Object.entries(types.consistencies)) {
      if (typeof code !== "number") continue
      expect(parseConsistency(name)).toEqual(Option.some(code))
      expect(parseConsistency(consistencyName(code))).toEqual(Option.some(code))
    }
  })
})
