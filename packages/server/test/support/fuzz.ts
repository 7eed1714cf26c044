import { readFileSync } from "node:fs"
import { FastCheck } from "effect"

/** How many cases a fuzz test runs, and the seed they are generated from. */
export interface FuzzSettings {
  readonly seed: number
  readonly runs: number
}

const positiveIntegerOf = (name: string, text: string | undefined): number | undefined => {
  if (text === undefined || text === "") return undefined
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got ${text}`)
  return value
}

/** FUZZ_RUNS (or the variable named), or `defaultRuns` when it is not set. */
export const requestedRuns = (defaultRuns: number, variable = "FUZZ_RUNS"): number =>
  positiveIntegerOf(variable, process.env[variable]) ?? defaultRuns

/** A test's timeout for `runs` cases at `msPerCase` at most each (never below 10 minutes). */
export const timeoutFor = (runs: number, msPerCase: number): number => Math.max(600_000, runs * msPerCase)

/**
 * FUZZ_SEED (default: from the clock) and FUZZ_RUNS (or `runsVariable`; default `defaultRuns`),
 * printed, so that a failing run is replayed with the same cases:
 * `FUZZ_SEED=<seed> pnpm exec vitest run <file>`.
 */
export const fuzzSettings = (name: string, defaultRuns: number, runsVariable = "FUZZ_RUNS"): FuzzSettings => {
  const seed = positiveIntegerOf("FUZZ_SEED", process.env["FUZZ_SEED"]) ?? Date.now() % 2_147_483_647
  const runs = requestedRuns(defaultRuns, runsVariable)
  console.log(`[fuzz] ${name}: ${runs} cases, seed ${seed} (replay: FUZZ_SEED=${seed} ${runsVariable}=${runs})`)
  return { seed, runs }
}

/**
 * `count` cases of a run from case `from` on, generated from the seed: the same seed and slice
 * give the same cases.
 */
export const casesOf = <A>(
  arbitrary: FastCheck.Arbitrary<A>,
  settings: FuzzSettings,
  from = 0,
  count = settings.runs
) => FastCheck.sample(arbitrary, { seed: settings.seed + from, numRuns: count })

/**
 * Runs `work` on every item, `concurrency` at a time (each worker numbered, so that it may keep a
 * connection of its own); the first failure stops the others' next items.
 */
export const forEachConcurrently = async <A>(
  items: ReadonlyArray<A>,
  concurrency: number,
  work: (item: A, index: number, worker: number) => Promise<void>
): Promise<void> => {
  let next = 0
  let failed = false
  const worker = async (_: unknown, workerIndex: number) => {
    while (!failed && next < items.length) {
      const index = next++
      try {
        await work(items[index] as A, index, workerIndex)
      } catch (error) {
        failed = true
        throw error
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
}

/** The resident set size of process `pid` in MiB, from /proc (Linux). */
export const residentMiB = (pid: number): number => {
  const match = /^VmRSS:\s+(\d+) kB$/mu.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  if (match?.[1] === undefined) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(match[1]) / 1024
}

/** A short, printable form of a case for a failure message. */
export const describeCase = (value: unknown): string => {
  const text = JSON.stringify(
    value,
    (_, v: unknown) =>
      v instanceof Uint8Array ? `<${v.length} bytes: ${Buffer.from(v.subarray(0, 64)).toString("hex")}…>` : v
  )
  return text.length > 600 ? `${text.slice(0, 600)}… (${text.length} characters)` : text
}
