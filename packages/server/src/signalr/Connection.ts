/**
 * One SignalR connection over an upgraded WebSocket: handshake, framing, keep-alive, client
 * timeout, credential expiry and hub invocations. Hub-agnostic: the methods come from `makeHub`.
 *
 * A connection is a small state machine driven by its socket's events and by a pod-wide ticker,
 * not a set of fibers: an idle connection costs its socket and a few fields. Only an invocation
 * runs as a fiber, while it runs.
 */
import { Cause, type Context, Data, Duration, Effect, Either, Exit, type Fiber, ParseResult, type Schema } from "effect"
import { onExit } from "../realtime/Fibers.js"
import { type Flusher, Outbox, type Transport } from "../realtime/Outbox.js"
import * as Protocol from "./Protocol.js"

export interface ConnectionSettings {
  /** The largest record (one message) a client may send, in UTF-8 bytes. */
  readonly maxMessageBytes: number
  /** The server sends a Ping this often. */
  readonly keepAliveInterval: Duration.Duration
  /** A connection that sends nothing (not even a Ping) for this long is closed. */
  readonly clientTimeout: Duration.Duration
  /** How long a client has to send its handshake request after the upgrade. */
  readonly handshakeTimeout: Duration.Duration
  /** Invocations waiting behind the running ones; more and the client floods us: it is closed. */
  readonly maxPendingInvocations: number
  /** The bytes (UTF-16 code units of their records) those invocations may hold; more closes it too. */
  readonly maxPendingBytes: number
  /**
   * How many pipelined invocations (sends) of one client may run at once. Other methods run one at
   * a time, as in ASP.NET Core SignalR (MaximumParallelInvocationsPerClient = 1).
   */
  readonly maxPipelinedInvocations: number
  /** How far (bytes) a client may fall behind on deliveries before it is closed as too slow. */
  readonly maxBufferedBytes: number
}

/** ASP.NET Core SignalR's defaults, except the message size (theirs is 32 KiB). */
export const defaultConnectionSettings: ConnectionSettings = {
  maxMessageBytes: 1024 * 1024,
  keepAliveInterval: Duration.seconds(15),
  clientTimeout: Duration.seconds(30),
  handshakeTimeout: Duration.seconds(15),
  maxPendingInvocations: 1024,
  maxPendingBytes: 1024 * 1024,
  maxPipelinedInvocations: 64,
  maxBufferedBytes: 4 * 1024 * 1024
}

/** A failed invocation as the client sees it: `message` becomes the Completion's `error`. */
export class HubError extends Data.TaggedError("HubError")<{ readonly message: string }> {}

export interface InvocationContext {
  /** For the hub's log annotations: the connection does not annotate its invocations itself. */
  readonly connectionId: string
  readonly target: string
  readonly invocationId: string | undefined
  readonly headers: Readonly<Record<string, string>>
}

export interface HubMethod<R = never> {
  readonly invoke: (args: ReadonlyArray<unknown>, context: InvocationContext) => Effect.Effect<unknown, HubError, R>
  /**
   * May start while earlier pipelined invocations of the same client still run. Only for a method
   * whose effects take their order when it starts: one that does nothing asynchronous before the
   * step that orders it (a send: validate, rate limit, then append to the log), so invocations
   * started in order take effect in order. Without it, a client's invocations run one at a time.
   */
  readonly pipelined?: boolean
}

/** `undefined` completes without a result (a `Task` hub method in .NET terms). */
export type HubResult = unknown

/** A hub method's result that is JSON text already: written into the Completion as it is. */
export class JsonResult {
  constructor(readonly json: string) {}
}

/**
 * A hub method whose parameters are a Schema tuple: the argument count and every argument are
 * checked before `run` sees them, and a mismatch becomes a Completion error naming the argument.
 */
export const hubMethod = <A extends ReadonlyArray<unknown>, I, R = never>(
  parameters: Schema.Schema<A, I, never> & { readonly elements: ReadonlyArray<unknown> },
  run: (args: A, context: InvocationContext) => Effect.Effect<HubResult, HubError, R>,
  options?: { readonly pipelined?: boolean }
): HubMethod<R> => {
  const decode = argumentsDecoderOf(parameters)
  const arity = parameters.elements.length
  return {
    pipelined: options?.pipelined === true,
    invoke: (args, context) => {
      if (args.length !== arity) {
        return Effect.fail(
          new HubError({
            message:
              `Failed to invoke '${context.target}': it takes ${arity} argument(s), the invocation provides ${args.length}.`
          })
        )
      }
      return Either.match(decode(args), {
        onLeft: (problem) => Effect.fail(new HubError({ message: `Failed to invoke '${context.target}': ${problem}` })),
        onRight: (decoded) => run(decoded, context)
      })
    }
  }
}

/** The settings' timers in milliseconds, computed once per settings: every connection's tick reads them. */
const timersBySettings = new WeakMap<ConnectionSettings, {
  readonly handshakeTimeoutMs: number
  readonly clientTimeoutMs: number
  readonly keepAliveIntervalMs: number
}>()
const timersOf = (settings: ConnectionSettings) => {
  let timers = timersBySettings.get(settings)
  if (timers === undefined) {
    timers = {
      handshakeTimeoutMs: Duration.toMillis(settings.handshakeTimeout),
      clientTimeoutMs: Duration.toMillis(settings.clientTimeout),
      keepAliveIntervalMs: Duration.toMillis(settings.keepAliveInterval)
    }
    timersBySettings.set(settings, timers)
  }
  return timers
}

/** Hubs are built per connection: each parameter schema is compiled once, not once per connection. */
const compiledDecoders = new WeakMap<object, (args: ReadonlyArray<unknown>) => Either.Either<unknown, string>>()
const argumentsDecoderOf = <A, I>(schema: Schema.Schema<A, I, never>) => {
  const compiled = compiledDecoders.get(schema)
  if (compiled !== undefined) return compiled as (args: ReadonlyArray<unknown>) => Either.Either<A, string>
  const decoder = argumentsDecoder(schema)
  compiledDecoders.set(schema, decoder)
  return decoder
}

const argumentsDecoder = <A, I>(schema: Schema.Schema<A, I, never>) => {
  const decode = ParseResult.decodeUnknownEither(schema)
  return (args: ReadonlyArray<unknown>): Either.Either<A, string> =>
    Either.mapLeft(decode(args), (error) => {
      const [first] = ParseResult.ArrayFormatter.formatIssueSync(error)
      if (first === undefined) return "the arguments do not match its parameters."
      const [index, ...path] = first.path
      const where = typeof index === "number" ? `argument ${index + 1}` : "arguments"
      return `${where}${path.length === 0 ? "" : ` (${path.map(String).join(".")})`}: ${first.message}`
    })
}

export interface ClientInvocation {
  readonly target: string
  readonly arguments: ReadonlyArray<unknown>
}

/** What a hub may do to its connection. */
export interface HubClient {
  readonly connectionId: string
  /**
   * The connection's outbound queue, for deliveries straight from the fan-out: records written
   * here go out in one frame per event-loop turn. Check `hasRoom()` before delivering.
   */
  readonly outbox: Outbox
  /** Invokes client methods (no result expected), all in one frame. */
  readonly send: (invocations: ReadonlyArray<ClientInvocation>) => void
  /** Ends the connection with a Close message. */
  readonly close: (options: { readonly error?: string; readonly allowReconnect?: boolean }) => void
}

export interface Hub<R = never> {
  readonly methods: ReadonlyMap<string, HubMethod<R>>
  /** The services an invocation runs with (its caller's): its fiber starts with them. */
  readonly servicesFor: (context: InvocationContext) => Context.Context<R>
  /** Releases what the hub holds for its connection (its memberships), once the connection ended. */
  readonly release: Effect.Effect<void>
}

/** Runs an effect as a fiber of the server (its logger, its services). */
export type RunFork = <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>

/** Runs an effect as a fiber of the server with the given services as its context. */
export type StartFiber = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  services: Context.Context<R>
) => Fiber.RuntimeFiber<A, E>

export interface ConnectionOptions<R> {
  /** Where the connection's frames go. */
  readonly transport: Transport
  /** Closes the socket with a close code (the socket's `close` event then calls `closed()`). */
  readonly closeSocket: (code: number) => void
  readonly settings: ConnectionSettings
  readonly flusher: Flusher["Type"]
  readonly connectionId: string
  /** When the caller's credentials expire (epoch ms): the connection is closed then. */
  readonly expiresAtMs: number | undefined
  /** Builds the hub once the handshake succeeded; its resources live as long as the connection. */
  /**
   * Builds the hub once the handshake succeeded, synchronously: a fiber and a Scope per connection
   * for this cost more than the hub itself. Its `release` runs when the connection ends.
   */
  readonly makeHub: (client: HubClient) => Hub<R>
  readonly runFork: RunFork
  /** Starts invocations, with the services the hub gives each. */
  readonly startFiber: StartFiber
  /** The time now, epoch ms (the connection's timers are checked on `tick`). */
  readonly nowMs: number
}

interface Running {
  readonly invocationId: string | undefined
  readonly pipelined: boolean
  readonly fiber: Fiber.RuntimeFiber<unknown, HubError>
}

const CANCELED = "Invocation canceled by the client."

const unexpectedError = (target: string) => `An unexpected error occurred invoking '${target}' on the server.`

/** The access token ran out: the client may reconnect with a fresh one. */
export const TOKEN_EXPIRED = "Unauthenticated: the access token expired"

const SHUTTING_DOWN = Protocol.closeRecord({ error: "The server is shutting down.", allowReconnect: true })

/**
 * Serves the SignalR JSON hub protocol on one socket. Never throws: bad input closes this
 * connection with a Close message, defects are logged and close it too.
 */
export class SignalRConnection<R = never> {
  private readonly outbox: Outbox
  private readonly client: HubClient
  /** For binary frames only (browsers' clients send text): made on the first one. */
  private decoder: InstanceType<typeof TextDecoder> | undefined
  private framer = Protocol.emptyFramer
  private state: "handshake" | "open" | "closing" | "closed" = "handshake"
  private hub: Hub<R> | undefined
  private readonly invocations: Array<Protocol.InvocationMessage> = []
  /** The size of each queued invocation's record, in queue order, and their sum. */
  private readonly invocationSizes: Array<number> = []
  private pendingBytes = 0
  private readonly queuedIds = new Set<string>()
  /** Made at the first CancelInvocation: few clients ever send one. */
  private canceledIds: Set<string> | undefined
  /** In start order; more than one only while they are all pipelined. */
  private readonly running = new Set<Running>()
  private readonly openedAtMs: number
  private lastReceivedAtMs: number
  private lastPingAtMs: number
  private readonly onClosed: Array<() => void> = []

  constructor(private readonly options: ConnectionOptions<R>) {
    this.openedAtMs = options.nowMs
    this.lastReceivedAtMs = options.nowMs
    this.lastPingAtMs = options.nowMs
    this.outbox = new Outbox(options.transport, options.flusher, options.settings.maxBufferedBytes)
    this.client = {
      connectionId: options.connectionId,
      outbox: this.outbox,
      send: (messages) => {
        let unencodable = 0
        for (const { arguments: args, target } of messages) {
          const record = Protocol.writeMessage({ type: Protocol.MessageType.Invocation, target, arguments: args })
          if (Either.isRight(record)) this.outbox.write(record.right)
          else unencodable++
        }
        if (unencodable > 0) {
          this.log(Effect.logError("Could not encode client invocations; they were dropped", unencodable))
        }
      },
      close: ({ allowReconnect, error }) => {
        this.log(Effect.logInfo("Closing a SignalR connection", error ?? ""))
        this.close(Protocol.closeRecord({ error, allowReconnect: allowReconnect === true }))
      }
    }
  }

  /** Runs `f` once the connection has ended and released its hub. */
  whenClosed(f: () => void) {
    if (this.state === "closed") f()
    else this.onClosed.push(f)
  }

  /** A frame from the client. */
  receive(data: string | Uint8Array, nowMs: number) {
    if (this.state === "closing" || this.state === "closed") return
    this.lastReceivedAtMs = nowMs
    let text: string
    if (typeof data === "string") text = data
    else {
      try {
        this.decoder ??= new TextDecoder("utf-8", { fatal: true })
        text = this.decoder.decode(data, { stream: true })
      } catch {
        return this.protocolError(new Protocol.MalformedMessage({ reason: "the frame is not valid UTF-8" }))
      }
    }
    const framed = Protocol.pushText(this.framer, text, this.options.settings.maxMessageBytes)
    if (Either.isLeft(framed)) return this.protocolError(framed.left)
    this.framer = framed.right.framer
    for (const record of framed.right.records) {
      if (this.state === "handshake") this.handshake(record)
      // a record before this one may have closed it
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
      else if (this.state === "open") this.onRecord(record)
      else return
    }
  }

  /** Checks the connection's timers; the pod's ticker calls it about once a second. */
  tick(nowMs: number) {
    const { settings } = this.options
    const timers = timersOf(settings)
    if (this.state === "handshake" && nowMs - this.openedAtMs >= timers.handshakeTimeoutMs) {
      return this.close(Protocol.writeHandshakeResponse("Handshake was not received in time."))
    }
    if (this.state !== "open") return
    if (this.options.expiresAtMs !== undefined && nowMs >= this.options.expiresAtMs) {
      return this.client.close({ error: TOKEN_EXPIRED, allowReconnect: true })
    }
    if (nowMs - this.lastReceivedAtMs >= timers.clientTimeoutMs) {
      return this.client.close({
        error: `No message received from the client within ${Duration.format(settings.clientTimeout)}.`,
        allowReconnect: true
      })
    }
    if (nowMs - this.lastPingAtMs >= timers.keepAliveIntervalMs) {
      this.lastPingAtMs = nowMs
      this.outbox.write(Protocol.pingRecord)
    }
  }

  /** Server shutdown: tells the client to reconnect (elsewhere or later), closes, releases the hub. */
  shutdown(): Effect.Effect<void> {
    if (this.state !== "closing" && this.state !== "closed") {
      this.outbox.write(SHUTTING_DOWN)
      this.outbox.flush()
      this.state = "closing"
      this.options.closeSocket(1001)
    }
    return this.release()
  }

  /** The socket closed, by either side. */
  closed() {
    this.state = "closing"
    this.options.runFork(this.release())
  }

  /** Writes a last record, closes the socket; the hub is released when the socket's close comes. */
  private close(lastRecord: string | undefined) {
    if (this.state === "closing" || this.state === "closed") return
    if (lastRecord !== undefined) this.outbox.write(lastRecord)
    this.outbox.flush()
    this.state = "closing"
    this.options.closeSocket(1000)
  }

  private release(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.state === "closed") return Effect.void
      this.state = "closed"
      this.outbox.close()
      const running = [...this.running]
      this.running.clear()
      this.invocations.length = 0
      this.invocationSizes.length = 0
      this.pendingBytes = 0
      const hub = this.hub
      return Effect.zipRight(
        Effect.forEach(running, ({ fiber }) => fiber.interruptAsFork(fiber.id()), { discard: true }),
        hub === undefined ? Effect.void : hub.release
      ).pipe(Effect.ensuring(Effect.sync(() => {
        for (const f of this.onClosed.splice(0)) f()
      })))
    })
  }

  private log(effect: Effect.Effect<void>) {
    this.options.runFork(Effect.annotateLogs(effect, { connectionId: this.options.connectionId }))
  }

  private protocolError(error: Protocol.RecordTooLarge | Protocol.MalformedMessage) {
    this.log(Effect.logInfo("Closing a SignalR connection that sent an invalid message", error.message))
    this.close(Protocol.closeRecord({ error: `Invalid message: ${error.message}.` }))
  }

  private handshake(record: string) {
    const refusal = Either.match(Protocol.parseHandshake(record), {
      onLeft: (error) => error.message,
      onRight: Protocol.checkHandshake
    })
    if (refusal !== undefined) {
      this.log(Effect.logInfo("Refusing a SignalR handshake", refusal))
      return this.close(Protocol.writeHandshakeResponse(refusal))
    }
    // the hub exists before the client hears it is connected
    this.hub = this.options.makeHub(this.client)
    this.state = "open"
    this.outbox.write(Protocol.writeHandshakeResponse(undefined))
  }

  private onRecord(record: string) {
    Either.match(Protocol.parseMessage(record), {
      onLeft: (error) => this.protocolError(error),
      onRight: (message) => this.dispatch(message, record.length)
    })
  }

  private dispatch(message: Protocol.HubMessage, size: number) {
    switch (message.type) {
      case Protocol.MessageType.Invocation: {
        if (message.streamIds !== undefined && message.streamIds.length > 0) {
          if (message.invocationId !== undefined) {
            this.complete(
              message.invocationId,
              message.target,
              Either.left(`'${message.target}' does not accept streams from the client.`)
            )
          }
          return
        }
        const { maxPendingBytes, maxPendingInvocations } = this.options.settings
        if (this.invocations.length >= maxPendingInvocations) {
          return this.close(
            Protocol.closeRecord({ error: `Too many pending invocations (more than ${maxPendingInvocations}).` })
          )
        }
        if (this.pendingBytes + size > maxPendingBytes) {
          return this.close(
            Protocol.closeRecord({ error: `Too many pending invocations (more than ${maxPendingBytes} bytes).` })
          )
        }
        if (message.invocationId !== undefined) this.queuedIds.add(message.invocationId)
        this.invocations.push(message)
        this.invocationSizes.push(size)
        this.pendingBytes += size
        return this.runNext()
      }
      case Protocol.MessageType.StreamInvocation:
        return this.complete(
          message.invocationId,
          message.target,
          Either.left(`'${message.target}' is not a streaming hub method.`)
        )
      case Protocol.MessageType.CancelInvocation: {
        const id = message.invocationId
        if (this.queuedIds.has(id)) (this.canceledIds ??= new Set()).add(id)
        else {
          for (const { fiber, invocationId } of this.running) {
            if (invocationId === id) this.options.runFork(fiber.interruptAsFork(fiber.id()))
          }
        }
        return
      }
      case Protocol.MessageType.Close:
        // the client is leaving: nothing more to say to it
        return this.close(undefined)
      default:
        // Ping resets the timeout (any message does); StreamItem, Completion, Ack and Sequence
        // answer nothing this hub asked for
        return
    }
  }

  /**
   * Starts queued invocations in order: one at a time, except that consecutive pipelined ones run
   * together (a client streaming sends is not held to one per event-loop turn).
   */
  private runNext() {
    while (this.state === "open") {
      const message = this.invocations[0]
      if (message === undefined) return
      const hub = this.hub
      const method = hub?.methods.get(message.target)
      const pipelined = method?.pipelined === true
      if (this.running.size > 0) {
        if (!pipelined || this.running.size >= this.options.settings.maxPipelinedInvocations) return
        // a serial invocation still running holds everything behind it (it runs alone: the only one)
        if (this.running.values().next().value?.pipelined === false) return
      }
      this.invocations.shift()
      this.pendingBytes -= this.invocationSizes.shift() ?? 0
      const { invocationId, target } = message
      if (invocationId !== undefined) {
        this.queuedIds.delete(invocationId)
        if (this.canceledIds?.delete(invocationId) === true) {
          this.complete(invocationId, target, Either.left(CANCELED))
          continue
        }
      }
      const context: InvocationContext = {
        connectionId: this.options.connectionId,
        target,
        invocationId,
        headers: message.headers ?? {}
      }
      const fiber = hub === undefined || method === undefined
        ? this.options.runFork(Effect.fail(new HubError({ message: `Unknown hub method '${target}'.` })))
        : this.options.startFiber(method.invoke(message.arguments, context), hub.servicesFor(context))
      const running: Running = { invocationId, pipelined, fiber }
      this.running.add(running)
      onExit(fiber, (exit) => {
        if (!this.running.delete(running)) return
        this.finish(message, exit)
        this.runNext()
      })
    }
  }

  private finish(message: Protocol.InvocationMessage, exit: Exit.Exit<unknown, HubError>) {
    const { invocationId, target } = message
    const outcome: Either.Either<unknown, string> = Exit.match(exit, {
      onSuccess: (result) => Either.right(result),
      onFailure: (cause) => {
        const failure = Cause.failureOption(cause)
        if (failure._tag === "Some") return Either.left(failure.value.message)
        if (Cause.isInterruptedOnly(cause)) return Either.left(CANCELED)
        return Either.left(unexpectedError(target))
      }
    })
    if (
      Exit.isFailure(exit) && Cause.failureOption(exit.cause)._tag === "None" && !Cause.isInterruptedOnly(exit.cause)
    ) {
      this.log(Effect.logError("A SignalR hub method failed unexpectedly", exit.cause))
    }
    if (invocationId !== undefined) return this.complete(invocationId, target, outcome)
    // a non-blocking invocation: nobody waits for its completion
    if (Either.isLeft(outcome)) this.log(Effect.logDebug("A non-blocking invocation failed", outcome.left))
  }

  /** Answers an invocation; a result that is not JSON becomes an error rather than a silent hang. */
  private complete(invocationId: string, target: string, outcome: Either.Either<unknown, string>) {
    if (Either.isLeft(outcome)) return this.outbox.write(Protocol.completionErrorRecord(invocationId, outcome.left))
    const result = outcome.right
    if (result instanceof JsonResult) return this.outbox.write(Protocol.completionJsonRecord(invocationId, result.json))
    const record = Protocol.writeMessage(
      result === undefined
        ? { type: Protocol.MessageType.Completion, invocationId }
        : { type: Protocol.MessageType.Completion, invocationId, result }
    )
    if (Either.isRight(record)) return this.outbox.write(record.right)
    this.log(Effect.logError("A hub method returned a result that is not JSON", record.left.reason))
    this.outbox.write(Protocol.completionErrorRecord(invocationId, unexpectedError(target)))
  }
}
