import { Duration, Effect, Schedule, ScheduleDecision, ScheduleIntervals } from "effect"

/**
 * The default backoff between reconnect attempts: exponential from 50 ms, each delay capped at
 * 5 s (union with `spaced` takes the shorter delay), jittered ±20 % so clients that lost the same
 * server do not come back in lockstep. It never gives up; pass your own schedule to bound it.
 */
export const defaultReconnectSchedule: Schedule.Schedule<unknown, unknown> = Schedule.exponential("50 millis", 2).pipe(
  Schedule.union(Schedule.spaced("5 seconds")),
  Schedule.jittered
)

/**
 * Restarts `self` from its initial state when a failure comes at least `quiet` after the previous
 * retry ran: the socket protocol keeps one schedule for the client's whole life, and a connection
 * that stayed up for a while should reconnect as fast as the first time.
 */
export const resetWhenQuiet = <Out, In, R>(
  self: Schedule.Schedule<Out, In, R>,
  quiet: Duration.DurationInput
): Schedule.Schedule<Out, In, R> => {
  const quietMillis = Duration.toMillis(quiet)
  return Schedule.makeWithState<{ readonly inner: unknown; readonly resumedAt: number | undefined }, In, Out, R>(
    { inner: self.initial, resumedAt: undefined },
    (now, input, state) => {
      const fresh = state.resumedAt !== undefined && now - state.resumedAt >= quietMillis
      // the inner schedule's state is `any` in Effect's types: kept as unknown
      const step: Effect.Effect<readonly [unknown, Out, ScheduleDecision.ScheduleDecision], never, R> = self.step(
        now,
        input,
        fresh ? self.initial : state.inner
      )
      return Effect.map(step, ([inner, out, decision]) =>
        [
          {
            inner,
            resumedAt: ScheduleDecision.isContinue(decision) ? ScheduleIntervals.start(decision.intervals) : undefined
          },
          out,
          decision
        ] as const)
    }
  )
}
