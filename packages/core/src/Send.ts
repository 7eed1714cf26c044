import { Clock, Effect } from "effect"
import { ChatEvent, type ChatSendRequest, EnrichedChatEvent, RateLimited, type SendError, validateSend } from "@chatify/domain"
import { authorizeScope } from "./Access.js"
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
  Effect.gen(function*() {
    const limits = yield* ChatPolicy
    const { podId } = yield* PodIdentity
    const identity = yield* CurrentUser
    const candidate = yield* validateSend(limits, {
      senderId: identity.userId,
      scopeType: request.scopeType,
      scopeId: request.scopeId,
      text: request.text,
      originPodId: podId
    })
    yield* authorizeScope(request, "send")

    const decision = yield* (yield* RateLimiter).checkAndIncrement(identity.userId)
    if (!decision.allowed) {
      return yield* new RateLimited({
        limit: decision.limit,
        windowSeconds: decision.windowSeconds,
        retryAfterSeconds: decision.retryAfterSeconds
      })
    }

    const messageId = yield* (yield* IdGenerator).next
    const createdAtMs = yield* Clock.currentTimeMillis
    const chatEvent = new ChatEvent({
      messageId,
      scopeType: candidate.scopeType,
      scopeId: candidate.scopeId,
      senderId: candidate.senderId,
      text: candidate.text,
      createdAtUtc: new Date(createdAtMs),
      originPodId: candidate.originPodId
    })
    const position = yield* (yield* ChatEventProducer).produce(chatEvent)
    return new EnrichedChatEvent({ chatEvent, partition: position.partition, offset: position.offset })
  }).pipe(
    Effect.withSpan("chat.send", { attributes: { "chat.scope_id": request.scopeId } })
  )
