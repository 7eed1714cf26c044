import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { acquirePlainRelease, addPlainFinalizer } from "../src/Finalizers.js"

describe("plain finalizers", () => {
  it.effect("release what was acquired when the scope closes, last added first, and nothing of a failed acquire", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const scope = yield* Scope.make()
      const acquired = yield* acquirePlainRelease(
        Effect.sync(() => "a"),
        (value) => Effect.sync(() => void log.push(`release ${value}`))
      ).pipe(Scope.extend(scope))
      yield* addPlainFinalizer(Effect.sync(() => void log.push("finalizer"))).pipe(Scope.extend(scope))
      const failed = yield* acquirePlainRelease(
        Effect.fail("refused"),
        () => Effect.sync(() => void log.push("release of a failed acquire"))
      ).pipe(Scope.extend(scope), Effect.exit)
      expect(acquired).toBe("a")
      expect(Exit.isFailure(failed)).toBe(true)
      expect(log).toEqual([])
      yield* Scope.close(scope, Exit.void)
      expect(log).toEqual(["finalizer", "release a"])
    }))

  it.effect("an acquire is not interrupted halfway: its release is registered once it ran", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const scope = yield* Scope.make()
      const fiber = yield* acquirePlainRelease(
        Effect.zipRight(Effect.yieldNow(), Effect.sync(() => void log.push("acquired"))),
        () => Effect.sync(() => void log.push("released"))
      ).pipe(Scope.extend(scope), Effect.fork)
      yield* Effect.yieldNow()
      yield* fiber.interruptAsFork(fiber.id())
      yield* Effect.exit(fiber.await)
      yield* Scope.close(scope, Exit.void)
      expect(log).toEqual(["acquired", "released"])
    }))
})
