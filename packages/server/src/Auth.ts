import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Clock, Config, ConfigError, Context, Data, Effect, Either, Layer, Option, Redacted } from "effect"
import { createHmac, createPublicKey, createSecretKey, type KeyObject, randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import { createLocalJWKSet, errors as joseErrors, type JWK, type JWTPayload, jwtVerify } from "jose"
import type { Identity } from "@chatify/core"
import { Unauthenticated } from "@chatify/domain"
import { flatAscii } from "./Runtime.js"

/** An authenticated caller: who, on which connection, and until when the credentials hold. */
export interface Principal extends Identity {
  /** When the token expires (epoch ms); undefined for anonymous identities. */
  readonly expiresAtMs: number | undefined
}

/**
 * Turns a connection's credentials into a Principal. With authentication configured a valid bearer
 * token is required and the user is its subject; without it every connection is anonymous.
 */
export class Authenticator extends Context.Tag("chatify/Authenticator")<Authenticator, {
  readonly enabled: boolean
  /**
   * `bearer` is the raw token from `Authorization: Bearer …`, or on a WebSocket upgrade (/rpc,
   * /hubs/chat) the `access_token` query parameter. `clientAddress` (see ClientAddresses) is whom
   * an anonymous caller's rate limit counts. `anonymousClient` is the client an anonymous identity
   * stands for when that is not the connection (REST: `address:{clientAddress}`); see
   * AnonymousAuthenticator.
   */
  readonly authenticate: (
    bearer: string | undefined,
    connectionId: string,
    clientAddress?: string,
    anonymousClient?: string
  ) => Effect.Effect<Principal, Unauthenticated>
  /**
   * `authenticate`'s answer when it needs no I/O (anonymous identities); undefined when the
   * credentials must be checked asynchronously. WebSocket upgrades use it to admit a connection
   * without starting a fiber for it.
   */
  readonly authenticateNow?: (
    bearer: string | undefined,
    connectionId: string,
    clientAddress?: string,
    anonymousClient?: string
  ) => Either.Either<Principal, Unauthenticated> | undefined
}>() {}

/** `anon_` and 20 hex digits: every anonymous identity, on every interface. */
export const ANONYMOUS_USER_ID = /^anon_[0-9a-f]{20}$/u

/**
 * The anonymous user id of a client: `anon_` and 20 hex digits of an HMAC-SHA256 of the client
 * (a connection id, `address:{ip}`) under a key of this process, so the id is stable for the
 * process's life and never reveals the address it stands for (a plain hash of an IPv4 address is
 * undone by trying all 2^32).
 */
export const makeAnonymousUserId = (key: Uint8Array) => {
  // imported once: an HMAC over a raw key imports the key again on every call
  const secret = createSecretKey(key)
  return (client: string): string =>
    flatAscii(`anon_${createHmac("sha256", secret).update(client).digest("hex").slice(0, 20)}`)
}

/**
 * Without authentication (as the original design) every caller is anonymous, one identity per
 * client, in one format on every interface (`anon_` + 20 hex digits, see makeAnonymousUserId):
 * - /rpc and /hubs/chat: per connection, as SignalR's groups and the original's `anon_{connectionId}`
 *   (a reconnect is a new identity);
 * - REST: per client address (as ClientAddresses resolves it, behind trusted proxies too), as
 *   REST has no connection of its own and cookies are not used; clients behind one NAT or an
 *   untrusted proxy share one identity, as they share one rate limit. Per process: another pod, or
 *   a restart, gives another id.
 * The rate limit counts anonymous callers by their address on every interface.
 */
export const AnonymousAuthenticator = Layer.sync(Authenticator, () => {
  const anonymousUserId = makeAnonymousUserId(randomBytes(32))
  const principal = (connectionId: string, clientAddress?: string, anonymousClient?: string): Principal => ({
    userId: anonymousUserId(anonymousClient ?? `connection:${connectionId}`),
    connectionId,
    expiresAtMs: undefined,
    rateLimitKey: clientAddress === undefined ? undefined : `address:${clientAddress}`
  })
  return {
    enabled: false,
    authenticate: (_bearer, connectionId, clientAddress, anonymousClient) =>
      Effect.sync(() => principal(connectionId, clientAddress, anonymousClient)),
    authenticateNow: (_bearer, connectionId, clientAddress, anonymousClient) =>
      Either.right(principal(connectionId, clientAddress, anonymousClient))
  }
})

/**
 * RFC 6750 §3 `WWW-Authenticate` of a 401: `error="invalid_token"` only when a bearer token was
 * sent and refused; a request that sent none gets the plain challenge (§3.1).
 */
export const bearerChallenge = (bearer: string | undefined): string =>
  bearer !== undefined && bearer.length > 0 ? `Bearer error="invalid_token"` : "Bearer"

/** The token of an `Authorization: Bearer …` header; "" for any other scheme (so it is refused). */
export const bearerOfHeader = (header: string): string => /^Bearer\s+(\S+)\s*$/iu.exec(header)?.[1] ?? ""

/** The path of a request URL, without its query. */
export const pathOf = (url: string): string => url.split("?")[0] ?? url

/**
 * The bearer token of an HTTP request (REST, SignalR negotiate): its Authorization header only.
 * `access_token` in the query is read only on WebSocket upgrades (`Gateway.ts`), where browsers
 * cannot set headers; on HTTP routes it is ignored (see `withoutQueryAccessToken`).
 */
export const bearerOf = (request: HttpServerRequest.HttpServerRequest): string | undefined => {
  const header = request.headers["authorization"]
  return header === undefined ? undefined : bearerOfHeader(header)
}

/** The query parameter that carries a token on WebSocket upgrades. */
export const ACCESS_TOKEN_PARAMETER = "access_token"

/**
 * The `&`-separated parts of a request URL's query, and whether each is an `access_token`
 * parameter as URLSearchParams (which the upgrade reads it with) decodes the query: names
 * percent-decoded, `+` as a space, a leading `?` dropped.
 */
const queryParts = (
  url: string
): { readonly path: string; readonly parts: ReadonlyArray<readonly [string, boolean]> } | undefined => {
  const queryAt = url.indexOf("?")
  if (queryAt < 0) return undefined
  const query = url.slice(queryAt + 1)
  // neither the name as it is nor any percent-encoding: nothing to decode
  if (!query.includes(ACCESS_TOKEN_PARAMETER) && !query.includes("%")) return undefined
  return {
    path: url.slice(0, queryAt),
    parts: query.split("&").map((part, i) =>
      [part, new URLSearchParams(i === 0 ? part : `&${part}`).has(ACCESS_TOKEN_PARAMETER)] as const
    )
  }
}

/** Whether a request URL (path and query) carries `access_token` in its query, under any encoding of the name. */
export const hasQueryAccessToken = (url: string): boolean =>
  queryParts(url)?.parts.some(([, isToken]) => isToken) ?? false

/**
 * The request URL without its `access_token` query parameters, every other part of it unchanged
 * (byte for byte, in order): what an HTTP route may see, keep or log of a URL.
 */
export const withoutQueryAccessToken = (url: string): string => {
  const query = queryParts(url)
  if (query === undefined || !query.parts.some(([, isToken]) => isToken)) return url
  const kept = query.parts.flatMap(([part, isToken], i) => isToken ? [] : [[part, i] as const])
  const [first] = kept
  if (first === undefined) return query.path
  // a leading "?" is dropped only from the query's first part: one that moves there keeps its "&"
  const lead = first[1] > 0 && first[0].startsWith("?") ? "&" : ""
  return `${query.path}?${lead}${kept.map(([part]) => part).join("&")}`
}

/** Where the verification keys come from; exactly one source is configured. */
export type KeySource =
  | { readonly _tag: "Secret"; readonly secret: Redacted.Redacted<string> }
  | { readonly _tag: "PublicKeyFile"; readonly path: string }
  | { readonly _tag: "JwksFile"; readonly path: string }

export interface AuthSettings {
  readonly keys: KeySource
  readonly issuer: string | undefined
  readonly audience: string | undefined
  /** Accepted `alg` values; `none` never is. Defaults follow the key: HS256, RS256 or ES256. */
  readonly algorithms: ReadonlyArray<string> | undefined
  readonly clockSkewSeconds: number
  /** Refuse tokens without `exp` (CHATIFY__AUTH__REQUIREEXPIRATION, default true): they would never expire. */
  readonly requireExpiration: boolean
}

export class InvalidAuthConfiguration
  extends Data.TaggedError("InvalidAuthConfiguration")<{ readonly message: string }>
{}

const optionalString = (name: string) => Config.option(Config.nonEmptyString(name))

/** CHATIFY__AUTH__*: absent keys mean no authentication (anonymous identities, as the original). */
export const authConfig: Config.Config<Option.Option<AuthSettings>> = Config.nested(
  Config.all({
    secret: Config.option(Config.redacted("HS256SECRET")),
    publicKeyFile: optionalString("PUBLICKEYFILE"),
    jwksFile: optionalString("JWKSFILE"),
    issuer: optionalString("ISSUER"),
    audience: optionalString("AUDIENCE"),
    algorithms: Config.option(Config.array(Config.nonEmptyString(), "ALGORITHMS")),
    clockSkewSeconds: Config.integer("CLOCKSKEWSECONDS").pipe(
      Config.withDefault(30),
      Config.validate({ message: "must be between 0 and 300", validation: (n) => n >= 0 && n <= 300 })
    ),
    requireExpiration: Config.boolean("REQUIREEXPIRATION").pipe(Config.withDefault(true))
  }),
  "AUTH"
).pipe(
  Config.nested("CHATIFY"),
  Config.mapOrFail((raw) => {
    const sources: Array<KeySource> = []
    if (Option.isSome(raw.secret)) sources.push({ _tag: "Secret", secret: raw.secret.value })
    if (Option.isSome(raw.publicKeyFile)) sources.push({ _tag: "PublicKeyFile", path: raw.publicKeyFile.value })
    if (Option.isSome(raw.jwksFile)) sources.push({ _tag: "JwksFile", path: raw.jwksFile.value })
    const [keys, ...others] = sources
    if (keys === undefined) return Either.right(Option.none())
    if (others.length > 0) {
      return Either.left(
        ConfigErrorOf("CHATIFY__AUTH: set only one of HS256SECRET, PUBLICKEYFILE and JWKSFILE")
      )
    }
    if (keys._tag === "Secret" && new TextEncoder().encode(Redacted.value(keys.secret)).length < 32) {
      return Either.left(ConfigErrorOf("CHATIFY__AUTH__HS256SECRET: must be at least 32 bytes (RFC 7518 §3.2)"))
    }
    if (Option.isSome(raw.algorithms) && raw.algorithms.value.some((alg) => alg.toLowerCase() === "none")) {
      return Either.left(ConfigErrorOf("CHATIFY__AUTH__ALGORITHMS: 'none' is never accepted"))
    }
    return Either.right(Option.some({
      keys,
      issuer: Option.getOrUndefined(raw.issuer),
      audience: Option.getOrUndefined(raw.audience),
      algorithms: Option.getOrUndefined(raw.algorithms),
      clockSkewSeconds: raw.clockSkewSeconds,
      requireExpiration: raw.requireExpiration
    }))
  })
)

const ConfigErrorOf = (message: string) => ConfigError.InvalidData([], message)

type Verifier = Parameters<typeof jwtVerify>[1]

const loadKey = (
  keys: KeySource
): Effect.Effect<{ readonly key: Verifier; readonly algorithms: ReadonlyArray<string> }, InvalidAuthConfiguration> =>
  Effect.try({
    try: () => {
      switch (keys._tag) {
        case "Secret":
          return { key: new TextEncoder().encode(Redacted.value(keys.secret)), algorithms: ["HS256"] }
        case "PublicKeyFile": {
          const key: KeyObject = createPublicKey(readFileSync(keys.path, "utf8"))
          return { key, algorithms: key.asymmetricKeyType === "ec" ? ["ES256"] : ["RS256"] }
        }
        case "JwksFile": {
          const jwks: unknown = JSON.parse(readFileSync(keys.path, "utf8"))
          if (typeof jwks !== "object" || jwks === null || !("keys" in jwks) || !Array.isArray(jwks.keys)) {
            throw new Error("is not a JWKS document ({\"keys\": [...]})")
          }
          return { key: createLocalJWKSet({ keys: jwks.keys as Array<JWK> }), algorithms: ["RS256", "ES256"] }
        }
      }
    },
    catch: (error) =>
      new InvalidAuthConfiguration({
        message: `CHATIFY__AUTH__${
          keys._tag === "PublicKeyFile" ? "PUBLICKEYFILE" : keys._tag === "JwksFile" ? "JWKSFILE" : "HS256SECRET"
        }: ${error instanceof Error ? error.message : String(error)}`
      })
  })

/** A readable reason for a rejected token, without echoing the token or library internals. */
const reasonOf = (error: unknown): string => {
  if (error instanceof joseErrors.JWTExpired) return "the access token expired"
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === "exp" && error.reason === "missing") {
      return "the access token has no expiry (exp), which is required"
    }
    switch (error.claim) {
      case "iss":
        return "the access token's issuer is not accepted"
      case "aud":
        return "the access token's audience is not accepted"
      case "nbf":
        return "the access token is not valid yet"
      default:
        return `the access token's ${error.claim} claim is not valid`
    }
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return "the access token's algorithm is not accepted"
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return "the access token's signature is not valid"
  if (error instanceof joseErrors.JWKSNoMatchingKey) return "no configured key matches the access token"
  if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid) {
    return "the access token is malformed"
  }
  return "the access token is not valid"
}

const subjectOf = (payload: JWTPayload): string | undefined => {
  if (typeof payload.sub === "string" && payload.sub.length > 0) return payload.sub
  const userId = payload["user_id"]
  return typeof userId === "string" && userId.length > 0 ? userId : undefined
}

const CACHE_SIZE = 10_000

/**
 * What a configuration leaves open, one line each, logged as warnings at startup: without an
 * issuer or audience any token the key verifies is accepted, whoever it was issued for.
 */
export const authWarnings = (settings: AuthSettings): ReadonlyArray<string> => {
  const unset = [
    ...(settings.issuer === undefined ? ["CHATIFY__AUTH__ISSUER"] : []),
    ...(settings.audience === undefined ? ["CHATIFY__AUTH__AUDIENCE"] : [])
  ]
  return [
    ...(unset.length === 0 ? [] : [
      `${unset.join(" and ")} ${
        unset.length === 1 ? "is" : "are"
      } not set: any token the configured key verifies is accepted, ` +
      "whichever service it was issued by or for"
    ]),
    ...(settings.requireExpiration ? [] : [
      "CHATIFY__AUTH__REQUIREEXPIRATION is false: tokens without exp are accepted and never expire"
    ])
  ]
}

/**
 * JWT bearer authentication with `jose`: signature, issuer, audience, exp (required unless
 * `requireExpiration` is off) and nbf (with the configured skew); the user is the token's `sub`,
 * then `user_id`. Verified tokens are cached (bounded) so a busy connection does not verify on
 * every call; expiry is still checked. Logs `authWarnings` when built.
 */
export const makeJwtAuthenticator = (settings: AuthSettings) =>
  Effect.gen(function*() {
    const { algorithms: defaults, key } = yield* loadKey(settings.keys)
    yield* Effect.forEach(authWarnings(settings), (warning) => Effect.logWarning(warning), { discard: true })
    const algorithms = [...(settings.algorithms ?? defaults)]
    const verified = new Map<string, { readonly userId: string; readonly expiresAtMs: number | undefined }>()
    const skewMs = settings.clockSkewSeconds * 1000
    const verify = (token: string) =>
      Effect.tryPromise({
        try: () =>
          jwtVerify(token, key, {
            algorithms,
            clockTolerance: settings.clockSkewSeconds,
            requiredClaims: settings.requireExpiration ? ["exp"] : [],
            ...(settings.issuer === undefined ? {} : { issuer: settings.issuer }),
            ...(settings.audience === undefined ? {} : { audience: settings.audience })
          }),
        catch: (error) => new Unauthenticated({ message: reasonOf(error) })
      }).pipe(
        Effect.flatMap(({ payload }) => {
          const userId = subjectOf(payload)
          if (userId === undefined) {
            return Effect.fail(new Unauthenticated({ message: "the access token names no user (sub or user_id)" }))
          }
          const entry = {
            userId,
            expiresAtMs: typeof payload.exp === "number" ? payload.exp * 1000 + skewMs : undefined
          }
          if (verified.size >= CACHE_SIZE) verified.delete(verified.keys().next().value ?? "")
          verified.set(token, entry)
          return Effect.succeed(entry)
        })
      )
    return Authenticator.of({
      enabled: true,
      authenticate: (bearer, connectionId) =>
        Effect.gen(function*() {
          if (bearer === undefined || bearer.length === 0) {
            return yield* new Unauthenticated({ message: "a bearer access token is required" })
          }
          const now = yield* Clock.currentTimeMillis
          const cached = verified.get(bearer)
          const entry = cached ?? (yield* verify(bearer))
          if (entry.expiresAtMs !== undefined && entry.expiresAtMs <= now) {
            verified.delete(bearer)
            return yield* new Unauthenticated({ message: "the access token expired" })
          }
          return { userId: entry.userId, connectionId, expiresAtMs: entry.expiresAtMs }
        })
    })
  })

/** JWT authentication when CHATIFY__AUTH__* is configured, anonymous identities otherwise. */
export const authenticatorFor = (settings: Option.Option<AuthSettings>) =>
  Option.match(settings, {
    onNone: () => AnonymousAuthenticator,
    onSome: (s) => Layer.effect(Authenticator, makeJwtAuthenticator(s))
  })
