import { Context, Effect } from "effect"
import {
  ChatEventProducer,
  ChatEventSource,
  ChatHistory,
  ChatPolicy,
  type CurrentUser,
  IdGenerator,
  LocalFanout,
  PodIdentity,
  RateLimiter,
  ReadRateLimiter,
  ScopeAuthorizer,
  SendDeduplicator
} from "./Ports.js"
import { PresenceHeartbeat } from "./PresenceHeartbeat.js"
import type { SendRequirements } from "./Send.js"
import { CoreSettings } from "./Settings.js"
import type { SubscribeRequirements } from "./Subscribe.js"

/** What a caller's sends and subscriptions run on, besides the caller. */
export type CallerServiceRequirements = Exclude<SendRequirements | SubscribeRequirements, CurrentUser>

/**
 * Just those services, picked from the server's context: a connection adds its caller and a request
 * its correlation id to a copy of this small context, not of every service the server has. (A tag
 * missing here is a type error: the picked context would not satisfy the requirements.)
 */
export const callerServices: Effect.Effect<
  Context.Context<CallerServiceRequirements>,
  never,
  CallerServiceRequirements
> = Effect.map(
  Effect.context<CallerServiceRequirements>(),
  Context.pick(
    ChatEventProducer,
    ChatEventSource,
    ChatHistory,
    ChatPolicy,
    CoreSettings,
    IdGenerator,
    LocalFanout,
    PodIdentity,
    PresenceHeartbeat,
    RateLimiter,
    ReadRateLimiter,
    ScopeAuthorizer,
    SendDeduplicator
  )
)
