/**
 * One SignalR connection over an upgraded WebSocket: handshake, framing, keep-alive, client
 * timeout, credential expiry and hub invocations. Hub-agnostic: the methods come from `makeHub`.
 */
import { Socket } from "@effect/platform"
import {
  Cause,
  Clock,
  Data,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  ParseResult,
  Queue,
  type Schema,
  type Scope
} from "effect"
import { type Flusher, Outbox, type Transport, writerTransport } from "../realtime/Outbox.js"
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
  /** Invocations waiting behind the running one; more and the client floods us: it is closed. */
  readonly maxPendingInvocations: number
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
  maxBufferedBytes: 4 * 1024 * 1024
}

/** A failed invocation as the client sees it: `message` becomes the Completion's `error`. */
export class HubError extends Data.TaggedError("HubError")<{ readonly message: string }> {}

export interface InvocationContext {
  readonly target: string
  readonly invocationId: string | undefined
  readonly headers: Readonly<Record<string, string>>
}

export interface HubMethod {
  readonly invoke: (args: ReadonlyArray<unknown>, context: InvocationContext) => Effect.Effect<unknown, HubError>
}

/** `undefined` completes without a result (a `Task` hub method in .NET terms). */
export type HubResult = unknown

/**
 * A hub method whose parameters are a Schema tuple: the argument count and every argument are
 * checked before `run` sees them, and a mismatch becomes a Completion error naming the argument.
 */
export const hubMethod = <A extends ReadonlyArray<unknown>, I>(
  parameters: Schema.Schema<A, I, never> & { readonly elements: ReadonlyArray<unknown> },
  run: (args: A, context: InvocationContext) => Effect.Effect<HubResult, HubError>
): HubMethod => {
  const decode = argumentsDecoder(parameters)
  const arity = parameters.elements.length
  return {
    invoke: (args, context) => {
      if (args.length !== arity) {
        return Effect.fail(
          new HubError({
            message: `Failed to invoke '${context.target}': it takes ${arity} argument(s), the invocation provides ${args.length}.`
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
   * The connection's outbound queue, for deliveries that must not wait for a fiber: records written
   * here go out in one frame per event-loop turn. Check `hasRoom()` before delivering.
   */
  readonly outbox: Outbox
  /** Invokes client methods (no result expected), all in one frame. */
  readonly send: (invocations: ReadonlyArray<ClientInvocation>) => Effect.Effect<void>
  /** Ends the connection with a Close message. */
  readonly close: (options: { readonly error?: string; readonly allowReconnect?: boolean }) => Effect.Effect<void>
  /** `close` for synchronous callers (a fan-out delivery). */
  readonly unsafeClose: (options: { readonly error?: string; readonly allowReconnect?: boolean }) => void
}

export interface Hub {
  readonly methods: ReadonlyMap<string, HubMethod>
}

export interface ConnectionOptions {
  readonly socket: Socket.Socket
  readonly settings: ConnectionSettings
  readonly flusher: Flusher["Type"]
  /** The raw socket's writes, when there is one: deliveries skip the Effect writer then. */
  readonly transport?: Transport | undefined
  readonly connectionId: string
  /** When the caller's credentials expire (epoch ms): the connection is closed then. */
  readonly expiresAtMs: number | undefined
  /** Builds the hub once the handshake succeeded; its resources live as long as the connection. */
  readonly makeHub: (client: HubClient) => Effect.Effect<Hub, never, Scope.Scope>
}

type Event =
  | { readonly _tag: "Data"; readonly data: string | Uint8Array }
  | { readonly _tag: "HandshakeTimeout" }
  | { readonly _tag: "Close"; readonly error: string | undefined; readonly allowReconnect: boolean }

interface Pending {
  readonly message: Protocol.InvocationMessage
}

const CANCELED = "Invocation canceled by the client."

const unexpectedError = (target: string) => `An unexpected error occurred invoking '${target}' on the server.`

/** The access token ran out: the client may reconnect with a fresh one. */
export const TOKEN_EXPIRED = "Unauthenticated: the access token expired"

/**
 * Serves the SignalR JSON hub protocol on `socket` until either side closes it. Never fails: bad
 * input closes this connection with a Close message, defects are logged and close it too.
 */
export const serveConnection = (options: ConnectionOptions): Effect.Effect<void> =>
  Effect.scoped(
    Effect.gen(function*() {
      const { connectionId, settings, socket } = options
      const write = yield* socket.writer
      const events = yield* Queue.unbounded<Event>()
      const socketClosed = yield* Deferred.make<void>()
      // Writes after the socket closed would wait forever for it to open again: skip them.
      let open = true
      // Every record goes through the outbox, so deliveries and replies keep their order and share frames.
      const outbox = new Outbox(options.transport ?? writerTransport(write, () => open), options.flusher, settings.maxBufferedBytes)
      yield* Effect.addFinalizer(() => Effect.sync(() => outbox.close()))
      const send = (chunk: string | Socket.CloseEvent): Effect.Effect<void> =>
        Effect.suspend(() => {
          if (!open) return Effect.void
          if (typeof chunk === "string") return Effect.sync(() => outbox.write(chunk))
          // what is queued goes out before the close
          outbox.flush()
          return Effect.ignore(write(chunk))
        })
      const closeSocket = (record: string | undefined) =>
        Effect.zipRight(
          record === undefined ? Effect.void : send(record),
          send(new Socket.CloseEvent(1000))
        )

      // The socket's handler only queues: one fiber handles frames in order, so framing is sequential.
      yield* socket.runRaw((data) => {
        events.unsafeOffer({ _tag: "Data", data })
      }).pipe(
        Effect.exit,
        Effect.flatMap((exit) =>
          Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)
            ? Effect.logDebug("SignalR socket ended with an error", exit.cause)
            : Effect.void
        ),
        Effect.ensuring(Effect.sync(() => {
          open = false
          outbox.close()
        })),
        Effect.zipRight(Deferred.succeed(socketClosed, undefined)),
        Effect.forkScoped
      )

      const handshakeTimer = yield* Effect.sleep(settings.handshakeTimeout).pipe(
        Effect.zipRight(Queue.offer(events, { _tag: "HandshakeTimeout" })),
        Effect.forkScoped
      )

      let lastReceivedAtMs = yield* Clock.currentTimeMillis
      let framer = Protocol.emptyFramer
      const decoder = new TextDecoder("utf-8", { fatal: true })
      const textOf = (data: string | Uint8Array): Either.Either<string, Protocol.MalformedMessage> =>
        typeof data === "string" ? Either.right(data) : Either.try({
          try: () => decoder.decode(data, { stream: true }),
          catch: () => new Protocol.MalformedMessage({ reason: "the frame is not valid UTF-8" })
        })

      const invocations = yield* Queue.dropping<Pending>(settings.maxPendingInvocations)
      const queuedIds = new Set<string>()
      const canceledIds = new Set<string>()
      let running: { readonly invocationId: string | undefined; readonly fiber: Fiber.RuntimeFiber<unknown, HubError> } | undefined

      /** Answers an invocation; a result that is not JSON becomes an error rather than a silent hang. */
      const complete = (invocationId: string, target: string, outcome: Either.Either<unknown, string>) =>
        Either.match(outcome, {
          onLeft: (error) => send(Protocol.completionErrorRecord(invocationId, error)),
          onRight: (result) =>
            Either.match(Protocol.writeMessage(
              result === undefined
                ? { type: Protocol.MessageType.Completion, invocationId }
                : { type: Protocol.MessageType.Completion, invocationId, result }
            ), {
              onLeft: (error) =>
                Effect.zipRight(
                  Effect.logError("A hub method returned a result that is not JSON", error.reason),
                  send(Protocol.completionErrorRecord(invocationId, unexpectedError(target)))
                ),
              onRight: send
            })
        })

      const closeWith = (options: { readonly error?: string; readonly allowReconnect?: boolean }): Event => ({
        _tag: "Close",
        error: options.error,
        allowReconnect: options.allowReconnect === true
      })
      const client: HubClient = {
        connectionId,
        outbox,
        send: (messages) =>
          Effect.suspend(() => {
            const records: Array<string> = []
            for (const { arguments: args, target } of messages) {
              const record = Protocol.writeMessage({ type: Protocol.MessageType.Invocation, target, arguments: args })
              if (Either.isRight(record)) records.push(record.right)
            }
            const unencodable = messages.length - records.length
            return Effect.zipRight(
              unencodable > 0 ? Effect.logError("Could not encode client invocations; they were dropped", unencodable) : Effect.void,
              records.length > 0 ? send(records.join("")) : Effect.void
            )
          }),
        close: (options) => Queue.offer(events, closeWith(options)),
        unsafeClose: (options) => void events.unsafeOffer(closeWith(options))
      }

      /** Runs one invocation and answers it; one at a time, so a client's invocations keep their order. */
      const invoke = (hub: Hub, message: Protocol.InvocationMessage) =>
        Effect.gen(function*() {
          const { invocationId, target } = message
          if (invocationId !== undefined) {
            queuedIds.delete(invocationId)
            if (canceledIds.delete(invocationId)) {
              return yield* complete(invocationId, target, Either.left(CANCELED))
            }
          }
          const method = hub.methods.get(target)
          const context: InvocationContext = { target, invocationId, headers: message.headers ?? {} }
          const effect = method === undefined
            ? Effect.fail(new HubError({ message: `Unknown hub method '${target}'.` }))
            : method.invoke(message.arguments, context)
          const fiber = yield* Effect.fork(effect)
          running = { invocationId, fiber }
          const exit = yield* Fiber.await(fiber)
          running = undefined
          const outcome: Either.Either<unknown, string> = Exit.match(exit, {
            onSuccess: (result) => Either.right(result),
            onFailure: (cause) => {
              const failure = Cause.failureOption(cause)
              if (failure._tag === "Some") return Either.left(failure.value.message)
              if (Cause.isInterruptedOnly(cause)) return Either.left(CANCELED)
              return Either.left(unexpectedError(target))
            }
          })
          if (Exit.isFailure(exit) && Cause.failureOption(exit.cause)._tag === "None" && !Cause.isInterruptedOnly(exit.cause)) {
            yield* Effect.logError("A SignalR hub method failed unexpectedly", exit.cause)
          }
          if (invocationId !== undefined) return yield* complete(invocationId, target, outcome)
          // a non-blocking invocation: nobody waits for its completion
          if (Either.isLeft(outcome)) yield* Effect.logDebug("A non-blocking invocation failed", outcome.left)
        }).pipe(Effect.annotateLogs({ target: message.target, invocationId: message.invocationId ?? "" }))

      const start = Effect.gen(function*() {
        yield* Fiber.interrupt(handshakeTimer)
        const hub = yield* options.makeHub(client)
        yield* Queue.take(invocations).pipe(
          Effect.flatMap((pending) => invoke(hub, pending.message)),
          Effect.forever,
          Effect.forkScoped
        )
        yield* Effect.sleep(settings.keepAliveInterval).pipe(
          Effect.zipRight(send(Protocol.pingRecord)),
          Effect.forever,
          Effect.forkScoped
        )
        const timeoutMs = Duration.toMillis(settings.clientTimeout)
        yield* Effect.gen(function*() {
          for (;;) {
            const now = yield* Clock.currentTimeMillis
            const due = lastReceivedAtMs + timeoutMs
            if (now >= due) break
            yield* Effect.sleep(due - now)
          }
          yield* client.close({
            error: `No message received from the client within ${Duration.format(settings.clientTimeout)}.`,
            allowReconnect: true
          })
        }).pipe(Effect.forkScoped)
        if (options.expiresAtMs !== undefined) {
          const expiresAtMs = options.expiresAtMs
          yield* Clock.currentTimeMillis.pipe(
            Effect.flatMap((now) => Effect.sleep(Math.max(0, expiresAtMs - now))),
            Effect.zipRight(client.close({ error: TOKEN_EXPIRED, allowReconnect: true })),
            Effect.forkScoped
          )
        }
      })

      /** Acts on one client message; returns false when the connection is to end. */
      const dispatch = (message: Protocol.HubMessage): Effect.Effect<boolean> =>
        Effect.suspend((): Effect.Effect<boolean> => {
          switch (message.type) {
            case Protocol.MessageType.Invocation: {
              if (message.streamIds !== undefined && message.streamIds.length > 0) {
                const refusal = `'${message.target}' does not accept streams from the client.`
                return message.invocationId === undefined
                  ? Effect.succeed(true)
                  : Effect.as(complete(message.invocationId, message.target, Either.left(refusal)), true)
              }
              // marked queued first: the invoker may take it the moment it is offered
              if (message.invocationId !== undefined) queuedIds.add(message.invocationId)
              return Effect.flatMap(Queue.offer(invocations, { message }), (accepted) => {
                if (accepted) return Effect.succeed(true)
                return Effect.as(
                  closeSocket(
                    Protocol.closeRecord({ error: `Too many pending invocations (more than ${settings.maxPendingInvocations}).` })
                  ),
                  false
                )
              })
            }
            case Protocol.MessageType.StreamInvocation:
              return Effect.as(
                complete(message.invocationId, message.target, Either.left(`'${message.target}' is not a streaming hub method.`)),
                true
              )
            case Protocol.MessageType.CancelInvocation: {
              const id = message.invocationId
              if (queuedIds.has(id)) canceledIds.add(id)
              else if (running !== undefined && running.invocationId === id) {
                return Effect.as(Fiber.interruptFork(running.fiber), true)
              }
              return Effect.succeed(true)
            }
            case Protocol.MessageType.Close:
              // the client is leaving: nothing more to say to it
              return Effect.as(closeSocket(undefined), false)
            default:
              // Ping resets the timeout (any message does); StreamItem, Completion, Ack and Sequence
              // answer nothing this hub asked for
              return Effect.succeed(true)
          }
        })

      const protocolError = (error: Protocol.RecordTooLarge | Protocol.MalformedMessage) =>
        Effect.zipRight(
          Effect.logInfo("Closing a SignalR connection that sent an invalid message", error.message),
          Effect.as(closeSocket(Protocol.closeRecord({ error: `Invalid message: ${error.message}.` })), false)
        )

      let handshakeDone = false

      /** Handles one record; returns false when the connection is to end. */
      const onRecord = (record: string): Effect.Effect<boolean, never, Scope.Scope> => {
        if (handshakeDone) {
          return Either.match(Protocol.parseMessage(record), { onLeft: protocolError, onRight: dispatch })
        }
        const refusal = Either.match(Protocol.parseHandshake(record), {
          onLeft: (error) => error.message,
          onRight: Protocol.checkHandshake
        })
        if (refusal !== undefined) {
          return Effect.as(
            Effect.zipRight(
              Effect.logInfo("Refusing a SignalR handshake", refusal),
              closeSocket(Protocol.writeHandshakeResponse(refusal))
            ),
            false
          )
        }
        handshakeDone = true
        // the hub exists before the client hears it is connected
        return Effect.as(Effect.zipRight(start, send(Protocol.writeHandshakeResponse(undefined))), true)
      }

      const onData = (data: string | Uint8Array) =>
        Effect.gen(function*() {
          lastReceivedAtMs = yield* Clock.currentTimeMillis
          const text = textOf(data)
          if (Either.isLeft(text)) return yield* protocolError(text.left)
          const framed = Protocol.pushText(framer, text.right, settings.maxMessageBytes)
          if (Either.isLeft(framed)) return yield* protocolError(framed.left)
          framer = framed.right.framer
          for (const record of framed.right.records) {
            if (!(yield* onRecord(record))) return false
          }
          return true
        })

      const loop = Effect.gen(function*() {
        for (;;) {
          const event = yield* Queue.take(events)
          switch (event._tag) {
            case "Data":
              if (!(yield* onData(event.data))) return
              break
            case "HandshakeTimeout":
              if (!handshakeDone) {
                return yield* closeSocket(Protocol.writeHandshakeResponse("Handshake was not received in time."))
              }
              break
            case "Close":
              yield* Effect.logInfo("Closing a SignalR connection", event.error ?? "")
              return yield* closeSocket(
                Protocol.closeRecord({ error: event.error, allowReconnect: event.allowReconnect })
              )
          }
        }
      })

      // Interrupted (server shutdown): tell the client to reconnect, elsewhere or later, while the socket is still open.
      const goodbye = send(Protocol.closeRecord({ error: "The server is shutting down.", allowReconnect: true })).pipe(
        Effect.zipRight(send(new Socket.CloseEvent(1001))),
        Effect.interruptible,
        Effect.timeout("1 second"),
        Effect.ignore
      )

      yield* Effect.raceFirst(loop, Deferred.await(socketClosed)).pipe(
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.failCause(cause)
            : Effect.zipRight(
              Effect.logError("A SignalR connection failed unexpectedly", cause),
              closeSocket(Protocol.closeRecord({ error: "Connection closed with an error." }))
            )
        ),
        Effect.onInterrupt(() => goodbye)
      )
    })
  ).pipe(Effect.annotateLogs({ connectionId: options.connectionId }))
