/**
 * RS256 key material for a server with a JWKS file, the tokens it accepts, and a fast-check
 * arbitrary of tokens it must refuse: other keys, `alg` confusion, `none`, expired, not yet valid,
 * wrong issuer or audience, `kid` tricks, tampering, oversized and malformed tokens.
 */
import { createHmac, generateKeyPairSync, type KeyObject, sign } from "node:crypto"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { FastCheck as fc } from "effect"

export const ISSUER = "https://issuer.chatify.test"
export const AUDIENCE = "chatify-fuzz"
export const KEY_ID = "fuzz-key-1"
/** The server's clock skew tolerance (CHATIFY__AUTH__CLOCKSKEWSECONDS), and the margin past it. */
const SKEW_SECONDS = 30
const MARGIN_SECONDS = 5

export interface TokenKeys {
  readonly privateKey: KeyObject
  readonly publicPem: string
  readonly publicJwk: Record<string, unknown>
  /** A key the server does not know. */
  readonly attackerKey: KeyObject
  readonly attackerJwk: Record<string, unknown>
}

export const makeTokenKeys = (): TokenKeys => {
  const real = generateKeyPairSync("rsa", { modulusLength: 2048 })
  const attacker = generateKeyPairSync("rsa", { modulusLength: 2048 })
  return {
    privateKey: real.privateKey,
    publicPem: real.publicKey.export({ type: "spki", format: "pem" }).toString(),
    publicJwk: { ...real.publicKey.export({ format: "jwk" }), kid: KEY_ID, alg: "RS256", use: "sig" },
    attackerKey: attacker.privateKey,
    attackerJwk: attacker.publicKey.export({ format: "jwk" })
  }
}

/** The server's environment for these keys: a JWKS file in `dir`, issuer and audience required. */
export const authEnvironment = (keys: TokenKeys, dir: string): Record<string, string> => {
  const jwksFile = join(dir, "jwks.json")
  writeFileSync(jwksFile, JSON.stringify({ keys: [keys.publicJwk] }))
  return {
    CHATIFY__AUTH__JWKSFILE: jwksFile,
    CHATIFY__AUTH__ISSUER: ISSUER,
    CHATIFY__AUTH__AUDIENCE: AUDIENCE,
    CHATIFY__AUTH__CLOCKSKEWSECONDS: String(SKEW_SECONDS)
  }
}

const segment = (value: unknown) =>
  Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url")
const signingInput = (header: unknown, payload: unknown) => `${segment(header)}.${segment(payload)}`
const rs256 = (input: string, key: KeyObject) => sign("sha256", Buffer.from(input), key).toString("base64url")
const hs256 = (input: string, secret: string | Buffer) => createHmac("sha256", secret).update(input).digest("base64url")

const nowSeconds = () => Math.floor(Date.now() / 1000)

/** Claims the server accepts, for `sub`. */
export const validClaims = (sub: string) => ({
  sub,
  iss: ISSUER,
  aud: AUDIENCE,
  iat: nowSeconds(),
  exp: nowSeconds() + 3600
})

/** A token the server accepts. */
export const validToken = (keys: TokenKeys, sub = "fuzzer") => {
  const input = signingInput({ alg: "RS256", typ: "JWT", kid: KEY_ID }, validClaims(sub))
  return `${input}.${rs256(input, keys.privateKey)}`
}

export interface ForgedToken {
  readonly kind: string
  readonly token: string
}

const subjects = fc.oneof(fc.constant("fuzzer"), fc.string({ minLength: 1, maxLength: 40 }))
const pastSeconds = fc.integer({ min: SKEW_SECONDS + MARGIN_SECONDS, max: 100_000_000 })
/** Cases are generated up front and sent a while later: far enough ahead to still be ahead then. */
const futureSeconds = fc.integer({ min: SKEW_SECONDS + 3_600, max: 100_000_000 })
const otherString = (but: string) => fc.string({ maxLength: 60 }).filter((s) => s !== but)

/** Tokens the server must refuse, every one; each with the name of its trick. */
export const forgedTokens = (keys: TokenKeys): fc.Arbitrary<ForgedToken> => {
  const realHeader = { alg: "RS256", typ: "JWT", kid: KEY_ID }
  const signedByRealKey = (kind: string, header: Record<string, unknown>, claims: Record<string, unknown>) => {
    const input = signingInput(header, claims)
    return { kind, token: `${input}.${rs256(input, keys.privateKey)}` }
  }
  const cases: Array<fc.Arbitrary<ForgedToken>> = [
    // someone else's key, under our kid, or with their key in the header (jwk / jku / x5u)
    fc.tuple(
      subjects,
      fc.constantFrom<Record<string, unknown>>(
        {},
        { jwk: keys.attackerJwk },
        { jku: "http://127.0.0.1:9/jwks.json" },
        { x5u: "http://127.0.0.1:9/cert.pem" }
      )
    ).map(([sub, extra]) => {
      const input = signingInput({ ...realHeader, ...extra }, validClaims(sub))
      return {
        kind: `another key ${Object.keys(extra).join(",")}`,
        token: `${input}.${rs256(input, keys.attackerKey)}`
      }
    }),
    // alg confusion: HS256 keyed with what the server knows as public
    fc.tuple(subjects, fc.constantFrom("pem", "pem-trimmed", "jwk-json", "modulus"), fc.boolean()).map(
      ([sub, form, withKid]) => {
        const secret = form === "pem"
          ? keys.publicPem
          : form === "pem-trimmed"
          ? keys.publicPem.trim()
          : form === "jwk-json"
          ? JSON.stringify(keys.publicJwk)
          : Buffer.from(String(keys.publicJwk["n"]), "base64url")
        const input = signingInput({ alg: "HS256", typ: "JWT", ...(withKid ? { kid: KEY_ID } : {}) }, validClaims(sub))
        return { kind: `HS256 with the public key (${form})`, token: `${input}.${hs256(input, secret)}` }
      }
    ),
    // alg none, in any case, with or without a signature
    fc.tuple(subjects, fc.constantFrom("none", "None", "NONE", "nOnE"), fc.constantFrom("", "e30", "AAAA")).map((
      [sub, alg, signature]
    ) => ({
      kind: `alg ${alg}`,
      token: `${signingInput({ alg, typ: "JWT", kid: KEY_ID }, validClaims(sub))}.${signature}`
    })),
    // expired, not yet valid, no exp at all
    fc.tuple(subjects, pastSeconds).map(([sub, ago]) =>
      signedByRealKey("expired", realHeader, { ...validClaims(sub), exp: nowSeconds() - ago })
    ),
    fc.tuple(subjects, futureSeconds).map(([sub, ahead]) =>
      signedByRealKey("nbf in the future", realHeader, { ...validClaims(sub), nbf: nowSeconds() + ahead })
    ),
    subjects.map((sub) => {
      const { exp: _exp, ...claims } = validClaims(sub)
      return signedByRealKey("no exp", realHeader, claims)
    }),
    // wrong or missing issuer and audience
    fc.tuple(subjects, fc.option(otherString(ISSUER), { nil: undefined })).map(([sub, iss]) => {
      const { iss: _iss, ...claims } = validClaims(sub)
      return signedByRealKey("wrong iss", realHeader, iss === undefined ? claims : { ...claims, iss })
    }),
    fc.tuple(
      subjects,
      fc.option(fc.oneof(otherString(AUDIENCE), fc.array(otherString(AUDIENCE), { maxLength: 3 })), { nil: undefined })
    )
      .map(([sub, aud]) => {
        const { aud: _aud, ...claims } = validClaims(sub)
        return signedByRealKey("wrong aud", realHeader, aud === undefined ? claims : { ...claims, aud })
      }),
    // kid tricks: unknown, traversal, injection, huge, not a string; signed by another key or keyed by the kid itself
    fc.tuple(
      subjects,
      fc.oneof(
        fc.constantFrom<unknown>(
          "../../../../dev/null",
          "' OR '1'='1",
          `${KEY_ID}\u0000`,
          ` ${KEY_ID}`,
          KEY_ID.toUpperCase(),
          "",
          1,
          null,
          [KEY_ID],
          {
            kid: KEY_ID
          }
        ),
        fc.string({ maxLength: 60 }).filter((kid) => kid !== KEY_ID),
        fc.integer({ min: 1_000, max: 6_000 }).map((n) => "k".repeat(n))
      ),
      fc.constantFrom("real key", "attacker key", "hs256 keyed by kid", "hs256 empty key")
    ).map(([sub, kid, signer]) => {
      const input = signingInput(
        { alg: signer.startsWith("hs256") ? "HS256" : "RS256", typ: "JWT", kid },
        validClaims(sub)
      )
      // a kid that is no string leaves jose to pick by key type: the real key's signature would be
      // the real key's token, no forgery; such kids are tried with the attacker's key
      const signature = signer === "real key" && typeof kid === "string"
        ? rs256(input, keys.privateKey)
        : signer === "real key"
        ? rs256(input, keys.attackerKey)
        : signer === "attacker key"
        ? rs256(input, keys.attackerKey)
        : hs256(input, signer === "hs256 empty key" ? "" : String(kid))
      // a real-key signature under a kid the JWKS does not hold is refused (no key matches it)
      return { kind: `kid ${JSON.stringify(kid).slice(0, 40)} (${signer})`, token: `${input}.${signature}` }
    }),
    // tampering with a valid token: another subject under the old signature, a flipped bit, another alg name
    fc.tuple(
      subjects,
      fc.nat(),
      fc.constantFrom("payload", "signature bit", "truncated signature", "alg RS512", "alg PS256", "alg ES256", "crit")
    )
      .map(([sub, at, how]) => {
        const valid = validToken(keys, "victim")
        const [header = "", payload = "", signature = ""] = valid.split(".")
        switch (how) {
          case "payload":
            return {
              kind: "tampered payload",
              token: `${header}.${segment({ ...validClaims(sub === "victim" ? "mallory" : sub) })}.${signature}`
            }
          case "signature bit": {
            const bytes = Buffer.from(signature, "base64url")
            const index = at % bytes.length
            bytes[index] = (bytes[index] ?? 0) ^ (1 << (at % 8))
            return { kind: "flipped signature bit", token: `${header}.${payload}.${bytes.toString("base64url")}` }
          }
          case "truncated signature":
            return {
              kind: "truncated signature",
              token: `${header}.${payload}.${signature.slice(0, at % signature.length)}`
            }
          case "crit":
            return signedByRealKey(
              "unknown crit header",
              { ...realHeader, crit: ["x-fuzz"], "x-fuzz": 1 },
              validClaims(sub)
            )
          default:
            return { kind: how, token: `${segment({ ...realHeader, alg: how.slice(4) })}.${payload}.${signature}` }
        }
      }),
    // oversized: a claim so large the header goes past what a server should read
    fc.tuple(subjects, fc.integer({ min: 8_000, max: 70_000 })).map(([sub, size]) => {
      const input = signingInput({ alg: "RS256", typ: "JWT", kid: KEY_ID }, {
        ...validClaims(sub),
        pad: "p".repeat(size)
      })
      return { kind: `oversized (${size})`, token: `${input}.${rs256(input, keys.attackerKey)}` }
    }),
    // malformed: random text, random segments, the wrong number of segments, claims of the wrong type
    fc.oneof(
      fc.string({ minLength: 1, maxLength: 200 }),
      fc.array(fc.base64String({ maxLength: 80 }), { minLength: 1, maxLength: 6 }).map((parts) => parts.join(".")),
      fc.tuple(fc.jsonValue(), fc.jsonValue()).map(([header, payload]) =>
        `${segment(header)}.${segment(payload)}.${segment("sig")}`
      )
    ).map((token) => ({ kind: "malformed", token })),
    // claims of a wrong type on a token that has also expired (an exp of the wrong type is none)
    fc.tuple(
      fc.constantFrom("sub", "exp", "iss", "aud", "nbf"),
      fc.jsonValue().filter((value) => typeof value !== "number")
    ).map(([claim, value]) =>
      signedByRealKey(`${claim} of a wrong type`, realHeader, {
        ...validClaims("fuzzer"),
        [claim]: value,
        exp: claim === "exp" ? value : nowSeconds() - 3_600
      })
    )
  ]
  return fc.oneof(...cases)
}
