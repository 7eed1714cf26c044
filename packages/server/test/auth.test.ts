import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, FastCheck as fc, Logger, Option, Redacted } from "effect"
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose"
import {
  authConfig,
  type AuthSettings,
  hasQueryAccessToken,
  makeJwtAuthenticator,
  withoutQueryAccessToken
} from "../src/index.js"

const SECRET = "a-development-secret-of-32-bytes!"
const secretKey = new TextEncoder().encode(SECRET)
const directory = mkdtempSync(join(tmpdir(), "chatify-auth-"))
afterAll(() => rmSync(directory, { recursive: true, force: true }))

const hs256: AuthSettings = {
  keys: { _tag: "Secret", secret: Redacted.make(SECRET) },
  issuer: "https://id.example.test",
  audience: "chatify",
  algorithms: undefined,
  clockSkewSeconds: 5,
  requireExpiration: true
}

const now = () => Math.floor(Date.now() / 1000)

/** A token as an identity provider would issue it; each test changes one thing. */
const token = (
  claims: Record<string, unknown> = {},
  options: {
    readonly key?: Uint8Array
    readonly iss?: string
    readonly aud?: string
    readonly exp?: number
    readonly nbf?: number
  } = {}
) => {
  let jwt = new SignJWT({ sub: "alice", ...claims }).setProtectedHeader({ alg: "HS256" }).setIssuedAt()
    .setIssuer(options.iss ?? "https://id.example.test").setAudience(options.aud ?? "chatify")
    .setExpirationTime(options.exp ?? now() + 600)
  if (options.nbf !== undefined) jwt = jwt.setNotBefore(options.nbf)
  return Effect.promise(() => jwt.sign(options.key ?? secretKey))
}

/** As an identity provider that forgets `exp` would issue it: otherwise valid. */
const tokenWithoutExp = () =>
  Effect.promise(() =>
    new SignJWT({ sub: "alice" }).setProtectedHeader({ alg: "HS256" }).setIssuedAt()
      .setIssuer("https://id.example.test").setAudience("chatify").sign(secretKey)
  )

/** The lines `effect` logs, each as its level and its message. */
const logsOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const lines: Array<{ readonly level: string; readonly text: string }> = []
    const recorder = Logger.make(({ logLevel, message }) => {
      lines.push({ level: logLevel.label, text: Array.isArray(message) ? message.join(" ") : String(message) })
    })
    yield* Effect.provide(effect, Logger.replace(Logger.defaultLogger, recorder))
    return lines
  })

const reject = (settings: AuthSettings, bearer: string | undefined) =>
  Effect.flatMap(makeJwtAuthenticator(settings), (auth) => Effect.flip(auth.authenticate(bearer, "c1")))

describe("JWT authentication", () => {
  it.live("accepts a valid token: the user is its sub, and it carries the expiry", () =>
    Effect.gen(function*() {
      const auth = yield* makeJwtAuthenticator(hs256)
      const exp = now() + 600
      const principal = yield* auth.authenticate(yield* token({}, { exp }), "c1")
      expect(principal).toEqual({ userId: "alice", connectionId: "c1", expiresAtMs: exp * 1000 + 5_000 })
    }))

  it.live("falls back to user_id when there is no sub, and refuses a token naming no user", () =>
    Effect.gen(function*() {
      const auth = yield* makeJwtAuthenticator(hs256)
      const viaUserId = yield* auth.authenticate(yield* token({ sub: undefined, user_id: "bob" }), "c1")
      expect(viaUserId.userId).toBe("bob")
      const nobody = yield* Effect.flip(auth.authenticate(yield* token({ sub: undefined }), "c1"))
      expect(nobody.message).toContain("names no user")
    }))

  it.live("refuses forged, foreign, expired, early, unsigned and missing tokens with a clear reason", () =>
    Effect.gen(function*() {
      const forged = yield* token({}, { key: new TextEncoder().encode("another-secret-of-at-least-32-bytes") })
      const unsigned = [
        Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url"),
        Buffer.from(JSON.stringify({ sub: "alice", iss: hs256.issuer, aud: "chatify", exp: now() + 600 })).toString(
          "base64url"
        ),
        ""
      ].join(".")
      const cases: ReadonlyArray<readonly [string | undefined, string]> = [
        [forged, "signature"],
        [yield* token({}, { iss: "https://evil.example.test" }), "issuer"],
        [yield* token({}, { aud: "someone-else" }), "audience"],
        [yield* token({}, { exp: now() - 60 }), "expired"],
        [yield* token({}, { nbf: now() + 600 }), "not valid yet"],
        [unsigned, "algorithm"],
        ["not.a.jwt", "malformed"],
        [undefined, "required"],
        ["", "required"]
      ]
      for (const [bearer, reason] of cases) {
        const error = yield* reject(hs256, bearer)
        expect(error._tag).toBe("Unauthenticated")
        expect(error.message, String(bearer)).toContain(reason)
      }
    }))

  it.live("tolerates the configured clock skew around exp and nbf", () =>
    Effect.gen(function*() {
      const auth = yield* makeJwtAuthenticator({ ...hs256, clockSkewSeconds: 30 })
      const justExpired = yield* auth.authenticate(yield* token({}, { exp: now() - 10 }), "c1")
      expect(justExpired.userId).toBe("alice")
      const almostValid = yield* auth.authenticate(yield* token({}, { nbf: now() + 10 }), "c1")
      expect(almostValid.userId).toBe("alice")
    }))

  it.live("verifies RS256 with a PEM public key and ES256 with a JWKS file", () =>
    Effect.gen(function*() {
      const rsa = yield* Effect.promise(() => generateKeyPair("RS256"))
      const pem = join(directory, "rsa.pem")
      writeFileSync(pem, yield* Effect.promise(() => exportSPKI(rsa.publicKey)))
      const ec = yield* Effect.promise(() => generateKeyPair("ES256"))
      const jwks = join(directory, "jwks.json")
      const jwk = yield* Effect.promise(() => exportJWK(ec.publicKey))
      writeFileSync(jwks, JSON.stringify({ keys: [{ ...jwk, kid: "k1", alg: "ES256", use: "sig" }] }))

      const sign = (alg: string, key: Parameters<SignJWT["sign"]>[0], kid?: string) =>
        Effect.promise(() =>
          new SignJWT({ sub: `${alg}-user` }).setProtectedHeader({ alg, ...(kid === undefined ? {} : { kid }) })
            .setExpirationTime(now() + 600).sign(key)
        )
      const viaPem = yield* makeJwtAuthenticator({
        ...hs256,
        issuer: undefined,
        audience: undefined,
        keys: { _tag: "PublicKeyFile", path: pem }
      })
      expect((yield* viaPem.authenticate(yield* sign("RS256", rsa.privateKey), "c1")).userId).toBe("RS256-user")
      const hsAgainstRsa = yield* Effect.flip(viaPem.authenticate(yield* token(), "c1"))
      expect(hsAgainstRsa.message).toContain("algorithm")

      const viaJwks = yield* makeJwtAuthenticator({
        ...hs256,
        issuer: undefined,
        audience: undefined,
        keys: { _tag: "JwksFile", path: jwks }
      })
      expect((yield* viaJwks.authenticate(yield* sign("ES256", ec.privateKey, "k1"), "c1")).userId).toBe("ES256-user")
      const otherKey = yield* Effect.promise(() => generateKeyPair("ES256"))
      const foreign = yield* Effect.flip(viaJwks.authenticate(yield* sign("ES256", otherKey.privateKey, "k1"), "c1"))
      expect(foreign.message).toContain("signature")
    }))

  it.live("refuses a token without exp by default, as a typed Unauthenticated naming the claim", () =>
    Effect.gen(function*() {
      const error = yield* reject(hs256, yield* tokenWithoutExp())
      expect(error._tag).toBe("Unauthenticated")
      expect(error.message).toContain("no expiry (exp)")
      // the same token, once more: a refusal is not cached as an acceptance
      expect((yield* reject(hs256, yield* tokenWithoutExp()))._tag).toBe("Unauthenticated")
    }))

  it.live("accepts a token without exp only when requireExpiration is off; it then never expires", () =>
    Effect.gen(function*() {
      const auth = yield* makeJwtAuthenticator({ ...hs256, requireExpiration: false })
      const principal = yield* auth.authenticate(yield* tokenWithoutExp(), "c1")
      expect(principal).toEqual({ userId: "alice", connectionId: "c1", expiresAtMs: undefined })
      // exp is still enforced when a token has one
      expect((yield* Effect.flip(auth.authenticate(yield* token({}, { exp: now() - 60 }), "c1"))).message).toContain(
        "expired"
      )
    }))

  it.live("warns once at startup when the issuer or the audience is not set, or exp is not required", () =>
    Effect.gen(function*() {
      const warnings = (settings: AuthSettings) =>
        Effect.map(
          logsOf(makeJwtAuthenticator(settings)),
          (lines) => lines.filter((line) => line.level === "WARN").map((line) => line.text)
        )
      expect(yield* warnings(hs256)).toEqual([])
      const noIssuer = yield* warnings({ ...hs256, issuer: undefined })
      expect(noIssuer).toHaveLength(1)
      expect(noIssuer[0]).toContain("CHATIFY__AUTH__ISSUER is not set")
      const neither = yield* warnings({ ...hs256, issuer: undefined, audience: undefined })
      expect(neither).toHaveLength(1)
      expect(neither[0]).toContain("CHATIFY__AUTH__ISSUER and CHATIFY__AUTH__AUDIENCE are not set")
      const noAudience = yield* warnings({ ...hs256, audience: undefined })
      expect(noAudience).toEqual([expect.stringContaining("CHATIFY__AUTH__AUDIENCE is not set")])
      const noExp = yield* warnings({ ...hs256, requireExpiration: false })
      expect(noExp).toEqual([expect.stringContaining("CHATIFY__AUTH__REQUIREEXPIRATION is false")])
    }))

  it.live("never puts the token in a refusal's message or in a log line", () =>
    Effect.gen(function*() {
      const valid = yield* token()
      const bearers = [
        `${valid}x`,
        yield* tokenWithoutExp(),
        yield* token({}, { exp: now() - 60 }),
        valid.split(".").reverse().join(".")
      ]
      const lines = yield* logsOf(
        Effect.gen(function*() {
          const auth = yield* makeJwtAuthenticator({ ...hs256, issuer: undefined })
          for (const bearer of bearers) {
            const error = yield* Effect.flip(auth.authenticate(bearer, "c1"))
            for (const part of bearer.split(".")) expect(error.message).not.toContain(part)
            yield* Effect.logError("refused", error.message)
          }
        })
      )
      expect(lines.length).toBeGreaterThan(bearers.length)
      for (const bearer of bearers) {
        for (const part of bearer.split(".")) {
          expect(lines.filter((line) => line.text.includes(part))).toEqual([])
        }
      }
    }))

  it.live("fails startup on an unreadable key file, naming the key", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        makeJwtAuthenticator({ ...hs256, keys: { _tag: "PublicKeyFile", path: join(directory, "missing.pem") } })
      )
      expect(error.message).toContain("CHATIFY__AUTH__PUBLICKEYFILE")
    }))
})

describe("auth configuration", () => {
  // a ConfigError names the setting and the problem in its toString, which its type does not declare
  const rendered = (error: unknown): string => String(error)
  const read = (env: Record<string, string>) =>
    Effect.withConfigProvider(authConfig, ConfigProvider.fromMap(new Map(Object.entries(env)), { pathDelim: "__" }))

  it.effect("is off without keys, and reads every setting with one", () =>
    Effect.gen(function*() {
      expect(Option.isNone(yield* read({}))).toBe(true)
      const settings = yield* read({
        CHATIFY__AUTH__HS256SECRET: SECRET,
        CHATIFY__AUTH__ISSUER: "iss",
        CHATIFY__AUTH__AUDIENCE: "aud",
        CHATIFY__AUTH__ALGORITHMS: "HS256",
        CHATIFY__AUTH__CLOCKSKEWSECONDS: "10"
      })
      expect(Option.map(settings, (s) => [s.issuer, s.audience, s.algorithms, s.clockSkewSeconds])).toEqual(
        Option.some(["iss", "aud", ["HS256"], 10])
      )
    }))

  it.effect("requires exp unless CHATIFY__AUTH__REQUIREEXPIRATION is false; a value that is no boolean is named", () =>
    Effect.gen(function*() {
      const requireExpiration = (extra: Record<string, string>) =>
        Effect.map(read({ CHATIFY__AUTH__HS256SECRET: SECRET, ...extra }), Option.map((s) => s.requireExpiration))
      expect(yield* requireExpiration({})).toEqual(Option.some(true))
      expect(yield* requireExpiration({ CHATIFY__AUTH__REQUIREEXPIRATION: "false" })).toEqual(Option.some(false))
      expect(yield* requireExpiration({ CHATIFY__AUTH__REQUIREEXPIRATION: "true" })).toEqual(Option.some(true))
      const bad = yield* Effect.flip(requireExpiration({ CHATIFY__AUTH__REQUIREEXPIRATION: "sometimes" }))
      expect(rendered(bad)).toContain("REQUIREEXPIRATION")
    }))

  it.effect("refuses two key sources, a short secret and alg none", () =>
    Effect.gen(function*() {
      const two = yield* Effect.flip(read({ CHATIFY__AUTH__HS256SECRET: SECRET, CHATIFY__AUTH__JWKSFILE: "/x" }))
      expect(rendered(two)).toContain("only one")
      const short = yield* Effect.flip(read({ CHATIFY__AUTH__HS256SECRET: "short" }))
      expect(rendered(short)).toContain("CHATIFY__AUTH__HS256SECRET")
      const none = yield* Effect.flip(read({ CHATIFY__AUTH__HS256SECRET: SECRET, CHATIFY__AUTH__ALGORITHMS: "none" }))
      expect(rendered(none)).toContain("none")
    }))
})

describe("access_token in a request URL's query", () => {
  /** What the WebSocket upgrade reads the query with: the oracle for both functions. */
  const paramsOf = (url: string) => {
    const queryAt = url.indexOf("?")
    return new URLSearchParams(queryAt < 0 ? "" : url.slice(queryAt + 1))
  }
  const pathPart = (url: string) => url.slice(0, url.indexOf("?") < 0 ? url.length : url.indexOf("?"))

  const hex = (char: string, upper: boolean) => {
    const code = char.charCodeAt(0).toString(16).padStart(2, "0")
    return `%${upper ? code.toUpperCase() : code}`
  }
  /**
   * `access_token`, each character as it is or percent-encoded (either hex case), sometimes after a
   * "?" (which only the query's first part drops).
   */
  const tokenName = fc.tuple(
    fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
    fc.boolean(),
    fc.constantFrom("", "", "?")
  )
    .map(([encoded, upper, lead]) =>
      lead + Array.from("access_token", (char, i) => (encoded[i] === true ? hex(char, upper) : char)).join("")
    )
  /** Token values from their own alphabet, so no other part of a URL can contain one. */
  const tokenValue = fc.string({ unit: fc.constantFrom(..."QWXYZ0123456789-_."), minLength: 8, maxLength: 40 }).map((
    v
  ) => `TOK${v}`)
  /** Other names and values: the characters that change how a query is read, and plain ones. */
  const text = fc.string({ unit: fc.constantFrom(..."abcdeklmnopst_=+?%2F0#"), maxLength: 14 })
  const part = fc.oneof(
    {
      weight: 3,
      arbitrary: fc.tuple(text, fc.option(text)).map(([name, value]) => (value === null ? name : `${name}=${value}`))
    },
    { weight: 2, arbitrary: fc.tuple(tokenName, tokenValue).map(([name, value]) => `${name}=${value}`) },
    {
      weight: 1,
      arbitrary: fc.tuple(tokenName, tokenValue).map(([name, value]) => `${name}=${encodeURIComponent(value)}`)
    }
  )
  const url = fc.tuple(
    fc.constantFrom("/rpc", "/api/chat/send", "/api/chat/scopes/0/general/history", "/"),
    fc.option(fc.array(part, { maxLength: 6 }).map((parts) => parts.join("&")))
  ).map(([path, query]) => (query === null ? path : `${path}?${query}`))

  it.prop("hasQueryAccessToken reads the query as the upgrade does", { url }, ({ url }) => {
    expect(hasQueryAccessToken(url)).toBe(paramsOf(url).has("access_token"))
  })

  it.prop(
    "withoutQueryAccessToken drops exactly the access_token parameters, and every token with them",
    { url },
    ({ url }) => {
      const stripped = withoutQueryAccessToken(url)
      expect(pathPart(stripped)).toBe(pathPart(url))
      expect(paramsOf(stripped).has("access_token")).toBe(false)
      expect([...paramsOf(stripped)]).toEqual([...paramsOf(url)].filter(([name]) => name !== "access_token"))
      for (const value of paramsOf(url).getAll("access_token")) expect(stripped).not.toContain(value)
      if (!paramsOf(url).has("access_token")) expect(stripped).toBe(url)
    }
  )

  it("keeps what surrounds a token as it was", () => {
    expect(withoutQueryAccessToken("/api/chat/send?access_token=abc")).toBe("/api/chat/send")
    expect(withoutQueryAccessToken("/h?limit=5&access%5Ftoken=abc&before=x%20y")).toBe("/h?limit=5&before=x%20y")
    expect(withoutQueryAccessToken("/h?access_token=a&?x=1")).toBe("/h?&?x=1")
    expect(withoutQueryAccessToken("/h?limit=5")).toBe("/h?limit=5")
  })
})
