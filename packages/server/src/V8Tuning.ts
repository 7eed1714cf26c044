/**
 * V8 settings for the server process, applied before any other module of main.ts runs.
 *
 * Allocation-site pretenuring: V8 allocates the objects of a code site straight in the old
 * generation once most of them have been seen to survive. A burst of connections decides that
 * for sites the message path then allocates from at every send, so short-lived per-message
 * objects land in the old generation, where only a full GC (100–200 ms of marking on one busy
 * core with thousands of connections) frees them. Measured under W2 (bench:fanout, 5,000
 * connections, 1,000 sends/s, 2026-12-01): the old generation grew by 3.7–4.2 MB/s with it and by
 * 2.95–3.15 MB/s without, CPU per delivery the same. Passing `--allocation-site-pretenuring` to node
 * (on its command line or in NODE_OPTIONS) keeps V8's default.
 */
import { setFlagsFromString } from "node:v8"

/** The V8 flags to set, given node's own flags: none that the operator chose explicitly. */
export const serverV8Flags = (nodeFlags: ReadonlyArray<string>): ReadonlyArray<string> =>
  nodeFlags.some((flag) => /^--(no-)?allocation[-_]site[-_]pretenuring$/.test(flag))
    ? []
    : ["--no-allocation-site-pretenuring"]

/** Sets serverV8Flags for this process (see V8TuningApplied.ts, which main.ts imports first). */
export const applyServerV8Flags = (): void => {
  for (const flag of serverV8Flags([...process.execArgv, ...(process.env["NODE_OPTIONS"] ?? "").split(/\s+/)])) {
    setFlagsFromString(flag)
  }
}
