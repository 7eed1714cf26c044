/**
 * V8 settings for the server process, applied before any other module of main.ts runs. A flag
 * node was given itself (on its command line or in NODE_OPTIONS, in either spelling, with or
 * without `no-`) keeps the operator's choice.
 *
 * Allocation-site pretenuring (off): V8 allocates the objects of a code site straight in the old
 * generation once most of them have been seen to survive. A burst of connections decides that
 * for sites the message path then allocates from at every send, so short-lived per-message
 * objects land in the old generation, where only a full GC (100–200 ms of marking on one busy
 * core with thousands of connections) frees them. Measured under W2 (bench:fanout, 5,000
 * connections, 1,000 sends/s, 2026-12-01): the old generation grew by 3.7–4.2 MB/s with it and by
 * 2.95–3.15 MB/s without, CPU per delivery the same.
 *
 * Heap growing (100 %): after a full GC, the next one comes once the old generation has doubled,
 * where V8's own factor gave ~1.25 here. Each full GC of a server holding thousands of
 * connections is one slow second (150–220 ms of marking on its core); under W2 they came every
 * ~9 s, and with this every ~35 s, for ~20 MB more heap at that load and the same CPU per
 * delivery. V8 still collects before the heap is halfway from its live size to
 * `--max-old-space-size`, so a memory limit holds as before.
 */
import { setFlagsFromString } from "node:v8"

const DEFAULTS: ReadonlyArray<{ readonly name: string; readonly flag: string }> = [
  { name: "allocation-site-pretenuring", flag: "--no-allocation-site-pretenuring" },
  { name: "heap-growing-percent", flag: "--heap-growing-percent=100" }
]

/** The name of a V8 flag as node was given it (`--no-heap_growing-percent=5` → `heap-growing-percent`). */
const flagName = (flag: string): string | undefined => {
  const match = /^--(?:no-)?([a-z0-9_-]+)/.exec(flag)
  return match === null ? undefined : match[1]!.replaceAll("_", "-")
}

/** The V8 flags to set, given node's own flags: none that the operator chose explicitly. */
export const serverV8Flags = (nodeFlags: ReadonlyArray<string>): ReadonlyArray<string> => {
  const given = new Set(nodeFlags.map(flagName))
  return DEFAULTS.filter(({ name }) => !given.has(name)).map(({ flag }) => flag)
}

/** Sets serverV8Flags for this process (see V8TuningApplied.ts, which main.ts imports first). */
export const applyServerV8Flags = (): void => {
  for (const flag of serverV8Flags([...process.execArgv, ...(process.env["NODE_OPTIONS"] ?? "").split(/\s+/)])) {
    setFlagsFromString(flag)
  }
}
