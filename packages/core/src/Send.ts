import { Clock, Context, Effect } from "effect"
import { ChatEvent, type ChatSendRequest, EnrichedChatEvent, RateLimited, type SendError, validateSend } from "@chatify/domain"
import { checkScopeAccess } from "./Access.js"
import {
  ChatEventProducer,
  ChatPolicy,
  CurrentUser,
  IdGenerator,
  PodIdentity,
  RateLimiter,
  ScopeAuthorizer
} from "./Ports.js"

export type SendRequirements =
  | ChatEventProducer
  | ChatPolicy
  | CurrentUser
  | IdGenerator
  | PodIdentity
  | RateLimiter
  | ScopeAuthorizer

/**
 * The send pipeline: validate → authorize → rate limit → create the event → produce.
 * Every failure is typed; nothing is produced unless every check passed.
 */
export const sendMessage = (
  request: Pick<ChatSendRequest, "scopeType" | "scopeId" | "text">
): Effect.Effect<EnrichedChatEvent, SendError, SendRequirements> =>
  // The span times every send but is not made the parent of what runs inside: nothing there opens a
  // span of its own, and providing it (a copy of the whole context per send) cost more than the span
  // itself; nor does it capture a call-site stack trace (an Error per send).
  Effect.useSpan(
    "chat.send",
    { attributes: { "chat.scope_id": request.scopeId }, captureStackTrace: false },
    () => send(request)
  )

const send = (request: Pick<ChatSendRequest, "scopeType" | "scopeId" | "text">) =>
  Effect.gen(function*() {
    // The services in one step: this runs for every message, and each `yield*` is a step of the fiber.
    const services = yield* Effect.context<SendRequirements>()
    const limits = Context.get(services, ChatPolicy)
    const identity = Context.get(services, CurrentUser)
    const candidate = yield* validateSend(limits, {
      senderId: identity.userId,
      scopeType: request.scopeType,
      scopeId: request.scopeId,
      text: request.text,
      originPodId: Context.get(services, PodIdentity).podId
    })
    // validateSend checked the scope id by the rule authorizeScope applies.
    yield* checkScopeAccess(Context.get(services, ScopeAuthorizer), identity, request, "send")

    const decision = yield* Context.get(services, RateLimiter).checkAndIncrement(identity.userId)
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
    const position = yield* Context.get(services, ChatEventProducer).produce(chatEvent)
    // chatEvent was validated just above, and the log's positions are non-negative integers.
    return new EnrichedChatEvent({ chatEvent, partition: position.partition, offset: position.offset }, true)
  })
