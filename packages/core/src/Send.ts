import { Cause, Clock, Context, Duration, Effect, Exit, Option, Schedule } from "effect"
import {
  ChatEvent,
  type ChatSendRequest,
  Conflict,
  EnrichedChatEvent,
  RateLimited,
  type SendError,
  Timeout,
  validateSend
} from "@chatify/domain"
import { checkScopeAccess } from "./Access.js"
import { recordSend } from "./Metrics.js"
import {
  ChatEventProducer,
  ChatPolicy,
  CurrentUser,
  IdGenerator,
  PodIdentity,
  RateLimiter,
  ScopeAuthorizer,
  type SendClaim,
  SendDeduplicator,
  type SendKey
} from "./Ports.js"
import { traced } from "./Tracing.js"

export type SendRequirements =
  | ChatEventProducer
  | ChatPolicy
  | CurrentUser
  | IdGenerator
  | PodIdentity
  | RateLimiter
  | ScopeAuthorizer
  | SendDeduplicator

export type SendRequest = Pick<ChatSendRequest, "scopeType" | "scopeId" | "text" | "clientMessageId">

/**
 * The send pipeline: validate → authorize → rate limit → create the event → produce.
 * Every failure is typed; nothing is produced unless every check passed. With a `clientMessageId`,
 * the produce is de-duplicated per sender (see `sendOnce`). Each send is counted by outcome and
 * timed (chatify_sends_total, chatify_send_duration_seconds).
 */
export const sendMessage: (request: SendRequest) => Effect.Effect<EnrichedChatEvent, SendError, SendRequirements> =
  traced("Chat.send")((request: SendRequest) =>
    Effect.suspend(() => {
      const startedAt = performance.now()
      return Effect.onExit(send(request), (exit) =>
        Effect.sync(() => {
          const seconds = (performance.now() - startedAt) / 1000
          if (Exit.isSuccess(exit)) return recordSend("accepted", seconds)
          const failure = Cause.failureOption(exit.cause)
          if (Option.isSome(failure)) recordSend(failure.value._tag, seconds)
        }))
    })
  )

/** The policy's checks, in a span of their own while tracing is on. */
const validate = traced("Chat.validate")(validateSend)

const send = (request: SendRequest) =>
  Effect.gen(function*() {
    // The services in one step: this runs for every message, and each `yield*` is a step of the fiber.
    const services = yield* Effect.context<SendRequirements>()
    const limits = Context.get(services, ChatPolicy)
    const identity = Context.get(services, CurrentUser)
    const candidate = yield* validate(limits, {
      senderId: identity.userId,
      scopeType: request.scopeType,
      scopeId: request.scopeId,
      text: request.text,
      originPodId: Context.get(services, PodIdentity).podId,
      clientMessageId: request.clientMessageId
    })
    // validateSend checked the scope id by the rule authorizeScope applies.
    yield* checkScopeAccess(Context.get(services, ScopeAuthorizer), identity, request, "send")

    const decision = yield* Context.get(services, RateLimiter).checkAndIncrement(
      identity.rateLimitKey ?? identity.userId
    )
    if (!decision.allowed) {
      return yield* new RateLimited({
        limit: decision.limit,
        windowSeconds: decision.windowSeconds,
        retryAfterSeconds: decision.retryAfterSeconds
      })
    }

    const messageId = yield* Context.get(services, IdGenerator).next
    const createdAtMs = yield* Clock.currentTimeMillis
    // Every field is checked already (validateSend, the request schema's scopeType, the IdGenerator's
    // UUIDs, the Clock's date): the constructor need not run its validator again. The producers encode
    // with encodeChatEventJson, which sends anything it cannot vouch for through the schema.
    const chatEvent = new ChatEvent({
      messageId,
      scopeType: candidate.scopeType,
      scopeId: candidate.scopeId,
      senderId: candidate.senderId,
      text: candidate.text,
      createdAtUtc: new Date(createdAtMs),
      originPodId: candidate.originPodId
    }, true)
    if (request.clientMessageId !== undefined) {
      return yield* sendOnce(
        services,
        { senderId: identity.userId, clientMessageId: request.clientMessageId },
        chatEvent
      )
    }
    const position = yield* Context.get(services, ChatEventProducer).produce(chatEvent)
    // chatEvent was validated just above, and the log's positions are non-negative integers.
    return new EnrichedChatEvent({ chatEvent, partition: position.partition, offset: position.offset }, true)
  })

/** How long a repeat waits for the attempt holding its key before it answers Timeout (retry it). */
export const IN_PROGRESS_WAIT = Duration.seconds(5)

// Polls the key from 10 ms, doubling, at most 100 ms apart: a produce takes milliseconds.
const inProgressPolling = Schedule.exponential("10 millis").pipe(
  Schedule.union(Schedule.spaced("100 millis")),
  Schedule.upTo(IN_PROGRESS_WAIT)
)

const sameMessage = (a: ChatEvent, b: ChatEvent): boolean =>
  a.scopeType === b.scopeType && a.scopeId === b.scopeId && a.text === b.text

const reusedKey = (key: SendKey) =>
  new Conflict({
    message: `clientMessageId ${JSON.stringify(key.clientMessageId)} was already used for a different message ` +
      "(another scope or text) within the idempotency window"
  })

/**
 * A send with a clientMessageId: claim (sender, clientMessageId), then
 * - Sent: an earlier send with this key completed: its EnrichedChatEvent, nothing produced;
 * - InProgress: another attempt holds the key (a concurrent duplicate): poll until it settles,
 *   for up to IN_PROGRESS_WAIT, then Timeout (a retry finds the result);
 * - Claimed: produce the claimed event and record the result; if the produce fails (or is
 *   interrupted), release the key so a retry can claim it. The claimed event is the first
 *   attempt's when that one did not complete: a failed produce may still have reached the log,
 *   and the retry then writes the same messageId, which the history keeps once.
 * A key reused for another scope or text is a Conflict, whatever state it is in.
 */
const sendOnce = (services: Context.Context<SendRequirements>, key: SendKey, candidate: ChatEvent) => {
  const deduplicator = Context.get(services, SendDeduplicator)
  const release = Effect.catchAll(
    deduplicator.release(key, candidate.messageId),
    (error) => Effect.logWarning(`Could not release a send's clientMessageId: ${error.message}`)
  )
  return deduplicator.claim(key, candidate).pipe(
    Effect.filterOrFail(
      (claim): claim is Exclude<SendClaim, { readonly _tag: "InProgress" }> => claim._tag !== "InProgress",
      () => new Timeout({ operation: "waiting for the earlier send with the same clientMessageId" })
    ),
    Effect.retry({ schedule: inProgressPolling, while: (error) => error._tag === "Timeout" }),
    Effect.flatMap((claim): Effect.Effect<EnrichedChatEvent, SendError> => {
      if (claim._tag === "Sent") {
        return sameMessage(claim.sent.chatEvent, candidate) ? Effect.succeed(claim.sent) : Effect.fail(reusedKey(key))
      }
      const event = claim.event
      if (!sameMessage(event, candidate)) return Effect.zipRight(release, Effect.fail(reusedKey(key)))
      return Context.get(services, ChatEventProducer).produce(event).pipe(
        Effect.onError(() => release),
        Effect.map((position) =>
          new EnrichedChatEvent({ chatEvent: event, partition: position.partition, offset: position.offset }, true)
        ),
        // the message is in the log: a result that could not be recorded is logged, not failed (the
        // key's lease runs out, and a repeat then produces the same event again: one message in the history)
        Effect.tap((sent) =>
          Effect.catchAll(
            deduplicator.complete(key, sent),
            (error) => Effect.logWarning(`Could not record the result of a send's clientMessageId: ${error.message}`)
          )
        )
      )
    })
  )
}
