import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, HashMap, Logger } from "effect"
import { CorrelationId, CurrentUser } from "@chatify/core"
import { LogFields, withCallerFields } from "../src/Logging.js"

/** Runs `effect` with a logger that records each line's annotations, wrapped by withCallerFields. */
const annotationsOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const lines: Array<Record<string, unknown>> = []
    const recorder = Logger.make(({ annotations }) => {
      lines.push(Object.fromEntries(HashMap.toEntries(annotations)))
    })
    yield* Effect.provide(effect, Logger.replace(Logger.defaultLogger, withCallerFields(recorder)))
    return lines
  })

describe("log lines carry the caller from the context", () => {
  it.effect("correlation id, user, connection and the call's fields; annotations of the line itself win", () =>
    Effect.gen(function*() {
      const caller = Context.make(CurrentUser, { userId: "alice", connectionId: "c-1", expiresAtMs: undefined }).pipe(
        Context.add(CorrelationId, "corr-1"),
        Context.add(LogFields, { target: "SendAsync", invocationId: "7" })
      )
      const lines = yield* annotationsOf(
        Effect.zipRight(
          Effect.logInfo("inside a call").pipe(Effect.provide(caller)),
          Effect.logInfo("annotated").pipe(Effect.annotateLogs({ correlationId: "explicit" }), Effect.provide(caller))
        )
      )
      expect(lines[0]).toEqual({
        correlationId: "corr-1",
        userId: "alice",
        connectionId: "c-1",
        target: "SendAsync",
        invocationId: "7"
      })
      expect(lines[1]).toMatchObject({ correlationId: "explicit", userId: "alice" })
    }))

  it.effect("outside a call a line is left as it is", () =>
    Effect.gen(function*() {
      const lines = yield* annotationsOf(Effect.logInfo("startup").pipe(Effect.annotateLogs({ podId: "pod-1" })))
      expect(lines).toEqual([{ podId: "pod-1" }])
    }))
})
