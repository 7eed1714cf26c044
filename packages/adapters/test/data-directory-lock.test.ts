import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import { lockDataDirectory } from "../src/sqlite/index.js"

const directories: Array<string> = []
afterEach(() => {
  for (const dir of directories.splice(0)) rmSync(dir, { recursive: true, force: true })
})
const freshDirectory = () => {
  const dir = mkdtempSync(join(tmpdir(), "chatify-lock-"))
  directories.push(dir)
  return dir
}

describe("the data directory lock", () => {
  it.effect("is held until its scope closes; meanwhile a second holder is refused, naming the first", () =>
    Effect.gen(function*() {
      const dir = freshDirectory()
      const first = yield* Scope.make()
      yield* lockDataDirectory(dir).pipe(Scope.extend(first))

      const refused = yield* Effect.scoped(lockDataDirectory(dir)).pipe(
        Effect.match({ onFailure: (error) => error, onSuccess: () => "locked twice" as const })
      )
      if (refused === "locked twice" || refused._tag !== "DataDirectoryLocked") {
        return expect.fail(`not refused: ${String(refused)}`)
      }
      expect(refused.directory).toBe(dir)
      expect(Option.getOrElse(refused.holder, () => "")).toMatch(new RegExp(`^pid ${process.pid} on .+ since `, "u"))
      expect(refused.message).toContain(`${dir} is in use by another Chatify process (pid ${process.pid} `)

      // another spelling of the directory is the same file, so the same lock
      const again = yield* Effect.scoped(lockDataDirectory(`${dir}/./`)).pipe(
        Effect.match({ onFailure: (error) => error._tag, onSuccess: () => "locked twice" })
      )
      expect(again).toBe("DataDirectoryLocked")

      yield* Scope.close(first, Exit.void)
      yield* Effect.scoped(lockDataDirectory(dir))
    }))

  it.effect("creates the directory and fails typed when it cannot", () =>
    Effect.gen(function*() {
      const dir = join(freshDirectory(), "a", "b")
      yield* Effect.scoped(lockDataDirectory(dir))
      // a regular file where a directory should be
      const error = yield* Effect.flip(Effect.scoped(lockDataDirectory(join(dir, "chatify.lock", "below"))))
      expect(error._tag).toBe("DependencyUnavailable")
    }))
})
