import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Option, Redacted } from "effect"
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose"
import { authConfig, type AuthSettings, makeJwtAuthenticator } from "../src/index.js"

const SECRET = "a-development-secret-of-32-bytes!"
const secretKey = new TextEncoder().encode(SECRET)
const directory = mkdtempSync(join(tmpdir(), "chatify-auth-"))
afterAll(() => rmSync(directory, { recursive: true, force: true }))

const hs256: AuthSettings = {
  keys: { _tag: "Secret", secret: Redacted.make(SECRET) },
  issuer: "https://id.example.test",
  audience: "chatify",
  algorithms: undefined,
  clockSkewSeconds: 5
}

const now = () => Math.floor(Date.now() / 1000)

/** A token as an identity provider would issue it; each test changes one thing. */
const token = (
  claims: Record<string, unknown> = {},
  options: { readonly key?: Uint8Array; readonly iss?: string; readonly aud?: string; readonly exp?: number; readonly nbf?: number } = {}
) => {
  let jwt = new SignJWT({ sub: "alice", ...claims }).setProtectedHeader({ alg: "HS256" }).setIssuedAt()
    .setIssuer(options.iss ?? "https://id.example.test").setAudience(options.aud ?? "chatify")
    .setExpirationTime(options.exp ?? now() + 600)
  if (options.nbf !== undefined) jwt = jwt.setNotBefore(options.nbf)
  return Effect.promise(() => jwt.sign(options.key ?? secretKey))
}

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
        Buffer.from(JSON.stringify({ sub: "alice", iss: hs256.issuer, aud: "chatify", exp: now() + 600 })).toString("base64url"),
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
      const viaPem = yield* makeJwtAuthenticator({ ...hs256, issuer: undefined, audience: undefined, keys: { _tag: "PublicKeyFile", path: pem } })
      expect((yield* viaPem.authenticate(yield* sign("RS256", rsa.privateKey), "c1")).userId).toBe("RS256-user")
      const hsAgainstRsa = yield* Effect.flip(viaPem.authenticate(yield* token(), "c1"))
      expect(hsAgainstRsa.message).toContain("algorithm")

      const viaJwks = yield* makeJwtAuthenticator({ ...hs256, issuer: undefined, audience: undefined, keys: { _tag: "JwksFile", path: jwks } })
      expect((yield* viaJwks.authenticate(yield* sign("ES256", ec.privateKey, "k1"), "c1")).userId).toBe("ES256-user")
      const otherKey = yield* Effect.promise(() => generateKeyPair("ES256"))
      const foreign = yield* Effect.flip(viaJwks.authenticate(yield* sign("ES256", otherKey.privateKey, "k1"), "c1"))
      expect(foreign.message).toContain("signature")
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

  it.effect("refuses two key sources, a short secret and alg none", () =>
    Effect.gen(function*() {
      const two = yield* Effect.flip(read({ CHATIFY__AUTH__HS256SECRET: SECRET, CHATIFY__AUTH__JWKSFILE: "/x" }))
      expect(String(two)).toContain("only one")
      const short = yield* Effect.flip(read({ CHATIFY__AUTH__HS256SECRET: "short" }))
      expect(String(short)).toContain("CHATIFY__AUTH__HS256SECRET")
      const none = yield* Effect.flip(read({ CHATIFY__AUTH__HS256SECRET: SECRET, CHATIFY__AUTH__ALGORITHMS: "none" }))
      expect(String(none)).toContain("none")
    }))
})
