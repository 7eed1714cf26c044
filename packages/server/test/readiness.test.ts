import { describe, expect, it } from "@effect/vitest"
import * as HttpServer from "@effect/platform/HttpServer"
import {
  ConfigProvider,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Fiber,
  Layer,
  Logger,
  LogLevel,
  Option,
  Schedule
} from "effect"
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createConnection, createServer as createNetServer, type Server as NetServer, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach } from "vitest"
import { ConsumerHealth } from "@chatify/core"
import { DependencyUnavailable } from "@chatify/domain"
import { endpoints, ensureService } from "../../adapters/test/support/services.js"
import {
  ChatServer,
  loadServerConfig,
  NodeServer,
  ReadinessChecks,
  type ServerConfig,
  ServerServices,
  ShutdownGate
} from "../src/index.js"
import { defaultLimitSettings } from "../src/Limits.js"
import { awaitReady, makeTempDirectory, startTestServer, testServerConfig } from "../src/testing.js"
import { freePort, startServerProcess } from "./support/serverProcess.js"

const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

interface Ready {
  readonly status: number
  readonly millis: number
  readonly body: {
    readonly status: string
    readonly checks: Record<string, string>
    readonly degraded?: Record<string, string>
    readonly unavailable?: Record<string, string>
  }
}

const probe = async (base: string, path = "/health/ready"): Promise<Ready> => {
  const started = Date.now()
  const response = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(5_000) })
  const body = (await response.json()) as Ready["body"]
  return { status: response.status, millis: Date.now() - started, body }
}
const readyOf = (base: string) => Effect.promise(() => probe(base))

const sendOver = async (base: string, text: string) => {
  const response = await fetch(`${base}/api/chat/send`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ scopeType: 0, scopeId: "general", text }),
    signal: AbortSignal.timeout(5_000)
  })
  return {
    status: response.status,
    type: response.headers.get("content-type"),
    connection: response.headers.get("connection"),
    body: (await response.json()) as { chatEvent?: { text: string } }
  }
}
const send = (base: string, text: string) => Effect.promise(() => sendOver(base, text))

/** Holds `count` sends in flight through `gate`, each started, until the returned effect releases them. */
const holdSends = (gate: ShutdownGate["Type"], count: number) =>
  Effect.gen(function*() {
    const release = yield* Deferred.make<void>()
    let started = 0
    const holding = gate.track(Effect.zipRight(Effect.sync(() => started++), Deferred.await(release)))
    const held = yield* Effect.fork(
      Effect.all(Array.from({ length: count }, () => holding), { concurrency: "unbounded" })
    )
    yield* Effect.yieldNow().pipe(Effect.repeat({ until: () => started === count }))
    return Effect.zipRight(Deferred.succeed(release, undefined), Fiber.join(held))
  })

/** Asks /health/ready until `until` holds (the background checks run once a second). */
const readyUntil = (base: string, until: (ready: Ready) => boolean, within: Duration.DurationInput = "10 seconds") =>
  readyOf(base).pipe(
    Effect.filterOrFail(until, () => "not yet"),
    Effect.retry(Schedule.spaced("100 millis")),
    Effect.timeoutFail({ duration: within, onTimeout: () => new Error("/health/ready never said so") }),
    Effect.orDie
  )

/** Like startTestServer, with the server's services at hand. */
const startWithServices = (overrides: Partial<ServerConfig> = {}) =>
  Effect.gen(function*() {
    const config = testServerConfig(yield* makeTempDirectory(), overrides)
    const context = yield* Layer.build(ChatServer(config).pipe(Layer.provideMerge(NodeServer(config)))).pipe(
      Effect.orDie
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("not on TCP")
    const httpUrl = `http://127.0.0.1:${address.port}`
    yield* awaitReady(httpUrl)
    return { httpUrl, context }
  })

describe("readiness: what a send needs", () => {
  it.scopedLive("registers the log as needed for a send, Redis and the history store as degraded", () =>
    Effect.gen(function*() {
      const dead = yield* Effect.promise(freePort)
      const config = testServerConfig(yield* makeTempDirectory(), {
        caching: Option.some({ connectionString: `127.0.0.1:${dead}` })
      })
      const context = yield* Layer.build(ServerServices(config)).pipe(Effect.orDie)
      const checks = yield* Context.get(context, ReadinessChecks).all
      expect(Object.fromEntries(checks.map(({ impact, name }) => [name, impact]))).toEqual({
        "event-log": "unready",
        "history-store": "degraded",
        redis: "degraded"
      })
    }).pipe(quiet))

  it.scopedLive("with Redis unreachable: 200 and Degraded naming redis and why, within 1 s, and a send goes through", () =>
    Effect.gen(function*() {
      const dead = yield* Effect.promise(freePort)
      const server = yield* startTestServer({
        config: {
          caching: Option.some({ connectionString: `127.0.0.1:${dead}` }),
          rateLimit: { limit: 100, windowSeconds: 60, failOpen: true }
        }
      })
      // once a background check has run against the dead port (they run once a second), the answer
      // comes from its result
      yield* readyOf(server.httpUrl).pipe(
        Effect.repeat({
          schedule: Schedule.spaced("100 millis"),
          until: (ready) => ready.body.checks["redis"] === "unavailable"
        }),
        Effect.timeoutFail({ duration: "15 seconds", onTimeout: () => new Error("redis never reported unavailable") }),
        Effect.orDie
      )
      for (let i = 0; i < 3; i++) {
        const ready = yield* readyOf(server.httpUrl)
        expect(ready.status).toBe(200)
        expect(ready.millis).toBeLessThan(1_000)
        expect(ready.body.status).toBe("Degraded")
        expect(ready.body.checks).toMatchObject({
          redis: "unavailable",
          "event-log": "ok",
          "history-store": "ok",
          shutdown: "no"
        })
        expect(Object.keys(ready.body.degraded ?? {})).toEqual(["redis"])
        expect(ready.body.degraded?.["redis"]).toContain(`127.0.0.1:${dead}`)
        expect(ready.body.unavailable).toBeUndefined()
      }
      const sent = yield* send(server.httpUrl, "redis is down")
      expect(sent.status).toBe(200)
      expect(sent.body.chatEvent?.text).toBe("redis is down")
      // the history writer stored it: SQLite does not need Redis
      const history = yield* Effect.promise(() =>
        fetch(`${server.httpUrl}/api/chat/scopes/0/general/history?limit=5`).then((r) => r.status)
      )
      expect(history).toBe(200)
      expect((yield* readyOf(server.httpUrl)).status).toBe(200)
    }).pipe(quiet))

  it.scopedLive("a failing log check is 503 with the reason; a failing degraded check is 200 Degraded", () =>
    Effect.gen(function*() {
      const { context, httpUrl } = yield* startWithServices()
      expect((yield* readyOf(httpUrl)).body).toMatchObject({
        status: "Healthy",
        checks: { "event-log": "ok", shutdown: "no" }
      })
      const readiness = Context.get(context, ReadinessChecks)
      yield* readiness.register({
        name: "cache",
        impact: "degraded",
        check: Effect.fail(new DependencyUnavailable({ dependency: "cache", message: "cache is away" }))
      })
      const degraded = yield* readyUntil(httpUrl, (ready) => ready.body.degraded !== undefined)
      expect(degraded.status).toBe(200)
      expect(degraded.body).toMatchObject({ status: "Degraded", degraded: { cache: "cache is away" } })

      yield* readiness.register({
        name: "second-log",
        impact: "unready",
        check: Effect.fail(new DependencyUnavailable({ dependency: "second-log", message: "no leader" }))
      })
      const unready = yield* readyUntil(httpUrl, (ready) => ready.status === 503)
      expect(unready.body).toMatchObject({
        status: "Unhealthy",
        checks: { "second-log": "unavailable", cache: "unavailable" },
        unavailable: { "second-log": "no leader" },
        degraded: { cache: "cache is away" }
      })
    }).pipe(quiet))

  it.scopedLive("a slow check counts as unavailable and never holds /health/ready past 1 s", () =>
    Effect.gen(function*() {
      const { context, httpUrl } = yield* startWithServices()
      yield* Context.get(context, ReadinessChecks).register({
        name: "slow-log",
        impact: "unready",
        check: Effect.never
      })
      const ready = yield* readyUntil(httpUrl, (r) => r.status === 503)
      expect(ready.body.unavailable?.["slow-log"]).toMatch(/no answer within/u)
      for (let i = 0; i < 5; i++) expect((yield* readyOf(httpUrl)).millis).toBeLessThan(1_000)
    }).pipe(quiet))

  it.scopedLive("beyond MaxSendsInFlight a send is refused at once with a 503 ProblemDetails; then served again", () =>
    Effect.gen(function*() {
      const { context, httpUrl } = yield* startWithServices({
        limits: { ...defaultLimitSettings, maxSendsInFlight: 1 }
      })
      // the one send this server may have in progress, held open
      const release = yield* holdSends(Context.get(context, ShutdownGate), 1)
      const refused = yield* send(httpUrl, "one too many")
      expect(refused.status).toBe(503)
      expect(refused.type).toContain("application/problem+json")
      // the detail names no internals, as for any unavailable dependency; RPC and SignalR get the message
      expect(refused.body).toMatchObject({
        type: "urn:chatify:problem:dependency-unavailable",
        status: 503,
        detail: "chat-api is unavailable"
      })
      yield* release
      expect((yield* send(httpUrl, "room again")).status).toBe(200)
    }).pipe(quiet))

  it.scopedLive("a pod too busy to ask its dependencies on time still answers /health/ready at once, from the last answers", () =>
    Effect.gen(function*() {
      const { context, httpUrl } = yield* startWithServices()
      // each background round asks this check, which never answers: the round ends after its timeout
      let asked = 0
      yield* Context.get(context, ReadinessChecks).register({
        name: "silent-log",
        impact: "unready",
        check: Effect.suspend(() => {
          asked++
          return Effect.never
        })
      })
      yield* readyUntil(httpUrl, (r) => r.status === 503)
      // right after a round started: it ends within its 0.8 s timeout, the next starts a second later
      const before = asked
      yield* Effect.sync(() => asked > before).pipe(
        Effect.repeat({ schedule: Schedule.spaced("5 millis"), until: (started) => started })
      )
      yield* Effect.sleep("1200 millis")
      // the event loop held for 4 s (a pod at its limit): the last answers are 4 s old when the probe comes
      yield* Effect.sync(() => {
        const until = Date.now() + 4_000
        while (Date.now() < until) {
          // busy
        }
      })
      const ready = yield* readyOf(httpUrl)
      expect(ready.status).toBe(503)
      expect(ready.body.unavailable?.["silent-log"]).toMatch(/no answer within/u)
      // asking the check again here would have held the probe for the check's 0.8 s timeout
      expect(ready.millis).toBeLessThan(500)
    }).pipe(quiet))

  it.scopedLive("a history writer that retries makes the pod Degraded; a broadcast consumer that retries, unready", () =>
    Effect.gen(function*() {
      const { context, httpUrl } = yield* startWithServices()
      const consumers = Context.get(context, ConsumerHealth)
      yield* consumers.report("history-writer", "retrying")
      const degraded = yield* readyOf(httpUrl)
      expect(degraded.status).toBe(200)
      expect(degraded.body).toMatchObject({
        status: "Degraded",
        checks: { "history-writer": "retrying", broadcast: "running" },
        degraded: { "history-writer": "the history-writer consumer is retrying" }
      })
      yield* consumers.report("broadcast", "retrying")
      const unready = yield* readyOf(httpUrl)
      expect(unready.status).toBe(503)
      expect(unready.body.unavailable).toEqual({ broadcast: "the broadcast consumer is retrying" })
      // once started, a consumer starting again is not "still starting up" for /health/startup
      yield* consumers.report("broadcast", "running")
      yield* consumers.report("history-writer", "starting")
      expect((yield* readyOf(httpUrl)).status).toBe(200)
    }).pipe(quiet))
})

/** A TCP proxy to `target` on `port` that can be closed (every connection with it). */
const proxy = (port: number, target: { readonly host: string; readonly port: number }) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: NetServer; readonly sockets: Set<Socket> }>((resume) => {
      const sockets = new Set<Socket>()
      const server = createNetServer((client) => {
        const upstream = createConnection(target)
        for (const socket of [client, upstream]) {
          sockets.add(socket)
          socket.on("close", () => sockets.delete(socket))
          socket.on("error", () => undefined)
        }
        client.pipe(upstream).pipe(client)
      })
      server.listen(port, "127.0.0.1", () => resume(Effect.succeed({ server, sockets })))
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  )

describe("readiness with a real Redis (scripts/services/redis.sh)", () => {
  it.scopedLive(
    "goes Degraded → Healthy when Redis comes, and back to Degraded when it goes",
    () =>
      Effect.gen(function*() {
        yield* Effect.promise(() => ensureService("redis"))
        const [host = "127.0.0.1", redisPort = "6379"] = endpoints.redis.split(":")
        const port = yield* Effect.promise(freePort)
        const server = yield* startTestServer({
          config: { caching: Option.some({ connectionString: `127.0.0.1:${port}` }) }
        })
        const before = yield* readyUntil(server.httpUrl, (ready) => ready.body.status === "Degraded")
        expect(before.status).toBe(200)

        const route = yield* Effect.forkScoped(
          Effect.scoped(Effect.zipRight(proxy(port, { host, port: Number(redisPort) }), Effect.never))
        )
        const healthy = yield* readyUntil(server.httpUrl, (ready) => ready.body.status === "Healthy")
        expect(healthy.status).toBe(200)
        expect(healthy.body.checks["redis"]).toBe("ok")
        expect(healthy.body.degraded).toBeUndefined()
        expect((yield* send(server.httpUrl, "redis is up")).status).toBe(200)

        yield* Fiber.interrupt(route)
        const after = yield* readyUntil(server.httpUrl, (ready) => ready.body.status === "Degraded")
        expect(after.status).toBe(200)
        expect(after.body.degraded?.["redis"]).toBeDefined()
        expect((yield* send(server.httpUrl, "redis is gone again")).status).toBe(200)
      }).pipe(quiet),
    120_000
  )
})

describe("the shutdown gate", () => {
  const gateOf = Effect.provide(ShutdownGate, ShutdownGate.layer)

  it.live("leave: not ready at once, sends still accepted for the delay, then drain refuses them", () =>
    Effect.gen(function*() {
      const gate = yield* gateOf
      expect(yield* gate.phase).toBe("serving")
      const leaving = yield* Effect.fork(gate.leave("300 millis"))
      yield* Effect.sleep("20 millis")
      expect(yield* gate.phase).toBe("leaving")
      expect(yield* gate.track(Effect.succeed("sent"))).toBe("sent")
      expect(leaving.unsafePoll()).toBeNull()
      yield* Fiber.join(leaving)
      yield* gate.drain("1 second")
      expect(yield* gate.phase).toBe("draining")
      expect((yield* Effect.flip(gate.track(Effect.succeed("sent"))))._tag).toBe("DependencyUnavailable")
    }))

  it.live("admits at most maxSendsInFlight sends at once: the next is refused at once (503), a finished one makes room", () =>
    Effect.gen(function*() {
      const gate = yield* Effect.provide(ShutdownGate, ShutdownGate.layerWith(2))
      const release = yield* holdSends(gate, 2)
      const refused = yield* Effect.flip(gate.track(Effect.succeed("third")))
      expect(refused).toMatchObject({ _tag: "DependencyUnavailable", dependency: "chat-api" })
      expect(refused.message).toContain("CHATIFY__LIMITS__MAXSENDSINFLIGHT")
      yield* release
      // a failed send leaves the count as a finished one does
      expect(yield* Effect.flip(gate.track(Effect.fail("rejected")))).toBe("rejected")
      expect(yield* gate.track(Effect.succeed("after"))).toBe("after")
      expect(yield* gate.track(Effect.succeed("and after"))).toBe("and after")
    }))

  it.live("skipDelay ends the delay, before or while it runs", () =>
    Effect.gen(function*() {
      const gate = yield* gateOf
      const started = Date.now()
      const leaving = yield* Effect.fork(gate.leave("30 seconds"))
      yield* Effect.sleep("50 millis")
      yield* gate.skipDelay
      yield* Fiber.join(leaving)
      expect(Date.now() - started).toBeLessThan(2_000)
    }))

  it.live("in a shutdown's finalizer, the delay ends when it should and a stuck send holds the drain no longer than its bound", () =>
    Effect.gen(function*() {
      const gate = yield* gateOf
      yield* Effect.forkDaemon(gate.track(Effect.never))
      yield* Effect.sleep("10 millis")
      const steps: Array<string> = []
      const started = Date.now()
      // a daemon: a shutdown that hangs must fail this test, not hold it
      const server = yield* Effect.forkDaemon(Effect.scoped(Effect.gen(function*() {
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            yield* gate.leave("200 millis")
            steps.push(`left after ${Date.now() - started >= 150 ? "the delay" : "no delay"}`)
            yield* gate.drain("300 millis")
            steps.push("drained")
          })
        )
        return yield* Effect.never
      })))
      yield* Effect.sleep("10 millis")
      // as SIGTERM does: the fiber is interrupted, its finalizers run uninterruptibly
      yield* Fiber.interruptFork(server)
      const ended = yield* Effect.option(Effect.timeout(Fiber.await(server), "3 seconds"))
      expect(Option.isSome(ended)).toBe(true)
      expect(steps).toEqual(["left after the delay", "drained"])
      expect(Date.now() - started).toBeLessThan(1_500)
    }))
})

describe("CHATIFY__SHUTDOWN__DRAINDELAYSECONDS", () => {
  const load = (env: Record<string, string>) =>
    loadServerConfig.pipe(
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)), { pathDelim: "__" }))
    )

  it.effect("defaults to 5 s, takes 0 and fractions, refuses a negative value naming the key", () =>
    Effect.gen(function*() {
      expect(Duration.toMillis((yield* load({})).shutdownDrainDelay)).toBe(5_000)
      expect(Duration.toMillis((yield* load({ CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0" })).shutdownDrainDelay)).toBe(0)
      expect(Duration.toMillis((yield* load({ CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0.5" })).shutdownDrainDelay)).toBe(
        500
      )
      const refused = yield* Effect.either(load({ CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "-1" }))
      expect(Either.isLeft(refused)).toBe(true)
      expect(Either.isLeft(refused) ? refused.left.message : "started").toContain(
        "CHATIFY__SHUTDOWN__DRAINDELAYSECONDS"
      )
    }))
})

// ---- the real process, as ./scripts/start.sh runs it ----

const children: Array<ChildProcess> = []
const directories: Array<string> = []

afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL")
  for (const dir of directories.splice(0)) rmSync(dir, { recursive: true, force: true })
})

const start = (env: Record<string, string>) => {
  const dataDirectory = mkdtempSync(join(tmpdir(), "chatify-readiness-"))
  directories.push(dataDirectory)
  return startServerProcess({ CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory, ...env }, children)
}

const untilReady = async (base: string) => {
  for (let attempt = 0; attempt < 300; attempt++) {
    if ((await probe(base).catch(() => undefined))?.status === 200) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`${base} never became ready`)
}

describe("the server process on SIGTERM", () => {
  it(
    "answers /health/ready 503 at once, keeps serving for the drain delay, then drains and exits cleanly",
    async () => {
      const DELAY_MILLIS = 3_000
      const server = start({
        CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: String(DELAY_MILLIS / 1_000),
        CHATIFY__SHUTDOWN__GRACESECONDS: "5"
      })
      const base = await server.listening
      await untilReady(base)
      const before = await sendOver(base, "before")
      expect(before.status).toBe(200)
      expect(before.connection).not.toBe("close")

      const signalled = Date.now()
      server.child.kill("SIGTERM")
      let ready = await probe(base)
      for (let attempt = 0; attempt < 20 && ready.status === 200; attempt++) ready = await probe(base)
      const notReadyAfter = Date.now() - signalled
      expect(ready.status).toBe(503)
      expect(notReadyAfter).toBeLessThan(500)
      expect(ready.body).toMatchObject({ status: "Unhealthy", checks: { shutdown: "draining" } })
      expect(ready.body.unavailable?.["shutdown"]).toMatch(/stop routing here/u)

      // the delay: liveness and sends as usual, readiness 503 throughout
      for (const text of ["during the delay", "later in the delay"]) {
        const live = await probe(base, "/health/live")
        expect(live.status).toBe(200)
        expect(live.body.status).toBe("Healthy")
        const sent = await sendOver(base, text)
        expect(sent.status).toBe(200)
        expect(sent.body.chatEvent?.text).toBe(text)
        // keep-alive clients reconnect, through the load balancer, to a pod that stays
        expect(sent.connection).toBe("close")
        expect((await probe(base)).status).toBe(503)
        await new Promise((resolve) => setTimeout(resolve, 1_000))
      }
      expect(Date.now() - signalled).toBeLessThan(DELAY_MILLIS)

      expect(await server.exited).toBe(0)
      const exitedAfter = Date.now() - signalled
      expect(exitedAfter).toBeGreaterThanOrEqual(DELAY_MILLIS)
      expect(exitedAfter).toBeLessThan(DELAY_MILLIS + 10_000)
      // the drain started once the delay was over
      const drainStarted = server.seenAt(/Shutting down: draining in-flight sends/u)
      expect(drainStarted).toBeDefined()
      expect((drainStarted ?? 0) - signalled).toBeGreaterThanOrEqual(DELAY_MILLIS - 100)
      expect(server.output()).toContain("Shutting down: /health/ready is 503")
    },
    60_000
  )

  it("skips the drain delay on Ctrl-C (SIGINT): nobody routes to a terminal's server", async () => {
    const server = start({ CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "30" })
    const base = await server.listening
    await untilReady(base)
    const signalled = Date.now()
    server.child.kill("SIGINT")
    expect(await server.exited).toBe(0)
    expect(Date.now() - signalled).toBeLessThan(10_000)
  }, 60_000)
})
