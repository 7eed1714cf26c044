/**
 * The @effect/rpc WebSocket protocol (ndjson) at /rpc, wire-compatible with RpcClient, with a
 * fast path for `Subscribe`: events go from the fan-out straight into the connection's outbox,
 * encoded once per event for all subscribers, without a fiber per subscriber. RpcClient relies on
 * one unacknowledged chunk per stream at a time (it hands chunks to a bounded mailbox concurrently,
 * so more would reorder them); while a chunk awaits its Ack, every event that arrives waits and
 * goes out in the next chunk, and the chunks of all subscriptions share one frame per turn. A
 * subscription more than `subscriberBufferSize` events (or the connection `maxBufferedBytes`)
 * behind ends with SubscriptionLagged. Every other request is handed to RpcServer as usual.
 *
 * A client that reads its frames in order and does not need flow control by Acks connects to
 * `/rpc?acks=none`: its chunks go out as soon as they are due (one write per event at low rates
 * instead of a write and the read of its Ack), RpcServer's streams are acknowledged on its behalf,
 * and only the connection's buffer bounds it (past `maxBufferedBytes`, SubscriptionLagged). Not
 * for RpcClient, which hands each frame to a fiber of its own and keeps order only with Acks.
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcServer from "@effect/rpc/RpcServer"
import type { FromClientEncoded, RequestEncoded } from "@effect/rpc/RpcMessage"
import {
  Cause,
  Clock,
  Context,
  Effect,
  Either,
  Exit,
  type Fiber,
  FiberId,
  FiberRef,
  Layer,
  Mailbox,
  ParseResult,
  Schedule,
  Schema,
  Scope,
  Tracer
} from "effect"
import {
  callerServices,
  type CallerServiceRequirements,
  CoreSettings,
  CorrelationId,
  CurrentUser,
  sendMessage,
  type SendRequest,
  subscribeInto,
  type SubscriptionSink
} from "@chatify/core"
import {
  ChatRpcs,
  ChatScopeType,
  EnrichedChatEvent,
  type SendError,
  type SubscribeError,
  SubscribePayload,
  SubscriptionItem,
  SubscriptionLagged,
  ValidationError
} from "@chatify/domain"
import { Authenticator, type Principal } from "../Auth.js"
import { acceptedCorrelationId, CORRELATION_HEADER, problemResponse } from "../Http.js"
import { CLIENT_ADDRESS_HEADER, hideDefects, makeRpcCaller } from "../Rpc.js"
import { Limits, tooManySubscriptions } from "../Limits.js"
import { Identities, newUuid, ShutdownGate } from "../Runtime.js"
import { makeFiberStarter, onExit } from "./Fibers.js"
import { encodedOnce, enrichedChatEventJson } from "./EventJson.js"
import type { Duplex } from "node:stream"
import type { WebSocket } from "ws"
import { type Upgrade, type UpgradeResponder, WebSocketGateway } from "./Gateway.js"
import { NdjsonLines } from "./NdjsonLines.js"
import { Flusher, Outbox, ReusedList, textFrame, webSocketTransport } from "./Outbox.js"

/** The handshake's own headers: they say nothing about the calls, and a connection would keep them for life. */
const HANDSHAKE_HEADERS = new Set([
  "connection",
  "upgrade",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-extensions"
])

/** The upgrade's headers as every call sees them first; `access_token` arrives as Authorization. */
const upgradeHeadersOf = (upgrade: Upgrade): ReadonlyArray<[string, string]> => {
  const headers: Array<[string, string]> = []
  for (const [name, value] of Object.entries(upgrade.request.headers)) {
    if (value !== undefined && name !== CLIENT_ADDRESS_HEADER && !HANDSHAKE_HEADERS.has(name)) {
      headers.push([name, Array.isArray(value) ? value.join(", ") : value])
    }
  }
  if (upgrade.bearer !== undefined && upgrade.request.headers["authorization"] === undefined) {
    headers.push(["authorization", `Bearer ${upgrade.bearer}`])
  }
  return headers
}

export interface RpcSocketOptions {
  readonly path: `/${string}`
  /** How far (bytes) a connection may fall behind on deliveries before its subscriptions lag. */
  readonly maxBufferedBytes: number
}

export const defaultRpcSocketOptions: RpcSocketOptions = { path: "/rpc", maxBufferedBytes: 4 * 1024 * 1024 }

const decodeSubscribePayload = Schema.decodeUnknownEither(SubscribePayload)
// the contract's own exit schema, so failures encode exactly as RpcServer would encode them
const encodeSubscribeExit = Schema.encodeEither(
  Rpc.exitSchema(ChatRpcs.requests.get("Subscribe")!) as unknown as Schema.Schema<
    Exit.Exit<void, SubscribeError>,
    unknown
  >
)
const encodeSendExit = Schema.encodeEither(
  Rpc.exitSchema(ChatRpcs.requests.get("Send")!) as unknown as Schema.Schema<
    Exit.Exit<EnrichedChatEvent, SendError>,
    unknown
  >
)
const encodeItem = Schema.encodeEither(SubscriptionItem)
const encodeDefect = Schema.encodeSync(Schema.Defect)

/** A request id RpcServer can take (it reads ids with BigInt, which throws on anything else). */
const isRequestId = (id: unknown): boolean =>
  (typeof id === "string" && /^[0-9]{1,64}$/u.test(id)) ||
  (typeof id === "number" && Number.isSafeInteger(id) && id >= 0)

const isHeaderList = (headers: unknown): boolean =>
  Array.isArray(headers) &&
  headers.every((header) =>
    Array.isArray(header) && header.length === 2 && typeof header[0] === "string" && typeof header[1] === "string"
  )

/**
 * Why a decoded ndjson line is not a message a client may send, or undefined when it is one. The
 * handlers below and RpcServer read its fields synchronously, on the socket's event: a line such
 * as `null` or an Ack with a non-numeric id would throw there and take the process down. (By hand,
 * not a Schema: every Send and Ack of every client passes here.)
 */
export const clientMessageProblem = (message: unknown): string | undefined => {
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    return "a message must be a JSON object"
  }
  const { _tag } = message as { readonly _tag?: unknown }
  switch (_tag) {
    case "Request": {
      const { headers, id, tag } = message as {
        readonly id?: unknown
        readonly tag?: unknown
        readonly headers?: unknown
      }
      if (typeof tag !== "string") return "a Request needs a string tag"
      if (!isRequestId(id)) return "a Request needs an id of decimal digits"
      return isHeaderList(headers) ? undefined : "a Request needs headers as [name, value] string pairs"
    }
    case "Ack":
    case "Interrupt":
      return isRequestId((message as { readonly requestId?: unknown }).requestId)
        ? undefined
        : `an ${_tag} needs a requestId of decimal digits`
    case "Ping":
    case "Eof":
      return undefined
    default:
      return `unknown message tag: ${typeof _tag === "string" ? _tag.slice(0, 64) : typeof _tag}`
  }
}

const NEWLINE = 0x0a
const ACK_PREFIX = Buffer.from(`{"_tag":"Ack","requestId":"`)
const ACK_SUFFIX = Buffer.from(`"}\n`)

/**
 * The request id of a frame that is exactly one Ack line as RpcClient writes it
 * (`{"_tag":"Ack","requestId":"12"}` and a newline), else undefined.
 */
export const ackedRequestId = (frame: Buffer): string | undefined => {
  const idLength = frame.length - ACK_PREFIX.length - ACK_SUFFIX.length
  if (idLength < 1 || idLength > 20) return undefined
  if (frame.compare(ACK_PREFIX, 0, ACK_PREFIX.length, 0, ACK_PREFIX.length) !== 0) return undefined
  if (frame.compare(ACK_SUFFIX, 0, ACK_SUFFIX.length, frame.length - ACK_SUFFIX.length) !== 0) return undefined
  for (let i = ACK_PREFIX.length; i < ACK_PREFIX.length + idLength; i++) {
    const byte = frame[i]!
    if (byte < 0x30 || byte > 0x39) return undefined
  }
  return frame.toString("latin1", ACK_PREFIX.length, ACK_PREFIX.length + idLength)
}

const sameValues = (a: ReadonlyArray<string>, b: ReusedList<string>): boolean => {
  if (a.length !== b.size) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b.get(i)) return false
  return true
}

/** The longest Ack frame's payload (a 7-bit length): ids have at most 20 digits. */
const MAX_ACK_LINE = ACK_PREFIX.length + 20 + ACK_SUFFIX.length

/**
 * The request ids of a chunk read from a client's socket when it holds nothing but whole, masked,
 * unfragmented text frames that are each one Ack line (as RpcClient writes them); else undefined,
 * and the chunk is left to `ws`. `scratch` (at least 125 bytes) holds each unmasked payload.
 */
export const ackFrameRequestIds = (chunk: Buffer, scratch: Buffer): Array<string> | undefined => {
  const ids: Array<string> = []
  let at = 0
  while (at < chunk.length) {
    // FIN + text, then the mask bit and a payload length below 126
    if (chunk.length - at < 6 || chunk[at] !== 0x81) return undefined
    const second = chunk[at + 1]!
    const length = second & 0x7f
    if ((second & 0x80) === 0 || length > MAX_ACK_LINE) return undefined
    const payloadAt = at + 6
    if (chunk.length - payloadAt < length) return undefined
    for (let i = 0; i < length; i++) scratch[i] = chunk[payloadAt + i]! ^ chunk[at + 2 + (i & 3)]!
    const requestId = ackedRequestId(scratch.subarray(0, length))
    if (requestId === undefined) return undefined
    ids.push(requestId)
    at = payloadAt + length
  }
  return ids.length === 0 ? undefined : ids
}

/** What of `ws`'s receiver tells whether it is between frames with nothing buffered (ws 8 internals). */
interface WsReceiverState {
  readonly _state: number
  readonly _bufferedBytes: number
  readonly _fragmented: number
  readonly _errored: boolean
  readonly writableLength: number
}
const receiverIsIdle = (receiver: WsReceiverState | undefined): boolean =>
  receiver !== undefined && receiver._state === 0 && receiver._bufferedBytes === 0 && receiver._fragmented === 0 &&
  !receiver._errored && receiver.writableLength === 0

const PONG = `{"_tag":"Pong"}\n`

const isScopeType = Schema.is(ChatScopeType)

/**
 * A Send payload the fast path takes as it is: exactly the contract's fields with their types, the
 * optional clientMessageId included. Anything else (extra fields, wrong types) goes to RpcServer,
 * which decodes it and answers.
 */
export const plainSendPayload = (payload: unknown): SendRequest | undefined => {
  if (typeof payload !== "object" || payload === null) return undefined
  const { clientMessageId, scopeId, scopeType, text } = payload as Record<string, unknown>
  if (!isScopeType(scopeType) || typeof scopeId !== "string" || typeof text !== "string") return undefined
  const fields = Object.keys(payload).length
  if (fields === 3) return clientMessageId === undefined ? { scopeType, scopeId, text } : undefined
  return fields === 4 && typeof clientMessageId === "string" ? { scopeType, scopeId, text, clientMessageId } : undefined
}

/** A Send's Exit line as RpcServer writes it: the success spliced from the event's JSON, failures through the contract's schema. */
export const sendExitLine = (requestId: string, exit: Exit.Exit<EnrichedChatEvent, SendError>): string => {
  if (Exit.isSuccess(exit)) {
    const json = enrichedChatEventJson(exit.value)
    if (Either.isRight(json)) {
      return `{"_tag":"Exit","requestId":${
        JSON.stringify(requestId)
      },"exit":{"_tag":"Success","value":${json.right}}}\n`
    }
  }
  return Either.match(encodeSendExit(exit), {
    onLeft: (error) => JSON.stringify({ _tag: "Defect", defect: encodeDefect(error.message) }) + "\n",
    onRight: (encoded) => JSON.stringify({ _tag: "Exit", requestId, exit: encoded }) + "\n"
  })
}

/**
 * The span RpcServer gives a call, for the calls the fast path serves itself, so both paths look
 * the same in a trace: `RpcServer.{tag}`, with the request id, the child of the client's span
 * when the request names one. None while tracing is off; under an unsampled client span, none
 * either, and the call's own spans see that parent and make none.
 */
export const asRpcServerCall =
  (request: RequestEncoded, requestId: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.withFiberRuntime<A, E, R>((fiber) => {
      if (!fiber.getFiberRef(FiberRef.currentTracerEnabled)) return effect
      const { sampled, spanId, traceId } = request
      const parent = spanId === undefined || traceId === undefined
        ? undefined
        : Tracer.externalSpan({ traceId, spanId, sampled: sampled === true })
      if (parent?.sampled === false) return Effect.withParentSpan(effect, parent)
      return Effect.withSpan(effect, `RpcServer.${request.tag}`, {
        captureStackTrace: false,
        attributes: { requestId },
        ...(parent === undefined ? {} : { parent })
      })
    })

interface Subscription {
  readonly requestId: string
  /** `{"_tag":"Chunk","requestId":…,"values":[`: every chunk of this subscription starts so. */
  readonly chunkPrefix: string
  /** The values of its next chunk. */
  readonly values: ReusedList<string>
  /** The length of `values`' JSON, counted in the connection's backlog. */
  bytes: number
  readonly scopeId: string
  /** A chunk was written and its Ack has not come back yet. */
  awaitingAck: boolean
  /** The Ack sweep during which that chunk was written. */
  ackSweep: number
  queued: boolean
  ended: boolean
  scope: Scope.CloseableScope | undefined
}

/** What the Subscribe and Send fast paths run on, captured once when the protocol is built. */
type FastPathServices = CallerServiceRequirements

export const makeRpcSocketProtocol = (options: RpcSocketOptions) =>
  Effect.gen(function*() {
    const router = yield* HttpLayerRouter.HttpRouter
    const flusher = yield* Flusher
    const asCaller = makeRpcCaller(yield* Authenticator, yield* Identities)
    // upgrades, subscriptions and requests run as fibers of this layer
    const fibers = yield* makeFiberStarter<FastPathServices>()
    const runFork = fibers.run
    const services = yield* callerServices
    const { subscriberBufferSize } = yield* CoreSettings
    const limits = yield* Limits
    const disconnects = yield* Mailbox.make<number>()
    const encodeEvent = encodedOnce((event) => Either.getOrUndefined(enrichedChatEventJson(event)))
    const gate = yield* ShutdownGate
    const identities = yield* Identities
    /** Each connection's outbox, and the requests RpcServer runs for it (until their Exit). */
    const clients = new Map<
      number,
      {
        readonly outbox: Outbox
        readonly running: Set<string>
        readonly expireAcks: () => void
        /** False for `?acks=none`: its chunks are acknowledged here, on its behalf. */
        readonly acknowledges: boolean
      }
    >()
    // An Ack that never comes (lost, or a client gone without a close) would hold its subscription
    // forever, silently: a sweep ends those that waited 4 to 5 sweeps (the timeout to 1.25 × it).
    let ackSweep = 0
    const ACK_SWEEPS = 4
    yield* Effect.sync(() => {
      ackSweep++
      for (const client of clients.values()) client.expireAcks()
    }).pipe(
      Effect.repeat(Schedule.spaced((limits.subscriptionAckTimeoutSeconds * 1_000) / ACK_SWEEPS)),
      Effect.forkScoped
    )
    const gateway = yield* WebSocketGateway
    const authenticator = yield* Authenticator
    // connections end with this layer (server shutdown), before the services they use
    const connections = new Set<{ readonly ws: WebSocket; readonly release: () => void }>()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const connection of Array.from(connections)) {
          // going away: the client reconnects, elsewhere or later
          connection.ws.close(1001)
          connection.release()
        }
      })
    )
    let nextClientId = 0
    // A fan-out gives many subscriptions the same values one after the other, and clients number
    // their requests alike (RpcClient's first is "0" or "1" on every connection): the last chunk's
    // frame is reused while both match, so each is framed once for all of them.
    let lastChunk:
      | { readonly prefix: string; readonly values: ReadonlyArray<string>; readonly frame: Buffer }
      | undefined
    const chunkFrame = (prefix: string, values: ReusedList<string>): Buffer => {
      if (
        lastChunk !== undefined && lastChunk.prefix === prefix && sameValues(lastChunk.values, values)
      ) return lastChunk.frame
      // a copy: each subscription empties and refills its own list
      const copy = values.toArray()
      const frame = textFrame(prefix + copy.join(",") + "]}\n")
      lastChunk = { prefix, values: copy, frame }
      return frame
    }
    let writeRequest!: (clientId: number, message: FromClientEncoded) => Effect.Effect<void>

    /** Serves one connection, driven by its socket's events: no fiber of its own. */
    const serve = (
      ws: WebSocket,
      socket: Duplex,
      upgradeHeaders: ReadonlyArray<[string, string]>,
      bearer: string | undefined,
      expiresAtMs: number | undefined,
      clientAddress: string,
      acknowledges: boolean
    ) => {
      const clientId = nextClientId++
      // a line spread over many frames is bounded as one frame is
      const lines = new NdjsonLines(limits.maxFrameBytes)
      let open = true
      const outbox = new Outbox(webSocketTransport(ws, socket), flusher, options.maxBufferedBytes)
      const subscriptions = new Map<string, Subscription>()
      // the subscriptions with values for this turn's flush
      const queued = new ReusedList<Subscription>()
      let pendingBytes = 0
      const running = new Set<string>()
      const expireAcks = () => {
        let expired = 0
        for (const subscription of subscriptions.values()) {
          if (subscription.awaitingAck && ackSweep - subscription.ackSweep > ACK_SWEEPS) {
            expired++
            end(
              subscription,
              Exit.fail(new SubscriptionLagged({ scopeId: subscription.scopeId, bufferSize: subscriberBufferSize }))
            )
          }
        }
        if (expired > 0) {
          runFork(Effect.logInfo(
            `Ended ${expired} RPC subscription(s) whose chunk was not acknowledged within ` +
              `${limits.subscriptionAckTimeoutSeconds} s (CHATIFY__LIMITS__SUBSCRIPTIONACKTIMEOUTSECONDS)`
          ))
        }
      }
      clients.set(clientId, { outbox, running, expireAcks, acknowledges })

      const writeLine = (message: unknown) => {
        try {
          outbox.write(JSON.stringify(message) + "\n")
        } catch (cause) {
          outbox.write(JSON.stringify({ _tag: "Defect", defect: encodeDefect(cause) }) + "\n")
        }
      }
      // pending events become one Chunk per subscription, all in this turn's frame
      const moveToOutbox = (subscription: Subscription) => {
        subscription.queued = false
        if (subscription.values.size === 0 || subscription.awaitingAck) return
        outbox.writeFrame(chunkFrame(subscription.chunkPrefix, subscription.values))
        subscription.values.clear()
        pendingBytes -= subscription.bytes
        subscription.bytes = 0
        // a client that does not acknowledge gets every chunk as soon as it is due
        subscription.awaitingAck = acknowledges
        subscription.ackSweep = ackSweep
      }
      const queue = (subscription: Subscription) => {
        if (subscription.queued || subscription.awaitingAck) return
        subscription.queued = true
        queued.push(subscription)
        outbox.wake()
      }
      outbox.onFlush = () => {
        // moving writes frames only, so nothing is queued meanwhile
        for (let i = 0; i < queued.size; i++) moveToOutbox(queued.get(i))
        queued.clear()
      }
      const hasRoom = () => outbox.hasRoom(pendingBytes)

      const end = (subscription: Subscription, exit: Exit.Exit<void, SubscribeError>) => {
        if (subscription.ended) return
        subscription.ended = true
        subscriptions.delete(subscription.requestId)
        // what it had pending goes first, even if its last chunk is unacknowledged: no more chunks follow
        subscription.awaitingAck = false
        moveToOutbox(subscription)
        Either.match(encodeSubscribeExit(exit), {
          onLeft: (error) => writeLine({ _tag: "Defect", defect: encodeDefect(error.message) }),
          onRight: (encoded) => writeLine({ _tag: "Exit", requestId: subscription.requestId, exit: encoded })
        })
        const scope = subscription.scope
        if (scope !== undefined) runFork(Scope.close(scope, Exit.void))
      }

      const sinkOf = (subscription: Subscription): SubscriptionSink => {
        const append = (item: SubscriptionItem) => {
          const json = item instanceof EnrichedChatEvent
            ? encodeEvent(item)
            : Either.match(encodeItem(item), { onLeft: () => undefined, onRight: (encoded) => JSON.stringify(encoded) })
          if (json === undefined) return
          subscription.values.push(json)
          subscription.bytes += json.length
          pendingBytes += json.length
          queue(subscription)
        }
        const waitingForClient = () =>
          open && !subscription.ended &&
          (subscription.values.size > 0 || outbox.backlog() + pendingBytes > options.maxBufferedBytes / 2)
        return {
          push: (item) => {
            if (subscription.ended || !open) return false
            if (subscription.values.size >= subscriberBufferSize || !hasRoom()) return false
            append(item)
            return true
          },
          // a replay is paced by the client instead: a page, then wait until it has been taken
          pushReplay: (events) =>
            Effect.gen(function*() {
              if (subscription.ended || !open) return false
              for (const event of events) append(event)
              while (waitingForClient()) yield* Effect.sleep("5 millis")
              return true
            }),
          fail: (error) => end(subscription, Exit.fail(error))
        }
      }

      // Sends in flight on the fast path, for Interrupt; and the caller, authenticated once
      const sends = new Map<string, Fiber.RuntimeFiber<EnrichedChatEvent, SendError>>()
      let caller: Principal | undefined
      const upgradeCorrelationId = acceptedCorrelationId(
        upgradeHeaders.find(([name]) => name === CORRELATION_HEADER)?.[1]
      )
      /** A call's headers as RpcServer's handlers see them: the upgrade's, the call's, the client's address. */
      const callHeaders = (headers: ReadonlyArray<[string, string]>) =>
        upgradeHeaders.concat(headers.filter(([name]) => name.toLowerCase() !== CLIENT_ADDRESS_HEADER), [[
          CLIENT_ADDRESS_HEADER,
          clientAddress
        ]])
      const connectionId = identities.connectionIdForClient(clientId)
      // Known at once (anonymous, or a token the upgrade just verified, which the authenticator
      // caches); otherwise every Send of this connection takes RpcServer's path, so a client's
      // sends never take two paths at once and keep their order.
      const authenticated = Effect.runSyncExit(
        authenticator.authenticate(bearer, connectionId, clientAddress)
      )
      if (Exit.isSuccess(authenticated)) caller = authenticated.value

      /**
       * The services of a request made as the connection's authenticated caller (no Authorization
       * header of its own, a token that has not expired), with its correlation id: its fiber starts
       * with them, which also tells the logger who (see Logging.ts). Undefined leaves the request
       * to the general path, which authenticates it.
       */
      const knownCallerServices = (request: RequestEncoded) => {
        let correlationId = upgradeCorrelationId
        for (const [name, value] of request.headers) {
          const lowerName = name.toLowerCase()
          if (lowerName === "authorization") return undefined
          if (lowerName === CORRELATION_HEADER) correlationId = acceptedCorrelationId(value) ?? correlationId
        }
        if (caller === undefined) return undefined
        if (caller.expiresAtMs !== undefined && Date.now() >= caller.expiresAtMs) return undefined
        // one copy of the shared services per request, none kept per connection
        const requestServices = new Map(services.unsafeMap)
        requestServices.set(CurrentUser.key, caller)
        requestServices.set(CorrelationId.key, correlationId ?? newUuid())
        return Context.unsafeMake<FastPathServices | CurrentUser | CorrelationId>(requestServices)
      }

      /**
       * A Send with a plain payload and no headers of its own that change who or what it is,
       * run straight from the socket as RpcServer would run it, with its Exit line written by
       * hand: false leaves the request to RpcServer.
       */
      const startSend = (request: RequestEncoded): boolean => {
        const payload = plainSendPayload(request.payload)
        if (payload === undefined) return false
        const known = knownCallerServices(request)
        if (known === undefined) return false
        // a client's JSON may carry a number
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-conversion
        const requestId = String(request.id)
        if (sends.has(requestId)) return false
        const fiber = fibers.start(
          gate.track(sendMessage(payload)).pipe(hideDefects, asRpcServerCall(request, requestId)),
          known
        )
        // A send that fails its checks has ended already (the fiber ran them as it started): it is
        // answered at once and not counted as running. An Interrupt from the client ends a running
        // one with the interrupted Exit RpcServer writes.
        const answer = (exit: Exit.Exit<EnrichedChatEvent, SendError>) => {
          sends.delete(requestId)
          if (!open) return
          const interrupted = Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
          outbox.write(sendExitLine(requestId, interrupted ? Exit.interrupt(FiberId.none) : exit))
        }
        sends.set(requestId, fiber)
        onExit(fiber, answer)
        return true
      }

      const acknowledge = (subscription: Subscription) => {
        subscription.awaitingAck = false
        if (subscription.values.size > 0) queue(subscription)
      }

      const startSubscription = (request: RequestEncoded) => {
        // a client's JSON may carry a number
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-conversion
        const requestId = String(request.id)
        const previous = subscriptions.get(requestId)
        if (previous !== undefined) end(previous, Exit.interrupt(FiberId.none))
        const payload = decodeSubscribePayload(request.payload)
        if (Either.isLeft(payload)) {
          // what RpcServer answers for a payload that does not decode: a defect naming the problem
          return writeLine({
            _tag: "Exit",
            requestId,
            exit: {
              _tag: "Failure",
              cause: { _tag: "Die", defect: encodeDefect(ParseResult.TreeFormatter.formatErrorSync(payload.left)) }
            }
          })
        }
        if (subscriptions.size >= limits.maxSubscriptionsPerConnection) {
          return Either.match(
            encodeSubscribeExit(Exit.fail(tooManySubscriptions(limits.maxSubscriptionsPerConnection))),
            {
              onLeft: (error) => writeLine({ _tag: "Defect", defect: encodeDefect(error.message) }),
              onRight: (encoded) => writeLine({ _tag: "Exit", requestId, exit: encoded })
            }
          )
        }
        const subscription: Subscription = {
          requestId,
          chunkPrefix: `{"_tag":"Chunk","requestId":${JSON.stringify(requestId)},"values":[`,
          values: new ReusedList(),
          bytes: 0,
          scopeId: payload.right.scopeId,
          awaitingAck: false,
          ackSweep: 0,
          queued: false,
          ended: false,
          scope: undefined
        }
        subscriptions.set(requestId, subscription)
        const { after, scopeId, scopeType } = payload.right
        const scope = Effect.runSync(Scope.make())
        subscription.scope = scope
        const subscribe = subscribeInto({ scopeType, scopeId }, after, sinkOf(subscription)).pipe(
          hideDefects,
          asRpcServerCall(request, requestId)
        )
        const ended = <R>(effect: Effect.Effect<void, SubscribeError, R>) =>
          effect.pipe(
            Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))),
            Effect.catchAll((error) => Effect.sync(() => end(subscription, Exit.fail(error))))
          )
        const known = knownCallerServices(request)
        if (known === undefined) {
          const headers = Headers.fromInput(callHeaders(request.headers))
          runFork(ended(subscribe.pipe(asCaller(clientId, headers), Scope.extend(scope))))
        } else {
          fibers.start(ended(subscribe), Context.add(known, Scope.Scope, scope))
        }
      }

      const onMessage = (message: FromClientEncoded): Effect.Effect<void> | undefined => {
        switch (message._tag) {
          case "Request":
            if (message.tag === "Subscribe") return void startSubscription(message)
            if (sends.size + running.size >= limits.maxConcurrentRequestsPerConnection) return void tooManyRequests()
            if (message.tag === "Send" && startSend(message)) return undefined
            ;(message as { headers: ReadonlyArray<[string, string]> }).headers = callHeaders(message.headers)
            // a client's JSON may carry a number
            // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-conversion
            running.add(String(message.id))
            return writeRequest(clientId, message)
          case "Ack": {
            const subscription = subscriptions.get(message.requestId)
            if (subscription === undefined) return writeRequest(clientId, message)
            return void acknowledge(subscription)
          }
          case "Interrupt": {
            const send = sends.get(message.requestId)
            if (send !== undefined) return void send.unsafeInterruptAsFork(FiberId.none)
            const subscription = subscriptions.get(message.requestId)
            if (subscription === undefined) return writeRequest(clientId, message)
            return void end(subscription, Exit.interrupt(FiberId.none))
          }
          case "Ping":
            return void outbox.write(PONG)
          default:
            return writeRequest(clientId, message)
        }
      }

      /** A client with more requests running than it may have floods us: it is closed (policy violation). */
      const tooManyRequests = () => {
        if (!open) return
        runFork(Effect.logInfo(
          `Closing an RPC connection with more than ${limits.maxConcurrentRequestsPerConnection} requests running ` +
            "(CHATIFY__LIMITS__MAXCONCURRENTREQUESTSPERCONNECTION)"
        ))
        outbox.flush()
        ws.close(1008, "too many concurrent requests")
        release()
      }

      const onData = (data: string): Effect.Effect<void> | undefined => {
        const read = lines.read(data)
        if (read._tag === "TooLong") {
          outbox.flush()
          return void ws.close(1009, read.message)
        }
        if (read._tag === "NotJson") {
          // the rest of the stream cannot be split into lines again (1007: data not of the expected form)
          writeLine({ _tag: "Defect", defect: encodeDefect(`not a JSON line: ${read.message}`) })
          outbox.flush()
          return void ws.close(1007, "not a JSON line")
        }
        const effects: Array<Effect.Effect<void>> = []
        for (const message of read.values) {
          const problem = clientMessageProblem(message)
          if (problem !== undefined) {
            writeLine({ _tag: "Defect", defect: encodeDefect(problem) })
            continue
          }
          // checked just above
          const effect = onMessage(message as FromClientEncoded)
          if (effect !== undefined) effects.push(effect)
        }
        if (effects.length === 0) return undefined
        return effects.length === 1 ? effects[0] : Effect.forEach(effects, (effect) => effect, { discard: true })
      }

      const release = () => {
        if (!open) return
        open = false
        outbox.close()
        clients.delete(clientId)
        connections.delete(connection)
        for (const subscription of subscriptions.values()) {
          subscription.ended = true
          if (subscription.scope !== undefined) runFork(Scope.close(subscription.scope, Exit.void))
        }
        subscriptions.clear()
        expiry?.unsafeInterruptAsFork(FiberId.none)
        disconnects.unsafeOffer(clientId)
      }
      const connection = { ws, release }
      connections.add(connection)
      const expiry = expiresAtMs === undefined
        ? undefined
        : runFork(Effect.zipRight(closeAtExpiry(expiresAtMs), Effect.sync(() => ws.close(1000))))
      // made with the first binary frame: most clients send text, and a decoder is ~0.7 KiB
      let binaryText: InstanceType<typeof TextDecoder> | undefined
      // whether the parser holds the start of a line: then the next frame continues it
      let midLine = false
      ws.on("message", (data: Buffer, isBinary: boolean) => {
        // closing (by us, for a bad line or too many requests): what still arrives is not read
        if (ws.readyState !== ws.OPEN) return
        if (!isBinary && !midLine) {
          // the Ack of a subscription's chunk, one per chunk per subscriber: taken without the parser
          const requestId = ackedRequestId(data)
          const subscription = requestId === undefined ? undefined : subscriptions.get(requestId)
          if (subscription !== undefined) return acknowledge(subscription)
        }
        midLine = data.length > 0 && data[data.length - 1] !== NEWLINE
        // a character split between two binary frames is decoded once both have come
        const effect = onData(
          isBinary ? (binaryText ??= new TextDecoder()).decode(data, { stream: true }) : data.toString()
        )
        if (effect !== undefined) runFork(effect)
      })
      ws.once("close", release)
      takeAcksBeforeWs(ws, () => !midLine, (ids) => {
        const acked: Array<Subscription> = []
        for (const requestId of ids) {
          const subscription = subscriptions.get(requestId)
          if (subscription === undefined) return false
          acked.push(subscription)
        }
        for (const subscription of acked) acknowledge(subscription)
        return true
      })
    }

    const scratch = Buffer.allocUnsafe(125)
    /**
     * Reads the Acks of subscription chunks (one per chunk per subscriber, most of what a
     * subscriber sends) as they come off the socket, ahead of `ws`'s parsing: a chunk that holds
     * only whole Ack frames for known subscriptions, read while ws's receiver is between frames, is
     * taken here, which spares a parse, a Buffer and a 'message' event per Ack. Anything else goes
     * to the receiver as is. (ws feeds its receiver with `receiver.write` from the socket's 'data'
     * events and stops when it closes, so wrapping that one method leaves the rest of ws alone.)
     */
    const takeAcksBeforeWs = (
      ws: WebSocket,
      betweenLines: () => boolean,
      take: (requestIds: ReadonlyArray<string>) => boolean
    ) => {
      const receiver =
        (ws as unknown as { readonly _receiver?: WsReceiverState & { write: (chunk: Buffer) => boolean } })
          ._receiver
      if (receiver === undefined || !receiverIsIdle(receiver)) return
      const write = receiver.write
      receiver.write = function(this: unknown, chunk: Buffer) {
        if (ws.readyState === 1 && Buffer.isBuffer(chunk) && betweenLines() && receiverIsIdle(receiver)) {
          const ids = ackFrameRequestIds(chunk, scratch)
          if (ids !== undefined && take(ids)) return true
        }
        return write.call(this, chunk)
      }
    }

    // An authenticated connection closes a second after its token expires: by then its streams
    // have ended with a typed Unauthenticated ("the access token expired", core Subscribe).
    const closeAtExpiry = (expiresAtMs: number) =>
      Clock.currentTimeMillis.pipe(
        Effect.flatMap((now) => Effect.sleep(Math.max(0, expiresAtMs - now) + 1_000)),
        Effect.zipRight(Effect.logInfo("Closing an RPC connection: its access token expired"))
      )
    const admit = (upgrade: Upgrade, respond: UpgradeResponder, expiresAtMs: number | undefined) => {
      const acks = upgrade.query.get("acks")
      if (acks !== null && acks !== "none") {
        return respond.refuse(
          new ValidationError({ errors: [{ field: "acks", message: "must be \"none\" or absent" }] })
        )
      }
      const headers = upgradeHeadersOf(upgrade)
      respond.accept((ws, socket) =>
        serve(ws, socket, headers, upgrade.bearer, expiresAtMs, upgrade.clientAddress, acks === null)
      )
    }
    // Anonymous upgrades are admitted synchronously; with authentication a fiber checks the token
    // first, refusing before the upgrade so that a client learns why instead of seeing a closed socket.
    const connect = (upgrade: Upgrade, respond: UpgradeResponder) => {
      if (!authenticator.enabled) return admit(upgrade, respond, undefined)
      runFork(
        Effect.either(authenticator.authenticate(upgrade.bearer, "upgrade")).pipe(
          Effect.map((checked) =>
            Either.isLeft(checked)
              ? respond.refuse(checked.left)
              : admit(upgrade, respond, checked.right.expiresAtMs)
          ),
          Effect.annotateLogs({ correlationId: upgrade.correlationId })
        )
      )
    }
    yield* gateway.route(options.path, connect)
    // a plain GET (no upgrade) is the client's mistake
    yield* router.add(
      "GET",
      options.path,
      Effect.map(CorrelationId, (correlationId) =>
        problemResponse(
          new ValidationError({ errors: [{ field: "request", message: "expected a WebSocket upgrade" }] }),
          options.path,
          correlationId
        ))
    )

    return yield* RpcServer.Protocol.make((write) => {
      // RpcServer hands its writer over once it runs
      writeRequest = write
      return Effect.succeed({
        disconnects,
        send: (clientId, response) =>
          Effect.suspend(() => {
            const client = clients.get(clientId)
            if (client === undefined) return Effect.void
            const { outbox } = client
            // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-conversion -- as it was added: a string
            if (response._tag === "Exit") client.running.delete(String(response.requestId))
            try {
              outbox.write(JSON.stringify(response) + "\n")
            } catch (cause) {
              outbox.write(JSON.stringify({ _tag: "Defect", defect: encodeDefect(cause) }) + "\n")
            }
            // a client that does not acknowledge: RpcServer's streams (RateLimitViolations) are
            // acknowledged on its behalf, or they would wait for it after their first chunk
            return response._tag === "Chunk" && !client.acknowledges
              ? writeRequest(clientId, { _tag: "Ack", requestId: response.requestId })
              : Effect.void
          }),
        end: () => Effect.void,
        clientIds: Effect.sync(() => new Set(clients.keys())),
        initialMessage: Effect.succeedNone,
        supportsAck: true,
        supportsTransferables: false,
        supportsSpanPropagation: true
      })
    })
  })

/** /rpc: RpcServer for ChatRpcs on the WebSocket protocol above. */
export const layerRpcSocket = (options: RpcSocketOptions = defaultRpcSocketOptions) =>
  RpcServer.layer(ChatRpcs).pipe(Layer.provide(Layer.scoped(RpcServer.Protocol, makeRpcSocketProtocol(options))))
