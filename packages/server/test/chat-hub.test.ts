/**
 * The chat hub's memberships against the connection's end: a JoinScopeAsync still running when the
 * connection is released (the client went away mid-join) must not leave its subscription behind.
 * The join is held inside `subscribe`, after it joined the fan-out (the log's end offsets are read
 * after that), by a ChatEventSource whose `endOffsets` waits for the test.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Fiber, Logger, LogLevel } from "effect"
import { ChatEventSource, LocalFanout } from "@chatify/core"
import { ServerServices, ShutdownGate } from "../src/index.js"
import { type ChatHubServices, makeChatHub, makeReceiveMessageEncoder } from "../src/signalr/ChatHub.js"
import { testServerConfig } from "../src/testing.js"
import { discardingHubClient } from "./support/hubClient.js"

const directories: Array<string> = []
afterEach(() => {
  for (const dir of directories.splice(0)) rmSync(dir, { recursive: true, force: true })
})

describe("the chat hub", () => {
  it.effect("a join that finishes after the connection was released closes its subscription", () => {
    const dir = mkdtempSync(join(tmpdir(), "chatify-hub-"))
    directories.push(dir)
    return Effect.gen(function*() {
      const reached = yield* Deferred.make<void>()
      const proceed = yield* Deferred.make<void>()
      const services = yield* Effect.context<ChatHubServices>()
      const source = Context.get(services, ChatEventSource)
      const heldSource: ChatEventSource["Type"] = {
        ...source,
        endOffsets: Deferred.succeed(reached, undefined).pipe(
          Effect.zipRight(Deferred.await(proceed)),
          Effect.zipRight(source.endOffsets)
        )
      }
      const fanout = Context.get(services, LocalFanout)
      const principal = { userId: "alice", connectionId: "c-alice", expiresAtMs: undefined }
      const hub = makeChatHub({
        encodeReceiveMessage: makeReceiveMessageEncoder(),
        gate: yield* ShutdownGate,
        services: Context.add(services, ChatEventSource, heldSource),
        maxMemberships: 10
      })(principal, discardingHubClient(principal.connectionId))
      const context = { connectionId: principal.connectionId, target: "JoinScopeAsync", invocationId: "1", headers: {} }
      const joinScope = hub.methods.get("JoinScopeAsync")
      if (joinScope === undefined) return yield* Effect.dieMessage("no JoinScopeAsync")
      const before = yield* fanout.subscriberCount

      const joining = yield* Effect.fork(
        Effect.provide(joinScope.invoke(["general"], context), hub.servicesFor(context))
      )
      yield* Deferred.await(reached)
      // the join is inside subscribe, registered with the fan-out: the connection ends now
      expect(yield* fanout.subscriberCount).toBe(before + 1)
      yield* hub.release
      yield* Deferred.succeed(proceed, undefined)
      yield* Fiber.join(joining)

      expect(yield* fanout.subscriberCount).toBe(before)
    }).pipe(Effect.provide(ServerServices(testServerConfig(dir))), Logger.withMinimumLogLevel(LogLevel.Warning))
  })
})
