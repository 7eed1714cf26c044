// What a span wrapper costs per call: a plain function returning an Effect, the same wrapped in
// `Effect.fn(name)` (generator and plain-body forms, with and without stack capture), and wrapped in
// core's `traced(name)` — each with Effect's tracer off (the server without
// CHATIFY__TRACING__OTLPENDPOINT) and on (Effect's own in-memory tracer: a span is made and ended,
// nothing is exported). Prints ns per call and the overhead over the plain call, the median of
// FN_ROUNDS rounds of FN_CALLS calls made one after another in one fiber.
//
//   node --import tsx bench/effect-fn-cost.ts          (FN_CALLS=200000 FN_ROUNDS=7)
import { Effect, Layer } from "effect"
import { traced } from "../packages/core/src/Tracing.js"

const CALLS = Number(process.env["FN_CALLS"] ?? "200000")
const ROUNDS = Number(process.env["FN_ROUNDS"] ?? "7")

// the body of every variant: a small synchronous step, as validate or an id generator is
const body = (n: number) => Effect.succeed(n + 1)

const variants: ReadonlyArray<readonly [string, (n: number) => Effect.Effect<number>]> = [
  ["plain function", body],
  ["traced(name)", traced("Bench.traced")(body)],
  ["Effect.fn(name)(body)", Effect.fn("Bench.fnPlain")(body)],
  [
    "Effect.fn(name)(function*)",
    Effect.fn("Bench.fnGen")(function*(n: number) {
      return yield* body(n)
    })
  ],
  [
    "Effect.fn(name, no stack)(function*)",
    Effect.fn("Bench.fnGenNoStack", { captureStackTrace: false })(function*(n: number) {
      return yield* body(n)
    })
  ]
]

const loop = (f: (n: number) => Effect.Effect<number>) =>
  Effect.gen(function*() {
    let n = 0
    for (let i = 0; i < CALLS; i++) n = yield* f(n)
    return n
  })

const nsPerCall = (f: (n: number) => Effect.Effect<number>, tracerEnabled: boolean): number => {
  const program = loop(f).pipe(Effect.provide(Layer.setTracerEnabled(tracerEnabled)))
  const samples: Array<number> = []
  Effect.runSync(program) // warm-up: JIT and inline caches
  for (let round = 0; round < ROUNDS; round++) {
    const started = process.hrtime.bigint()
    Effect.runSync(program)
    samples.push(Number(process.hrtime.bigint() - started) / CALLS)
  }
  samples.sort((a, b) => a - b)
  return samples[Math.floor(samples.length / 2)]!
}

for (const tracerEnabled of [false, true]) {
  console.log(
    `\nEffect's tracer ${tracerEnabled ? "on (in-memory spans)" : "off"}; ${CALLS} calls × ${ROUNDS} rounds, median`
  )
  const plain = nsPerCall(body, tracerEnabled)
  for (const [name, f] of variants) {
    const ns = f === body ? plain : nsPerCall(f, tracerEnabled)
    console.log(
      `  ${name.padEnd(38)} ${ns.toFixed(0).padStart(6)} ns/call  ${(ns / plain).toFixed(1).padStart(5)}×  ` +
        `overhead ${((ns - plain) / 1000).toFixed(2)} µs`
    )
  }
}
