/**
 * The SignalR connection engine on an in-memory socket with a test clock: keep-alive, client
 * timeout, token expiry and handshake timeout are driven by moving the clock, never by waiting.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import {
  Chunk,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Logger,
  LogLevel,
  Option,
  Queue,
  Ref,
  Runtime,
  Schema,
  type Scope
} from "effect"
import { ChatEventProducer, LocalFanout } from "@chatify/core"
import { ChatEvent, EnrichedChatEvent } from "@chatify/domain"
import { ServerServices, ShutdownGate } from "../src/index.js"
import {
  type ChatHubServices,
  type ConnectionSettings,
  defaultConnectionSettings,
  type Hub,
  type HubClient,
  HubError,
  type InvocationContext,
  hubMethod,
  makeChatHub,
  makeReceiveMessageEncoder,
  SignalRConnection,
  TOKEN_EXPIRED
} from "../src/signalr/index.js"
import { Flusher } from "../src/realtime/Outbox.js"
import { testServerConfig } from "../src/testing.js"

const RS = "\u001e"

/** The texts of the whole server frames (unmasked, FIN) in one write. */
const textFramesOf = (data: Buffer): Array<string> => {
  const texts: Array<string> = []
  let at = 0
  while (at < data.length) {
    let length = data[at + 1]! & 0x7f
    let header = 2
    if (length === 126) {
      length = data.readUInt16BE(at + 2)
      header = 4
    } else if (length === 127) {
      length = Number(data.readBigUInt64BE(at + 2))
      header = 10
    }
    texts.push(data.toString("utf8", at + header, at + header + length))
    at += header + length
  }
  return texts
}
const record = (message: unknown) => JSON.stringify(message) + RS
const HANDSHAKE = record({ protocol: "json", version: 1 })

/** A parsed record, or `{closed: code}` when the server closed the socket. */
type Written = Record<string, unknown>

/** Collects log messages instead of printing them. */
const captureLogs = (lines: Array<string>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ message }) => {
      lines.push(String(Array.isArray(message) ? message[0] : message))
    })
  )

/**
 * A connection whose socket is the test: frames in through `send`, every record written out
 * through `next` (a close of the socket as `{closed: code}`), time moved by `advance`.
 */
const open = (
  options: {
    readonly settings?: Partial<ConnectionSettings>
    readonly expiresAtMs?: number
    /** Where the connection's log messages go; by default only warnings and worse are printed. */
    readonly logged?: Array<string>
    readonly makeHub?: (client: HubClient) => Hub
  } = {}
) =>
  Effect.gen(function*() {
    const written = yield* Queue.unbounded<Written>()
    const ended = yield* Deferred.make<void>()
    const hubBuilt = yield* Ref.make(false)
    const hubReleased = yield* Ref.make(false)
    let writes = 0
    let now = 0
    let socketOpen = true
    const testHub = (client: HubClient): Hub => {
      Effect.runSync(Ref.set(hubBuilt, true))
      const hub: Hub = {
        methods: new Map([
          ["Echo", hubMethod(Schema.Tuple(Schema.String), ([text]) => Effect.succeed(text))],
          ["Add", hubMethod(Schema.Tuple(Schema.Number, Schema.Number), ([a, b]) => Effect.succeed(a + b))],
          ["Void", hubMethod(Schema.Tuple(), () => Effect.void)],
          ["Slow", hubMethod(Schema.Tuple(), () => Effect.never)],
          ["Fail", hubMethod(Schema.Tuple(), () => Effect.fail(new HubError({ message: "Forbidden: not yours" })))],
          ["Boom", hubMethod(Schema.Tuple(), () => Effect.die(new Error("secret internals at db.ts:42")))],
          ["BigInt", hubMethod(Schema.Tuple(), () => Effect.succeed(1n))],
          [
            "Notify",
            hubMethod(
              Schema.Tuple(Schema.String),
              ([text]) => Effect.sync(() => client.send([{ target: "Note", arguments: [text] }]))
            )
          ],
          [
            "WhoAmI",
            hubMethod(
              Schema.Tuple(),
              () => Effect.map(Effect.serviceOption(Invocation), Option.getOrElse(() => "nobody"))
            )
          ]
        ]),
        // what each invocation's fiber starts with
        servicesFor: (context) => Context.make(Invocation, `${context.target}/${context.invocationId ?? "-"}`),
        release: Ref.set(hubReleased, true)
      }
      return hub
    }
    const runtime = yield* Effect.runtime<never>().pipe(
      options.logged === undefined
        ? Logger.withMinimumLogLevel(LogLevel.Warning)
        : (effect) => Effect.provide(effect, captureLogs(options.logged ?? []))
    )
    const runFork = Runtime.runFork(runtime)
    const connection: SignalRConnection = new SignalRConnection({
      transport: {
        write: (data) => {
          writes++
          // one write may hold several frames, and a frame several records: hand them out one by one
          for (const text of textFramesOf(data)) {
            for (const part of text.split(RS).slice(0, -1)) written.unsafeOffer(JSON.parse(part) as Written)
          }
        },
        bufferedAmount: () => 0,
        isOpen: () => socketOpen
      },
      closeSocket: (code) => {
        if (!socketOpen) return
        socketOpen = false
        written.unsafeOffer({ closed: code })
        connection.closed()
      },
      settings: { ...defaultConnectionSettings, ...options.settings },
      flusher: yield* Effect.provide(Flusher, Flusher.layer),
      connectionId: "connection-1",
      expiresAtMs: options.expiresAtMs,
      makeHub: options.makeHub ?? testHub,
      runFork,
      startFiber: (effect, services) => runFork(Effect.provide(effect, services)),
      nowMs: now
    })
    connection.whenClosed(() => Deferred.unsafeDone(ended, Exit.void))
    return {
      send: (data: string | Uint8Array) => Effect.sync(() => connection.receive(data, now)),
      /** Moves the connection's clock on and lets its ticker run, a second at a time. */
      advance: (by: Duration.DurationInput) =>
        Effect.sync(() => {
          const until = now + Duration.toMillis(by)
          while (now < until) {
            now = Math.min(until, now + 1_000)
            connection.tick(now)
          }
        }),
      /** The client drops the socket. */
      disconnect: Effect.sync(() => {
        socketOpen = false
        connection.closed()
      }),
      shutdown: Effect.suspend(() => connection.shutdown()),
      /** Completes once the connection has ended and released its hub. */
      ended: Deferred.await(ended),
      next: Queue.take(written),
      /** The next message that is not a Ping. */
      nextNonPing: Queue.take(written).pipe(
        Effect.repeat({ until: (message) => !("type" in message && message["type"] === 6) })
      ),
      /** What was written so far (after this turn's flush). */
      drained: Effect.zipRight(
        Effect.promise(() => new Promise((resolve) => setImmediate(resolve))),
        Effect.map(Queue.takeAll(written), Chunk.toReadonlyArray)
      ),
      /** Frames written so far. */
      writes: () => writes,
      hubBuilt,
      hubReleased
    }
  })

/** Opens a connection and completes the handshake. */
const connected = (options: Parameters<typeof open>[0] = {}) =>
  Effect.gen(function*() {
    const connection = yield* open(options)
    yield* connection.send(HANDSHAKE)
    expect(yield* connection.next).toEqual({})
    return connection
  })

/** A service the test hub gives each invocation. */
class Invocation extends Context.Tag("test/Invocation")<Invocation, string>() {}

const invocation = (target: string, args: ReadonlyArray<unknown>, invocationId?: string) =>
  record({ type: 1, target, arguments: args, ...(invocationId === undefined ? {} : { invocationId }) })

/**
 * A hub of a pipelined Send and a serial Join, both taking a name and answering with it: each records
 * its start in `started`, and the method `holds` waits for `release` before it answers.
 */
const sendAndJoinHub =
  (started: Queue.Queue<string>, release: Deferred.Deferred<void>, holds: "Send" | "Join") => () => {
    const method = (target: "Send" | "Join") => ([name]: readonly [string]) =>
      Effect.zipRight(
        Queue.offer(started, name),
        target === holds ? Effect.as(Deferred.await(release), name) : Effect.succeed(name)
      )
    const hub: Hub = {
      methods: new Map([
        ["Send", hubMethod(Schema.Tuple(Schema.String), method("Send"), { pipelined: true })],
        ["Join", hubMethod(Schema.Tuple(Schema.String), method("Join"))]
      ]),
      servicesFor: () => Context.empty(),
      release: Effect.void
    }
    return hub
  }

describe("SignalR connection (in-memory socket, test clock)", () => {
  it.effect("handshake, several records in one frame, a record split across frames, UTF-8 split across binary frames", () =>
    Effect.gen(function*() {
      const c = yield* open()
      yield* c.send(HANDSHAKE + record({ type: 6 }) + invocation("Echo", ["a"], "1"))
      expect(yield* c.next).toEqual({})
      expect(yield* c.next).toEqual({ type: 3, invocationId: "1", result: "a" })

      const split = invocation("Echo", ["split"], "2")
      yield* c.send(split.slice(0, 5))
      yield* c.send(split.slice(5, 20))
      yield* c.send(split.slice(20))
      expect(yield* c.next).toEqual({ type: 3, invocationId: "2", result: "split" })

      const bytes = new TextEncoder().encode(invocation("Echo", ["é€😀"], "3"))
      const cut = bytes.indexOf(0xe2) + 1 // inside the 3-byte "€"
      yield* c.send(bytes.slice(0, cut))
      yield* c.send(bytes.slice(cut))
      expect(yield* c.next).toEqual({ type: 3, invocationId: "3", result: "é€😀" })
    }))

  it.effect("non-blocking invocations get no completion; void methods complete without a result; client Completion, StreamItem, Ack are ignored", () =>
    Effect.gen(function*() {
      const c = yield* connected()
      yield* c.send(
        invocation("Echo", ["no id"]) + invocation("Fail", []) + record({ type: 2, invocationId: "x", item: 1 }) +
          record({ type: 3, invocationId: "y", result: 2 }) + record({ type: 8, sequenceId: 1 }) +
          invocation("Notify", ["hello"]) + invocation("Void", [], "v")
      )
      // the only messages: the server-to-client invocation of Notify, then Void's completion
      expect(yield* c.next).toEqual({ type: 1, target: "Note", arguments: ["hello"] })
      expect(yield* c.next).toEqual({ type: 3, invocationId: "v" })
      expect(yield* c.drained).toEqual([])
    }))

  it.effect("failed invocations complete with a clear error and the connection stays usable; defects are logged, not revealed", () =>
    Effect.gen(function*() {
      const logged: Array<string> = []
      const c = yield* connected({ logged })
      const errorOf = (frame: string) =>
        Effect.zipRight(c.send(frame), Effect.map(c.next, (m) => ("error" in m ? m["error"] : m)))
      expect(yield* errorOf(invocation("Nope", [], "1"))).toBe("Unknown hub method 'Nope'.")
      expect(yield* errorOf(invocation("Echo", ["a", "b"], "2"))).toBe(
        "Failed to invoke 'Echo': it takes 1 argument(s), the invocation provides 2."
      )
      expect(yield* errorOf(invocation("Add", [1, "two"], "3"))).toBe(
        "Failed to invoke 'Add': argument 2: Expected number, actual \"two\""
      )
      expect(yield* errorOf(invocation("Fail", [], "4"))).toBe("Forbidden: not yours")
      const boom = yield* errorOf(invocation("Boom", [], "5"))
      expect(boom).toBe("An unexpected error occurred invoking 'Boom' on the server.")
      expect(yield* errorOf(invocation("BigInt", [], "6"))).toBe(
        "An unexpected error occurred invoking 'BigInt' on the server."
      )
      expect(yield* errorOf(record({ type: 4, invocationId: "7", target: "Echo", arguments: ["a"] }))).toBe(
        "'Echo' is not a streaming hub method."
      )
      expect(yield* errorOf(record({ type: 1, invocationId: "8", target: "Echo", arguments: [], streamIds: ["s"] })))
        .toBe(
          "'Echo' does not accept streams from the client."
        )
      yield* c.send(invocation("Echo", ["still here"], "9"))
      expect(yield* c.next).toEqual({ type: 3, invocationId: "9", result: "still here" })
      expect(logged).toContain("A SignalR hub method failed unexpectedly")
      expect(logged).toContain("A hub method returned a result that is not JSON")
    }))

  it.effect("CancelInvocation cancels the running invocation and a queued one; unknown ids are ignored", () =>
    Effect.gen(function*() {
      const c = yield* connected()
      yield* c.send(
        invocation("Slow", [], "slow") + invocation("Echo", ["queued"], "queued") +
          record({ type: 5, invocationId: "unknown" }) + record({ type: 5, invocationId: "queued" }) +
          record({ type: 5, invocationId: "slow" })
      )
      expect(yield* c.next).toEqual({ type: 3, invocationId: "slow", error: "Invocation canceled by the client." })
      expect(yield* c.next).toEqual({ type: 3, invocationId: "queued", error: "Invocation canceled by the client." })
      yield* c.send(invocation("Echo", ["after"], "after"))
      expect(yield* c.next).toEqual({ type: 3, invocationId: "after", result: "after" })
    }))

  it.effect("each invocation runs with the services its hub gives it", () =>
    Effect.gen(function*() {
      const c = yield* connected()
      yield* c.send(invocation("WhoAmI", [], "1") + invocation("WhoAmI", [], "2"))
      expect(yield* c.next).toEqual({ type: 3, invocationId: "1", result: "WhoAmI/1" })
      expect(yield* c.next).toEqual({ type: 3, invocationId: "2", result: "WhoAmI/2" })
    }))

  it.effect("pipelined invocations (sends) start in order without waiting for each other, up to maxPipelinedInvocations; a serial one waits for them and holds what follows", () =>
    Effect.gen(function*() {
      const started = yield* Queue.unbounded<string>()
      const release = yield* Deferred.make<void>()
      const pipelinedHub = sendAndJoinHub(started, release, "Send")
      const c = yield* connected({ makeHub: pipelinedHub, settings: { maxPipelinedInvocations: 2 } })
      yield* c.send(
        ["a", "b", "c"].map((name) => invocation("Send", [name], name)).join("") +
          invocation("Join", ["join"], "join") +
          invocation("Send", ["d"], "d")
      )
      // a and b run together; c waits for room, the Join for all of them, d for the Join
      expect([yield* Queue.take(started), yield* Queue.take(started)]).toEqual(["a", "b"])
      expect(yield* c.drained).toEqual([])
      expect(yield* Queue.size(started)).toBe(0)
      yield* Deferred.succeed(release, undefined)
      const completions = yield* Effect.forEach(["a", "b", "c", "join", "d"], () => c.next)
      expect(completions).toEqual(["a", "b", "c", "join", "d"].map((id) => ({ type: 3, invocationId: id, result: id })))
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(started))).toEqual(["c", "join", "d"])
    }))

  it.effect("a serial invocation that still runs holds the pipelined ones behind it", () =>
    Effect.gen(function*() {
      const started = yield* Queue.unbounded<string>()
      const release = yield* Deferred.make<void>()
      const serialFirstHub = sendAndJoinHub(started, release, "Join")
      const c = yield* connected({ makeHub: serialFirstHub })
      yield* c.send(invocation("Join", ["join"], "join") + invocation("Send", ["a"], "a"))
      expect(yield* Queue.take(started)).toBe("join")
      expect(yield* c.drained).toEqual([])
      expect(yield* Queue.size(started)).toBe(0)
      yield* Deferred.succeed(release, undefined)
      expect(yield* c.next).toEqual({ type: 3, invocationId: "join", result: "join" })
      expect(yield* c.next).toEqual({ type: 3, invocationId: "a", result: "a" })
      expect(yield* Queue.take(started)).toBe("a")
    }))

  it.effect("the server pings every keepAliveInterval", () =>
    Effect.gen(function*() {
      const c = yield* connected()
      yield* c.advance("14 seconds")
      expect(yield* c.drained).toEqual([])
      yield* c.advance("1 second")
      expect(yield* c.next).toEqual({ type: 6 })
      yield* c.send(record({ type: 6 }))
      yield* c.advance("15 seconds")
      expect(yield* c.next).toEqual({ type: 6 })
      expect(yield* c.drained).toEqual([])
    }))

  it.effect("a client silent for clientTimeout is closed with an error; any message resets the timer", () =>
    Effect.gen(function*() {
      const c = yield* connected()
      yield* c.advance("20 seconds")
      yield* c.send(record({ type: 6 }))
      // the ping was handled once a later invocation is answered
      yield* c.send(invocation("Void", [], "sync"))
      expect(yield* c.nextNonPing).toEqual({ type: 3, invocationId: "sync" })
      yield* c.advance("29 seconds") // 49 s: 29 s since the client's last message
      expect((yield* c.drained).every((m) => "type" in m && m["type"] === 6)).toBe(true)
      yield* c.advance("1 second")
      const close = yield* c.nextNonPing
      expect(close).toMatchObject({ type: 7, allowReconnect: true })
      expect(close["error"]).toContain("No message received from the client within 30s")
      expect(yield* c.next).toEqual({ closed: 1000 })
      yield* c.ended
      expect(yield* Ref.get(c.hubReleased)).toBe(true)
    }))

  it.effect("the connection closes when the caller's token expires, saying so", () =>
    Effect.gen(function*() {
      const c = yield* connected({ expiresAtMs: 50_000 })
      yield* c.advance("25 seconds")
      yield* c.send(record({ type: 6 }))
      yield* c.send(invocation("Void", [], "sync"))
      expect(yield* c.nextNonPing).toEqual({ type: 3, invocationId: "sync" })
      yield* c.advance("25 seconds")
      expect(yield* c.nextNonPing).toEqual({ type: 7, error: TOKEN_EXPIRED, allowReconnect: true })
      expect(yield* c.next).toEqual({ closed: 1000 })
    }))

  it.effect("no handshake within handshakeTimeout: a handshake error, then the socket closes", () =>
    Effect.gen(function*() {
      const c = yield* open()
      yield* c.advance("15 seconds")
      expect(yield* c.next).toEqual({ error: "Handshake was not received in time." })
      expect(yield* c.next).toEqual({ closed: 1000 })
      expect(yield* Ref.get(c.hubBuilt)).toBe(false)
    }))

  it.effect("an unsupported protocol gets a handshake error response, then the socket closes", () =>
    Effect.gen(function*() {
      const c = yield* open()
      yield* c.send(record({ protocol: "messagepack", version: 1 }))
      expect(yield* c.next).toEqual({ error: "The protocol 'messagepack' is not supported." })
      expect(yield* c.next).toEqual({ closed: 1000 })
      expect(yield* Ref.get(c.hubBuilt)).toBe(false)
      yield* c.ended
    }))

  it.effect("a malformed message closes the connection with a Close message carrying the error", () =>
    Effect.gen(function*() {
      const c = yield* connected()
      yield* c.send(invocation("Echo", ["before"], "1"))
      expect(yield* c.next).toEqual({ type: 3, invocationId: "1", result: "before" })
      yield* c.send("{not json" + RS + invocation("Echo", ["never"], "2"))
      expect(yield* c.next).toEqual({ type: 7, error: "Invalid message: the message is not valid JSON." })
      expect(yield* c.next).toEqual({ closed: 1000 })
      yield* c.ended
      expect(yield* c.drained).toEqual([])
    }))

  it.effect("a record over maxMessageBytes closes the connection, even before its separator arrives", () =>
    Effect.gen(function*() {
      const c = yield* connected({ settings: { maxMessageBytes: 64 } })
      yield* c.send("x".repeat(40))
      yield* c.send("x".repeat(25))
      expect(yield* c.next).toEqual({
        type: 7,
        error: "Invalid message: a message exceeded the maximum size of 64 bytes."
      })
      expect(yield* c.next).toEqual({ closed: 1000 })
    }))

  it.effect("invalid UTF-8 in a binary frame closes the connection", () =>
    Effect.gen(function*() {
      const c = yield* connected()
      yield* c.send(new Uint8Array([0x7b, 0xff, 0x7d, 0x1e]))
      expect(yield* c.next).toEqual({ type: 7, error: "Invalid message: the frame is not valid UTF-8." })
    }))

  it.effect("a client that floods invocations beyond maxPendingInvocations is closed", () =>
    Effect.gen(function*() {
      const c = yield* connected({ settings: { maxPendingInvocations: 2 } })
      yield* c.send(invocation("Slow", [], "1") + [2, 3, 4].map((i) => invocation("Echo", ["x"], String(i))).join(""))
      expect(yield* c.next).toEqual({ type: 7, error: "Too many pending invocations (more than 2)." })
      expect(yield* c.next).toEqual({ closed: 1000 })
    }))

  it.effect("a client whose waiting invocations hold more than maxPendingBytes is closed; below it they all run", () =>
    Effect.gen(function*() {
      const big = "x".repeat(100)
      // each waiting Echo record is ~150 code units: two fit in 400, a third does not
      const fits = yield* connected({ settings: { maxPendingBytes: 400 } })
      yield* fits.send(invocation("Slow", [], "1") + [2, 3].map((i) => invocation("Echo", [big], String(i))).join(""))
      // the running one canceled, the waiting ones run
      yield* fits.send(record({ type: 5, invocationId: "1" }))
      expect(yield* fits.next).toEqual({ type: 3, invocationId: "1", error: "Invocation canceled by the client." })
      expect(yield* fits.next).toEqual({ type: 3, invocationId: "2", result: big })
      expect(yield* fits.next).toEqual({ type: 3, invocationId: "3", result: big })
      // what ran no longer counts: as many may wait again
      yield* fits.send(invocation("Slow", [], "5") + [6, 7].map((i) => invocation("Echo", [big], String(i))).join(""))
      yield* fits.send(record({ type: 5, invocationId: "5" }))
      expect(yield* fits.next).toEqual({ type: 3, invocationId: "5", error: "Invocation canceled by the client." })
      expect(yield* fits.next).toEqual({ type: 3, invocationId: "6", result: big })
      expect(yield* fits.next).toEqual({ type: 3, invocationId: "7", result: big })

      const floods = yield* connected({ settings: { maxPendingBytes: 400 } })
      yield* floods.send(
        invocation("Slow", [], "1") + [2, 3, 4].map((i) => invocation("Echo", [big], String(i))).join("")
      )
      expect(yield* floods.next).toEqual({ type: 7, error: "Too many pending invocations (more than 400 bytes)." })
      expect(yield* floods.next).toEqual({ closed: 1000 })
    }))

  it.effect("a Close from the client ends the connection without a reply; the hub's resources are released", () =>
    Effect.gen(function*() {
      const c = yield* connected()
      yield* c.send(record({ type: 7 }))
      expect(yield* c.next).toEqual({ closed: 1000 })
      yield* c.ended
      expect(yield* Ref.get(c.hubReleased)).toBe(true)
    }))

  it.effect("a client that drops the socket ends the connection and its hub", () =>
    Effect.gen(function*() {
      const c = yield* connected()
      yield* c.send(invocation("Slow", [], "1"))
      yield* c.disconnect
      yield* c.ended
      expect(yield* Ref.get(c.hubReleased)).toBe(true)
    }))

  it.effect("on server shutdown (interruption) the client is told to reconnect", () =>
    Effect.gen(function*() {
      const c = yield* connected()
      yield* c.shutdown
      expect(yield* c.next).toEqual({ type: 7, error: "The server is shutting down.", allowReconnect: true })
      expect(yield* c.next).toEqual({ closed: 1001 })
      expect(yield* Ref.get(c.hubReleased)).toBe(true)
    }))
})

const directories: Array<string> = []
afterEach(() => {
  for (const dir of directories.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** A hub whose invocations get their services inside (the harness starts them with none). */
const withItsServices = <R>(hub: Hub<R>): Hub => ({
  methods: new Map(Array.from(hub.methods, ([name, method]) => [name, {
    ...method,
    invoke: (args: ReadonlyArray<unknown>, context: InvocationContext) =>
      Effect.provide(method.invoke(args, context), hub.servicesFor(context))
  }])),
  servicesFor: () => Context.empty(),
  release: hub.release
})

describe("ChatHub on the embedded services (in-memory socket)", () => {
  const withHub = (
    test: (
      io: Effect.Effect.Success<ReturnType<typeof open>>
    ) => Effect.Effect<void, unknown, ChatHubServices | Scope.Scope>,
    settings: Partial<ConnectionSettings> = {}
  ) => {
    const dir = mkdtempSync(join(tmpdir(), "chatify-hub-"))
    directories.push(dir)
    const layer = ServerServices(testServerConfig(dir))
    return Effect.gen(function*() {
      const services = yield* Effect.context<ChatHubServices>()
      const gate = yield* ShutdownGate
      const io = yield* open({
        settings,
        makeHub: (client) =>
          withItsServices(
            makeChatHub({
              encodeReceiveMessage: makeReceiveMessageEncoder(),
              gate,
              services,
              maxMemberships: 100
            })({ userId: "alice", connectionId: "c-alice", expiresAtMs: undefined }, client)
          )
      })
      yield* io.send(HANDSHAKE)
      expect(yield* io.next).toEqual({})
      yield* test(io)
    }).pipe(Effect.scoped, Effect.provide(layer), Logger.withMinimumLogLevel(LogLevel.Warning))
  }

  const produce = (text: string) =>
    Effect.gen(function*() {
      const chatEvent = new ChatEvent({
        messageId: crypto.randomUUID(),
        scopeType: 0,
        scopeId: "general",
        senderId: "bob",
        text,
        createdAtUtc: new Date(),
        originPodId: "pod-test"
      })
      const position = yield* (yield* ChatEventProducer).produce(chatEvent)
      return new EnrichedChatEvent({ chatEvent, ...position })
    })

  const textOf = (message: Record<string, unknown>) =>
    message["target"] === "ReceiveMessage" && Array.isArray(message["arguments"])
      ? (message["arguments"][0] as Record<string, unknown>)["text"]
      : message

  it.live("a client that falls more than maxBufferedBytes behind is closed as too slow, with allowReconnect; it leaves the fan-out", () =>
    withHub((io) =>
      Effect.gen(function*() {
        yield* io.send(invocation("JoinScopeAsync", ["general"], "join"))
        expect(yield* io.nextNonPing).toEqual({ type: 3, invocationId: "join" })
        const events = yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => `m${i}`), produce)
        // ten events in one turn, ~250 bytes each, against a 700-byte bound: the first few fit, then it is cut off
        const fanout = yield* LocalFanout
        yield* Effect.forEach(events, (event) => fanout.publish(event), { discard: true })
        const received: Array<unknown> = []
        let close = yield* io.nextNonPing
        while (close["type"] === 1) {
          received.push(textOf(close))
          close = yield* io.nextNonPing
        }
        expect(received.length).toBeGreaterThan(0)
        expect(received.length).toBeLessThan(5)
        expect(received).toEqual(events.slice(0, received.length).map((e) => e.chatEvent.text))
        expect(close).toMatchObject({ type: 7, allowReconnect: true })
        expect(String(close["error"])).toMatch(/^Connection too slow: more than 700 bytes/u)
        expect(yield* io.next).toEqual({ closed: 1000 })
        yield* io.ended
        expect(yield* fanout.subscriberCount).toBe(0)
      }), { maxBufferedBytes: 700 }))

  it.live("deliveries share one write per turn; leaving or closing ends memberships", () =>
    withHub((io) =>
      Effect.gen(function*() {
        const fanout = yield* LocalFanout
        yield* io.send(invocation("JoinScopeAsync", ["general"], "join"))
        expect(yield* io.nextNonPing).toEqual({ type: 3, invocationId: "join" })
        const events = yield* Effect.forEach(["a", "b", "c"], produce)
        yield* Effect.forEach(events, (event) => fanout.publish(event), { discard: true })
        expect(yield* Effect.forEach(events, () => Effect.map(io.nextNonPing, textOf))).toEqual(["a", "b", "c"])
        expect(io.writes()).toBe(3) // handshake response, join completion, one write for the three events
        yield* io.send(invocation("LeaveScopeAsync", ["general"], "leave"))
        expect(yield* io.nextNonPing).toEqual({ type: 3, invocationId: "leave" })
        expect(yield* fanout.subscriberCount).toBe(0)
        yield* fanout.publish(yield* produce("after leaving"))

        // closing the connection ends every membership it holds
        yield* io.send(invocation("JoinScopeAsync", ["general"], "j1") + invocation("JoinScopeAsync", ["random"], "j2"))
        expect(yield* io.nextNonPing).toEqual({ type: 3, invocationId: "j1" })
        expect(yield* io.nextNonPing).toEqual({ type: 3, invocationId: "j2" })
        expect(yield* fanout.subscriberCount).toBe(2)
        yield* io.disconnect
        yield* io.ended
        expect(yield* fanout.subscriberCount).toBe(0)
      })
    ))
})
