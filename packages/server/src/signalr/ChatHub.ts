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
  type SubscriptionSink
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
  type InvocationContext,
  JsonResult,
  TOKEN_EXPIRED
} from "./Connection.js"
import { encodedOnce, enrichedChatEventJson } from "../realtime/EventJson.js"
import { LogFields } from "../Logging.js"
import { textFrame } from "../realtime/Outbox.js"
import * as Protocol from "./Protocol.js"
import { acceptedCorrelationId, CORRELATION_HEADER } from "../Http.js"

/** The start of the Close error a client gets when it falls too far behind. */
export const CONNECTION_TOO_SLOW = "Connection too slow"

/** What the hub's use cases need besides the caller, captured once when the routes are built. */
export type ChatHubServices = CallerServiceRequirements

/** What an invocation runs with: the shared services, its caller, its correlation id and log fields. */
export type InvocationServices = ChatHubServices | CurrentUser | CorrelationId | LogFields

export interface ChatHubDependencies {
  readonly principal: Principal
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

/** The ReceiveMessage record of an event as a WebSocket frame, built once for every connection it reaches. */
export const makeReceiveMessageEncoder = () =>
  encodedOnce((event): Buffer | undefined => {
    const encoded = encodeChatEventJson(event.chatEvent)
    if (Either.isRight(encoded)) return textFrame(Protocol.invocationJsonRecord("ReceiveMessage", encoded.right))
    Effect.runSync(Effect.logError("Could not encode a chat event for ReceiveMessage"))
    return undefined
  })

/** Builds the chat hub of one connection; memberships close with the connection's scope. */
export const makeChatHub =
  (dependencies: ChatHubDependencies) =>
  (client: HubClient): Effect.Effect<Hub<InvocationServices>, never, Scope.Scope> =>
    Effect.gen(function*() {
      const { encodeReceiveMessage, gate, maxMemberships, principal, services } = dependencies
      const connectionScope = yield* Effect.scope
      const memberships = new Map<string, Scope.CloseableScope>()
      // the caller's services, built once per connection rather than merged per invocation
      const callerServices = Context.add(services, CurrentUser, principal)

      /**
       * Each invocation runs as the caller, with its own correlation id, on the shared services: its
       * fiber starts with this context, which also tells the logger who and what (a provide or log
       * annotation inside it would be a fiber-ref update, and a send pays for every one).
       */
      const servicesFor = (context: InvocationContext): Context.Context<InvocationServices> => {
        const correlationId = acceptedCorrelationId(context.headers[CORRELATION_HEADER]) ?? crypto.randomUUID()
        // userId and connectionId reach the logs from CurrentUser (see Logging.ts)
        const logFields = { target: context.target, invocationId: context.invocationId ?? "" }
        return Context.add(Context.add(callerServices, CorrelationId, correlationId), LogFields, logFields)
      }

      const failWith = (target: string) => (error: ChatError) =>
        new HubError({ message: errorMessageOf(error, target) })

      /**
       * Delivers a membership's events straight from the fan-out into the connection's outbox. A
       * client that falls too far behind is closed (it reconnects and joins again); any other end of
       * a membership closes the connection too, saying why.
       */
      const sinkFor = (scope: ScopeRef): SubscriptionSink => {
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

      // The original groups connections by scopeId alone and its JoinScopeAsync takes only that id: a
      // direct-message id (dm:…, see directMessageScopeId) joins that DM scope — where the authorizer
      // admits only its two members, and a non-canonical one is refused naming the canonical id — and
      // every other id joins the CHANNEL of that name.
      const join = (scopeId: string) =>
        Effect.gen(function*() {
          if (memberships.has(scopeId)) return
          if (memberships.size >= maxMemberships) return yield* tooManySubscriptions(maxMemberships)
          const scope: ScopeRef = {
            scopeType: scopeId.startsWith(DIRECT_MESSAGE_PREFIX) ? ScopeTypes.DirectMessage : ScopeTypes.Channel,
            scopeId
          }
          const membership = yield* Scope.fork(connectionScope, ExecutionStrategy.sequential)
          // live once this returns: the client hears of the join after the fan-out knows it
          yield* Scope.extend(subscribeInto(scope, undefined, sinkFor(scope)), membership).pipe(
            Effect.onError((cause) => Scope.close(membership, Exit.failCause(cause)))
          )
          memberships.set(scopeId, membership)
        })

      const leave = (scopeId: string) =>
        Effect.suspend(() => {
          const membership = memberships.get(scopeId)
          if (membership === undefined) return Effect.void
          memberships.delete(scopeId)
          return Scope.close(membership, Exit.void)
        })

      const methods = new Map<string, HubMethod<InvocationServices>>([
        [
          "JoinScopeAsync",
          hubMethod(ScopeIdParameter, ([scopeId], context) => Effect.mapError(join(scopeId), failWith(context.target)))
        ],
        [
          "LeaveScopeAsync",
          hubMethod(ScopeIdParameter, ([scopeId]) => leave(scopeId))
        ],
        [
          // Returns the EnrichedChatEvent {chatEvent, partition, offset}: the original's command result
          // (EnrichedChatEventDto), the same body as POST /api/chat/send.
          "SendAsync",
          hubMethod(SendParameter, ([request], context) =>
            gate.track(sendMessage(request)).pipe(
              Effect.flatMap((sent) =>
                Either.match(enrichedJson(sent), {
                  onLeft: () => Effect.fail(new Unexpected({ message: "could not encode the result" })),
                  onRight: Effect.succeed
                })
              ),
              Effect.mapError(failWith(context.target))
            ), { pipelined: true })
        ]
      ])
      return { methods, servicesFor }
    })
