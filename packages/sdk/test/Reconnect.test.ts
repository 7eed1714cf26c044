import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Schedule, ScheduleDecision, ScheduleIntervals } from "effect"
import { defaultReconnectSchedule, resetWhenQuiet } from "../src/index.js"

/** Steps a schedule at the given failure times, answering each delay in ms (undefined once done). */
const delaysAt = <Out>(schedule: Schedule.Schedule<Out, unknown>, times: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    let state: unknown = schedule.initial
    const delays: Array<number | undefined> = []
    for (const now of times) {
      // the schedule's state is `any` in Effect's types: held as unknown here
      const step: readonly [unknown, unknown, ScheduleDecision.ScheduleDecision] = yield* schedule.step(
        now,
        undefined,
        state
      )
      const [next, , decision] = step
      state = next
      delays.push(ScheduleDecision.isContinue(decision) ? ScheduleIntervals.start(decision.intervals) - now : undefined)
    }
    return delays
  })

describe("reconnect schedules", () => {
  it.effect("resetWhenQuiet restarts the backoff once a connection stayed up for the quiet period", () =>
    Effect.gen(function*() {
      const schedule = resetWhenQuiet(Schedule.exponential("100 millis", 2), "10 seconds")
      // Failures right after each retry back off; one 20 s after the last retry starts over.
      const delays = yield* delaysAt(schedule, [0, 100, 300, 700, 20_700, 20_800])
      expect(delays).toEqual([100, 200, 400, 800, 100, 200])
    }))

  it.effect("the default backoff grows, is jittered, and is capped per attempt", () =>
    Effect.gen(function*() {
      let now = 0
      const times: Array<number> = []
      const delays: Array<number | undefined> = []
      let state: unknown = defaultReconnectSchedule.initial
      for (let i = 0; i < 20; i++) {
        times.push(now)
        const step: readonly [unknown, unknown, ScheduleDecision.ScheduleDecision] = yield* defaultReconnectSchedule
          .step(now, undefined, state)
        const [next, , decision] = step
        state = next
        const delay = ScheduleDecision.isContinue(decision)
          ? ScheduleIntervals.start(decision.intervals) - now
          : undefined
        delays.push(delay)
        now += delay ?? 0
      }
      expect(delays.every((d) => d !== undefined)).toBe(true)
      const first = delays[0] ?? 0
      expect(first).toBeGreaterThanOrEqual(40)
      expect(first).toBeLessThanOrEqual(60)
      expect(Math.max(...delays.map((d) => d ?? 0))).toBeLessThanOrEqual(Duration.toMillis("6 seconds"))
      expect(delays.at(-1) ?? 0).toBeGreaterThanOrEqual(Duration.toMillis("4 seconds"))
    }))
})
