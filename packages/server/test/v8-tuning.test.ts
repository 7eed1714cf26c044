import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { serverV8Flags } from "../src/V8Tuning.js"

describe("the server's V8 flags", () => {
  it.prop(
    "pretenuring is turned off unless node was given a pretenuring flag of its own, in either spelling",
    {
      others: fc.array(
        fc.constantFrom("--max-old-space-size=512", "--trace-gc", "--enable-source-maps", "", "-r", "x.js")
      ),
      explicit: fc.option(
        fc.constantFrom(
          "--allocation-site-pretenuring",
          "--no-allocation-site-pretenuring",
          "--allocation_site_pretenuring",
          "--no-allocation_site_pretenuring"
        ),
        { nil: undefined }
      )
    },
    ({ explicit, others }) => {
      const flags = explicit === undefined ? others : [...others, explicit]
      expect(serverV8Flags(flags)).toEqual(explicit === undefined ? ["--no-allocation-site-pretenuring"] : [])
    }
  )
})
