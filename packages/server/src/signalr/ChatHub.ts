/**
 * The original's ChatHubService as an adapter on the core use cases: JoinScopeAsync and
 * LeaveScopeAsync manage `subscribe` subscriptions, SendAsync runs `sendMessage`, and events reach
 * the client as `ReceiveMessage` with the ChatEvent wire JSON. No send pipeline of its own.
 */
import { type Context, Effect, Either, ExecutionStrategy, Exit, type Mailbox, Option, Schema, Scope } from "effect"
import {
  CorrelationId,
  CurrentUser,
  sendMessage,
  type SendRequirements,
  subscribe,
  type SubscribeRequirements
} from "@chatify/core"
import {
  type ChatError,
  ChatEvent,
  ChatScopeType,
  EnrichedChatEvent,
  positionOf,
  problemOf,
  type ScopeRef,
  directMessageMembers,
  ScopeTypes,
  type StreamPosition,
  type SubscribeError,
  type SubscriptionItem,
  Unexpected
} from "@chatify/domain"
import type { Principal } from "../Auth.js"
import type { ShutdownGate } from "../Runtime.js"
import { type Hub, type HubClient, HubError, hubMethod, type InvocationContext, TOKEN_EXPIRED } from "./Connection.js"

/** What the hub's use cases need besides the caller, captured once when the routes are built. */
export type ChatHubServices = Exclude<SendRequirements | SubscribeRequirements, CurrentUser>

export interface ChatHubDependencies {
  readonly principal: Principal
  readonly gate: ShutdownGate["Type"]
  readonly services: Context.Context<ChatHubServices>
}

const CORRELATION_HEADER = "x-correlation-id"
const validCorrelationId = /^[A-Za-z0-9._:-]{1,128}$/u

/** SendAsync's argument, the original ChatSendRequestDto; a `senderId` in it is ignored (it is the caller). */
export const ChatSendRequestArgument = Schema.Struct({
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  text: Schema.String
})

const encodeChatEvent = Schema.encodeEither(ChatEvent)
const encodeEnriched = Schema.encodeEither(EnrichedChatEvent)

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

interface Attempt {
  readonly mailbox: Mailbox.ReadonlyMailbox<SubscriptionItem, SubscribeError>
  readonly scope: Scope.CloseableScope
  /** The last position delivered (or where the subscription went live): a lagged one resumes after it. */
  position: StreamPosition | undefined
}

/** Builds the chat hub of one connection; memberships close with the connection's scope. */
export const makeChatHub = (dependencies: ChatHubDependencies) => (client: HubClient): Effect.Effect<Hub, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { gate, principal, services } = dependencies
    const connectionScope = yield* Effect.scope
    const memberships = new Map<string, Scope.CloseableScope>()

    /** Each invocation runs as the caller, with its own correlation id, on the shared services. */
    const asCaller = (context: InvocationContext) => <A, E>(effect: Effect.Effect<A, E, ChatHubServices | CurrentUser>) => {
      const requested = context.headers[CORRELATION_HEADER]
      const correlationId = requested !== undefined && validCorrelationId.test(requested) ? requested : crypto.randomUUID()
      return effect.pipe(
        Effect.provideService(CurrentUser, principal),
        Effect.provide(services),
        Effect.provideService(CorrelationId, correlationId),
        Effect.annotateLogs({ correlationId, userId: principal.userId, target: context.target })
      )
    }

    const failWith = (target: string) => (error: ChatError) => new HubError({ message: errorMessageOf(error, target) })

    /** Subscribes in a scope of its own under `parent` and waits for the Subscribed marker: from then on it is live. */
    const attempt = (scope: ScopeRef, after: StreamPosition | undefined, parent: Scope.Scope) =>
      Effect.gen(function*() {
        const own = yield* Scope.fork(parent, ExecutionStrategy.sequential)
        return yield* Effect.gen(function*() {
          const mailbox = yield* Scope.extend(subscribe(scope, after), own)
          const first = yield* Effect.catchTag(
            mailbox.take,
            "NoSuchElementException",
            () => Effect.fail(new Unexpected({ message: "the subscription ended before it started" }))
          )
          const position = first instanceof EnrichedChatEvent ? positionOf(first) : first.position ?? after
          const started: Attempt = { mailbox, scope: own, position }
          return started
        }).pipe(Effect.onError((cause) => Scope.close(own, Exit.failCause(cause))))
      })

    /** Forwards events as ReceiveMessage, a mailbox chunk per frame; ends (void) when the subscription was closed. */
    const forward = (current: Attempt): Effect.Effect<void, SubscribeError> =>
      Effect.gen(function*() {
        for (;;) {
          const [items, done] = yield* current.mailbox.takeAll
          const invocations = []
          for (const item of items) {
            if (!(item instanceof EnrichedChatEvent)) continue
            const encoded = encodeChatEvent(item.chatEvent)
            if (Either.isLeft(encoded)) {
              yield* Effect.logError("Could not encode a chat event for ReceiveMessage", encoded.left)
              continue
            }
            invocations.push({ target: "ReceiveMessage", arguments: [encoded.right] })
            current.position = positionOf(item)
          }
          if (invocations.length > 0) yield* client.send(invocations)
          if (done) return
        }
      })

    /**
     * Keeps a membership delivering: a lagged subscription is re-joined after its last position (no
     * gap, no duplicate); any other end of it closes the connection so the client reconnects and
     * joins again.
     */
    const deliver = (scope: ScopeRef, first: Attempt, membership: Scope.Scope) =>
      Effect.gen(function*() {
        let current = first
        for (;;) {
          const ended = yield* Effect.either(forward(current))
          yield* Scope.close(current.scope, Exit.void)
          if (Either.isRight(ended)) return
          const error = ended.left
          if (error._tag !== "SubscriptionLagged") {
            yield* Effect.logInfo("A SignalR membership ended", error._tag)
            return yield* client.close({
              error: error._tag === "Unauthenticated"
                ? TOKEN_EXPIRED
                : `The subscription to '${scope.scopeId}' ended: ${errorMessageOf(error, "JoinScopeAsync")}`,
              allowReconnect: true
            })
          }
          if (current.position === undefined) {
            // the partition was empty when it went live and nothing was delivered: nothing to resume after
            yield* Effect.logWarning("A lagged SignalR membership has no position; re-joining live")
          } else {
            yield* Effect.logInfo("A SignalR membership lagged; re-joining after its last position")
          }
          const next = yield* Effect.either(attempt(scope, current.position, membership))
          if (Either.isLeft(next)) {
            return yield* client.close({
              error: `The subscription to '${scope.scopeId}' ended: ${errorMessageOf(next.left, "JoinScopeAsync")}`,
              allowReconnect: true
            })
          }
          current = next.right
        }
      })

    // The original groups connections by scopeId alone and its JoinScopeAsync takes only that id: a
    // canonical direct-message id (dm:…, see directMessageScopeId) joins that DM scope — where the
    // authorizer admits only its two members — and every other id joins the CHANNEL of that name.
    const join = (scopeId: string) =>
      Effect.gen(function*() {
        if (memberships.has(scopeId)) return
        const scope: ScopeRef = {
          scopeType: Option.isSome(directMessageMembers(scopeId)) ? ScopeTypes.DirectMessage : ScopeTypes.Channel,
          scopeId
        }
        const membership = yield* Scope.fork(connectionScope, ExecutionStrategy.sequential)
        const first = yield* attempt(scope, undefined, membership).pipe(
          Effect.onError((cause) => Scope.close(membership, Exit.failCause(cause)))
        )
        memberships.set(scopeId, membership)
        yield* Effect.forkIn(deliver(scope, first, membership), membership)
      })

    const leave = (scopeId: string) =>
      Effect.suspend(() => {
        const membership = memberships.get(scopeId)
        if (membership === undefined) return Effect.void
        memberships.delete(scopeId)
        return Scope.close(membership, Exit.void)
      })

    const methods = new Map([
      [
        "JoinScopeAsync",
        hubMethod(Schema.Tuple(Schema.String), ([scopeId], context) =>
          join(scopeId).pipe(asCaller(context), Effect.mapError(failWith(context.target))))
      ],
      [
        "LeaveScopeAsync",
        hubMethod(Schema.Tuple(Schema.String), ([scopeId]) => leave(scopeId))
      ],
      [
        // Returns the EnrichedChatEvent {chatEvent, partition, offset}: the original's command result
        // (EnrichedChatEventDto), the same body as POST /api/chat/send.
        "SendAsync",
        hubMethod(Schema.Tuple(ChatSendRequestArgument), ([request], context) =>
          gate.track(sendMessage(request)).pipe(
            Effect.flatMap((sent) =>
              Either.match(encodeEnriched(sent), {
                onLeft: () => Effect.fail(new Unexpected({ message: "could not encode the result" })),
                onRight: Effect.succeed
              })
            ),
            asCaller(context),
            Effect.mapError(failWith(context.target))
          ))
      ]
    ])
    return { methods }
  })
