/**
 * The original's ChatHubService as an adapter on the core use cases: JoinScopeAsync and
 * LeaveScopeAsync manage `subscribe` subscriptions, SendAsync runs `sendMessage`, and events reach
 * the client as `ReceiveMessage` with the ChatEvent wire JSON. No send pipeline of its own.
 */
import { Context, Effect, Either, ExecutionStrategy, Exit, Schema, Scope } from "effect"
import {
  type CallerServiceRequirements,
  CorrelationId,
  CurrentUser,
  sendMessage,
  subscribeInto,
  type SubscriptionSink,
  traced
} from "@chatify/core"
import {
  type ChatError,
  encodeChatEventJson,
  ChatScopeType,
  ClientMessageId,
  EnrichedChatEvent,
  problemOf,
  type ScopeRef,
  DIRECT_MESSAGE_PREFIX,
  ScopeTypes,
  type SubscriptionItem,
  Unexpected
} from "@chatify/domain"
import type { Principal } from "../Auth.js"
import { tooManySubscriptions } from "../Limits.js"
import type { ShutdownGate } from "../Runtime.js"
import {
  type Hub,
  type HubClient,
  HubError,
  type HubMethod,
  hubMethod,
  type HubResult,
  type InvocationContext,
  JsonResult,
  TOKEN_EXPIRED
} from "./Connection.js"
import { encodedOnce, enrichedChatEventJson } from "../realtime/EventJson.js"
import { LogFields } from "../Logging.js"
import { textFrame } from "../realtime/Outbox.js"
import * as Protocol from "./Protocol.js"
import { correlationIdOf } from "../Http.js"

/** The start of the Close error a client gets when it falls too far behind. */
export const CONNECTION_TOO_SLOW = "Connection too slow"

/** What the hub's use cases need besides the caller, captured once when the routes are built. */
export type ChatHubServices = CallerServiceRequirements

/**
 * One connection's part of the hub: its client and the scopes it joined. The hub's methods are
 * built once for every connection and find the connection's part among their services.
 */
export class HubSession {
  readonly memberships = new Map<string, Scope.CloseableScope>()
  /** Set when the connection ended: a join still finishing closes what it opened instead of keeping it. */
  released = false
  constructor(readonly client: HubClient) {}
}

export class ChatHubSession extends Context.Tag("chatify/ChatHubSession")<ChatHubSession, HubSession>() {}

/** What an invocation runs with: the shared services, its caller and session, its correlation id and log fields. */
export type InvocationServices = ChatHubServices | CurrentUser | ChatHubSession | CorrelationId | LogFields

export interface ChatHubDependencies {
  /** The ReceiveMessage frame of an event (see `makeReceiveMessageEncoder`). */
  readonly encodeReceiveMessage: (event: EnrichedChatEvent) => Buffer | undefined
  readonly gate: ShutdownGate["Type"]
  readonly services: Context.Context<ChatHubServices>
  /** Scopes one connection may have joined at once (CHATIFY__LIMITS__MAXSUBSCRIPTIONSPERCONNECTION). */
  readonly maxMemberships: number
}

// built once: a hub is built per connection
const ScopeIdParameter = Schema.Tuple(Schema.String)

/**
 * SendAsync's argument, the original ChatSendRequestDto; a `senderId` in it is ignored (it is the
 * caller). `clientMessageId` is optional, and null counts as absent (as .NET serializers write it).
 */
export const ChatSendRequestArgument = Schema.Struct({
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  text: Schema.String,
  clientMessageId: Schema.optionalWith(ClientMessageId, { nullable: true })
})
const SendParameter = Schema.Tuple(ChatSendRequestArgument)

/** SendAsync's result: the EnrichedChatEvent's JSON, spliced rather than encoded through the schema. */
const enrichedJson = (sent: EnrichedChatEvent) =>
  Either.map(enrichedChatEventJson(sent), (json) => new JsonResult(json))

/**
 * A typed error as the client reads it: the ProblemDetails title and detail, as over HTTP. A 500
 * says nothing more than that something went wrong.
 */
export const errorMessageOf = (error: ChatError, target: string): string => {
  const problem = problemOf(error)
  return problem.status === 500
    ? `An unexpected error occurred invoking '${target}' on the server.`
    : `${problem.title}: ${problem.detail}`
}

/**
 * What every invocation of a connection runs with, the hub's counterpart of ChatRpcs' middleware:
 * the caller, authenticated once when the connection opened, the connection's session, and each
 * invocation's own correlation id (its X-Correlation-ID header when valid). Its fiber starts with
 * this context, which also tells the logger who and what (a provide or log annotation inside it
 * would be a fiber-ref update, and a send pays for every one).
 */
export const makeInvocationServices = (
  services: Context.Context<ChatHubServices>,
  principal: Principal,
  session: HubSession
): (context: InvocationContext) => Context.Context<InvocationServices> =>
(context) => {
  // one copy of the services per invocation (Context.add copies them at each call), none per connection
  const invocationServices = new Map(services.unsafeMap)
  invocationServices.set(CurrentUser.key, principal)
  invocationServices.set(ChatHubSession.key, session)
  invocationServices.set(CorrelationId.key, correlationIdOf(context.headers))
  // userId and connectionId reach the logs from CurrentUser (see Logging.ts)
  invocationServices.set(LogFields.key, { target: context.target, invocationId: context.invocationId ?? "" })
  return Context.unsafeMake<InvocationServices>(invocationServices)
}

/**
 * A hub method that is only its use case: it runs with `makeInvocationServices`' context, in a
 * server span `ChatHub.{method}` while tracing is on, and a typed error becomes the Completion's
 * error, the ProblemDetails title and detail as over HTTP (a defect is the connection's to answer,
 * without internals).
 */
const useCase = <A extends ReadonlyArray<unknown>, I>(
  method: string,
  parameters: Schema.Schema<A, I, never> & { readonly elements: ReadonlyArray<unknown> },
  run: (args: A) => Effect.Effect<HubResult, ChatError, InvocationServices>,
  options?: { readonly pipelined?: boolean }
): [string, HubMethod<InvocationServices>] => {
  const invoke = traced(`ChatHub.${method}`, { kind: "server" })(run)
  return [
    method,
    hubMethod(
      parameters,
      (args, context) =>
        Effect.mapError(invoke(args), (error) => new HubError({ message: errorMessageOf(error, context.target) })),
      options
    )
  ]
}

/** The ReceiveMessage record of an event as a WebSocket frame, built once for every connection it reaches. */
export const makeReceiveMessageEncoder = () =>
  encodedOnce((event): Buffer | undefined => {
    const encoded = encodeChatEventJson(event.chatEvent)
    if (Either.isRight(encoded)) return textFrame(Protocol.invocationJsonRecord("ReceiveMessage", encoded.right))
    Effect.runSync(Effect.logError("Could not encode a chat event for ReceiveMessage"))
    return undefined
  })

/**
 * Delivers a membership's events straight from the fan-out into the connection's outbox. A client
 * that falls too far behind is closed (it reconnects and joins again); any other end of a
 * membership closes the connection too, saying why.
 */
const sinkFor = (
  client: HubClient,
  scope: ScopeRef,
  encodeReceiveMessage: ChatHubDependencies["encodeReceiveMessage"]
): SubscriptionSink => {
  const push = (item: SubscriptionItem): boolean => {
    if (!(item instanceof EnrichedChatEvent)) return true
    const record = encodeReceiveMessage(item)
    if (record === undefined) return true
    if (!client.outbox.hasRoom()) return false
    client.outbox.writeFrame(record)
    return true
  }
  return {
    push,
    pushReplay: (events) => Effect.sync(() => events.every(push)),
    fail: (error) =>
      client.close({
        error: error._tag === "Unauthenticated"
          ? TOKEN_EXPIRED
          : error._tag === "SubscriptionLagged"
          ? `${CONNECTION_TOO_SLOW}: more than ${client.outbox.limitBytes} bytes were waiting for it.`
          : `The subscription to '${scope.scopeId}' ended: ${errorMessageOf(error, "JoinScopeAsync")}`,
        allowReconnect: true
      })
  }
}

/**
 * The chat hub: its methods are built once, and each connection gets a session (its client and
 * memberships) that its invocations run with; the memberships close when the connection ends
 * (`release`).
 */
export const makeChatHub = (dependencies: ChatHubDependencies) => {
  const { encodeReceiveMessage, gate, maxMemberships, services } = dependencies

  // The original groups connections by scopeId alone and its JoinScopeAsync takes only that id: a
  // direct-message id (dm:…, see directMessageScopeId) joins that DM scope — where the authorizer
  // admits only its two members, and a non-canonical one is refused naming the canonical id — and
  // every other id joins the CHANNEL of that name.
  const join = (scopeId: string) =>
    Effect.gen(function*() {
      const session = yield* ChatHubSession
      const { memberships } = session
      if (session.released || memberships.has(scopeId)) return
      if (memberships.size >= maxMemberships) return yield* tooManySubscriptions(maxMemberships)
      const scope: ScopeRef = {
        scopeType: scopeId.startsWith(DIRECT_MESSAGE_PREFIX) ? ScopeTypes.DirectMessage : ScopeTypes.Channel,
        scopeId
      }
      const membership = yield* Scope.make(ExecutionStrategy.sequential)
      // live once this returns: the client hears of the join after the fan-out knows it
      const sink = sinkFor(session.client, scope, encodeReceiveMessage)
      yield* Scope.extend(subscribeInto(scope, undefined, sink), membership).pipe(
        Effect.onError((cause) => Scope.close(membership, Exit.failCause(cause)))
      )
      // released meanwhile, while the subscribe ran (the flag is set from another fiber)
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
      if (session.released) return yield* Scope.close(membership, Exit.void)
      memberships.set(scopeId, membership)
    })

  const leave = (scopeId: string) =>
    Effect.flatMap(ChatHubSession, ({ memberships }) => {
      const membership = memberships.get(scopeId)
      if (membership === undefined) return Effect.void
      memberships.delete(scopeId)
      return Scope.close(membership, Exit.void)
    })

  const methods = new Map<string, HubMethod<InvocationServices>>([
    useCase("JoinScopeAsync", ScopeIdParameter, ([scopeId]) => join(scopeId)),
    useCase("LeaveScopeAsync", ScopeIdParameter, ([scopeId]) => leave(scopeId)),
    // Returns the EnrichedChatEvent {chatEvent, partition, offset}: the original's command result
    // (EnrichedChatEventDto), the same body as POST /api/chat/send.
    useCase("SendAsync", SendParameter, ([request]) =>
      gate.track(sendMessage(request)).pipe(
        Effect.flatMap((sent) =>
          Either.match(enrichedJson(sent), {
            onLeft: () => Effect.fail(new Unexpected({ message: "could not encode the result" })),
            onRight: Effect.succeed
          })
        )
      ), { pipelined: true })
  ])

  /** The hub of one connection, whose caller is `principal`. */
  return (principal: Principal, client: HubClient): Hub<InvocationServices> => {
    const session = new HubSession(client)
    const release = Effect.suspend(() => {
      session.released = true
      const open = Array.from(session.memberships.values())
      session.memberships.clear()
      return Effect.forEach(open, (membership) => Scope.close(membership, Exit.void), { discard: true })
    })
    return { methods, servicesFor: makeInvocationServices(services, principal, session), release }
  }
}
