import { Effect } from "effect"
import { SignJWT } from "jose"

/** An HS256 token for `sub` under `secret`, valid for ten minutes. */
export const hs256Token = (secret: string, sub: string) =>
  Effect.promise(() =>
    new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setExpirationTime("10m")
      .sign(new TextEncoder().encode(secret))
  )
