import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Fiber, Layer, Option } from "effect"
import { ChatEventSource, ConsumerHealth } from "@chatify/core"
import { Consumers, ServerServices } from "../src/index.js"
import { testServerConfig } from "../src/testing.js"

const directories: Array<string> = []
afterEach(() => {
  for (const dir of directories.splice(0)) rmSync(dir, { recursive: true, force: true })
})

describe("consumers at startup", () => {
  it.live("the consumers' layer (and so every route built after it) waits until the broadcast consumer runs", () => {
    const dir = mkdtempSync(join(tmpdir(), "chatify-consumers-"))
    directories.push(dir)
    const config = testServerConfig(dir)
    return Effect.gen(function*() {
      const services = yield* Layer.build(ServerServices(config))
      const source = Context.get(services, ChatEventSource)
      // the broadcast consumer's join to the log takes as long as the test says
      const asked = yield* Deferred.make<void>()
      const joined = yield* Deferred.make<void>()
      const slowJoin = ChatEventSource.of({
        ...source,
        consume: (options) =>
          options.groupId.startsWith(config.broker.broadcastConsumerGroupPrefix)
            ? Effect.zipRight(
              Effect.zipRight(Deferred.succeed(asked, undefined), Deferred.await(joined)),
              source.consume(options)
            )
            : source.consume(options)
      })
      const consumers = Consumers(config).pipe(
        Layer.provide(Layer.succeedContext(Context.add(services, ChatEventSource, slowJoin)))
      )
      const built = yield* Effect.forkScoped(Layer.build(consumers))
      yield* Deferred.await(asked).pipe(Effect.timeout("10 seconds"))
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      // the broadcast consumer is joining: nothing may be served yet
      expect(Option.isNone(yield* Fiber.poll(built))).toBe(true)
      expect((yield* Context.get(services, ConsumerHealth).snapshot).get("broadcast")).toBe("starting")

      yield* Deferred.succeed(joined, undefined)
      yield* Fiber.join(built).pipe(Effect.timeout("10 seconds"))
      expect((yield* Context.get(services, ConsumerHealth).snapshot).get("broadcast")).toBe("running")
    }).pipe(Effect.scoped)
  })
})
