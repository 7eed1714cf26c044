import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { serverV8Flags } from "../src/V8Tuning.js"

const PRETENURING = "--no-allocation-site-pretenuring"
const HEAP_GROWING = "--heap-growing-percent=100"

describe("the server's V8 flags", () => {
  it.prop(
    "each default holds unless node was given that flag itself, in any spelling",
    {
      others: fc.array(
        fc.constantFrom(
          "--max-old-space-size=512",
          "--trace-gc",
          "--enable-source-maps",
          "",
          "-r",
          "x.js",
          "--heap-prof"
        )
      ),
      pretenuring: fc.option(
        fc.constantFrom(
          "--allocation-site-pretenuring",
          "--no-allocation-site-pretenuring",
          "--allocation_site_pretenuring",
          "--no-allocation_site_pretenuring"
        ),
        { nil: undefined }
      ),
      heapGrowing: fc.option(
        fc.constantFrom("--heap-growing-percent=30", "--heap_growing_percent=0", "--heap-growing-percent"),
        { nil: undefined }
      )
    },
    ({ heapGrowing, others, pretenuring }) => {
      const flags = [...others, ...[pretenuring, heapGrowing].filter((flag) => flag !== undefined)]
      expect(serverV8Flags(flags)).toEqual([
        ...(pretenuring === undefined ? [PRETENURING] : []),
        ...(heapGrowing === undefined ? [HEAP_GROWING] : [])
      ])
    }
  )

  it("a flag that only starts like one of ours is not taken for it", () => {
    expect(serverV8Flags(["--heap-growing-percentage=5", "--allocation-site-pretenuring-x"])).toEqual([
      PRETENURING,
      HEAP_GROWING
    ])
  })
})
