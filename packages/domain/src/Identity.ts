import { Context } from "effect"

/** The identity of the caller, established by the interface (anonymous or from a token). */
export interface Identity {
  readonly userId: string
  readonly connectionId: string
  /** When the credentials behind this identity stop being valid (epoch ms); live subscriptions end then. */
  readonly expiresAtMs?: number | undefined
  /**
   * Whom the rate limit counts this caller as, when not `userId`: an anonymous caller is counted by
   * its client address instead.
   */
  readonly rateLimitKey?: string | undefined
}

/**
 * The caller of a request: provided by each interface's authentication (on REST the `Authentication`
 * middleware of ChatApi), read by every use case. Re-exported by `@chatify/core`.
 */
export class CurrentUser extends Context.Tag("chatify/CurrentUser")<CurrentUser, Identity>() {}
