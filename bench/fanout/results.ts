// What the Go generator prints (one JSON object per line), decoded with Schema so a change on
// either side fails loudly instead of printing NaNs.
import { Schema } from "effect"

/** Go writes a figure it could not measure (no samples, a process gone) as null. */
const Figure = Schema.NullOr(Schema.Number)

export const SetupLine = Schema.Struct({
  type: Schema.Literal("setup"),
  subscribers: Schema.Number,
  subscribed: Schema.Number,
  publishers: Schema.Number,
  publishersConnected: Schema.Number,
  seconds: Figure,
  firstError: Schema.optional(Schema.String),
  errors: Schema.Number
})
export type SetupLine = typeof SetupLine.Type

export const StepLine = Schema.Struct({
  type: Schema.Literal("step"),
  index: Schema.Number,
  offeredRate: Figure,
  seconds: Figure,
  sent: Schema.Number,
  acked: Schema.Number,
  sendFailed: Schema.Number,
  expected: Schema.Number,
  delivered: Schema.Number,
  deliveredPerSec: Figure,
  lossPct: Figure,
  samples: Schema.Number,
  sampleEvery: Schema.Number,
  p50Ms: Figure,
  p99Ms: Figure,
  maxMs: Figure,
  windowSeconds: Figure,
  serverCpuSeconds: Figure,
  serverCpuPct: Figure,
  serverRss: Schema.Number,
  genCpuPct: Figure,
  otherCpuPct: Figure,
  disconnects: Schema.Number,
  drained: Schema.Boolean,
  quiet: Schema.Boolean,
  firstError: Schema.optional(Schema.String),
  errors: Schema.Number
})
export type StepLine = typeof StepLine.Type

export const IdleLine = Schema.Struct({
  type: Schema.Literal("idle"),
  timedConnections: Schema.Number,
  timedConnected: Schema.Number,
  timedSeconds: Figure,
  connections: Schema.Number,
  connected: Schema.Number,
  serverCpuSeconds: Figure,
  rssBefore: Schema.Number,
  rssAfter: Schema.Number,
  rssPerConnection: Figure,
  genCpuPct: Figure,
  otherCpuPct: Figure,
  disconnects: Schema.Number,
  firstError: Schema.optional(Schema.String),
  errors: Schema.Number
})
export type IdleLine = typeof IdleLine.Type

const DoneLine = Schema.Struct({ type: Schema.Literal("done") })

export const GeneratorLine = Schema.Union(SetupLine, StepLine, IdleLine, DoneLine)
export type GeneratorLine = typeof GeneratorLine.Type

export const decodeGeneratorLine = Schema.decodeUnknownEither(Schema.parseJson(GeneratorLine))

/** The "rest" workload's readings of a server no client is connected to (VmRSS, bytes). */
export interface RestReading {
  readonly rssListening: number
  readonly rssAtRest: number
  readonly lowestRss: number
}

/** Everything one generator run (or the rest workload's readings) against one target produced. */
export interface RunResult {
  readonly setup: SetupLine | undefined
  readonly steps: ReadonlyArray<StepLine>
  readonly idle: IdleLine | undefined
  readonly rest?: RestReading | undefined
  /** Set when the run could not finish: the target crashed, the generator failed, a timeout. */
  readonly error: string | undefined
  /** Warnings and errors the server logged while the generator ran, and the first of them. */
  readonly serverLog: { readonly count: number; readonly first: string | undefined }
}
