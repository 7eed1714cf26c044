// Mints a development access token signed with CHATIFY__AUTH__HS256SECRET, so a person can try the
// server with authentication on. Not for production: real tokens come from your identity provider.
//
//   CHATIFY__AUTH__HS256SECRET=… node packages/server/dist/cli/mintToken.js alice [ttl-seconds]
import { SignJWT } from "jose"

const [subject, ttl = "3600"] = process.argv.slice(2)
const secret = process.env["CHATIFY__AUTH__HS256SECRET"]
const ttlSeconds = Number(ttl)

const fail = (message: string) => {
  process.stderr.write(`${message}\nusage: CHATIFY__AUTH__HS256SECRET=<secret> mint-token <user-id> [ttl-seconds]\n`)
  process.exit(2)
}

if (subject === undefined || subject.length === 0) fail("missing the user id (the token's sub)")
else if (secret === undefined || new TextEncoder().encode(secret).length < 32) fail("CHATIFY__AUTH__HS256SECRET must be set, at least 32 bytes")
else if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) fail("ttl-seconds must be a positive integer")
else {
  let jwt = new SignJWT({}).setProtectedHeader({ alg: "HS256", typ: "JWT" }).setSubject(subject).setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`)
  const issuer = process.env["CHATIFY__AUTH__ISSUER"]
  const audience = process.env["CHATIFY__AUTH__AUDIENCE"]
  if (issuer !== undefined && issuer.length > 0) jwt = jwt.setIssuer(issuer)
  if (audience !== undefined && audience.length > 0) jwt = jwt.setAudience(audience)
  process.stdout.write(`${await jwt.sign(new TextEncoder().encode(secret))}\n`)
}
