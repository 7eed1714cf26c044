// Mints a development access token signed with CHATIFY__AUTH__HS256SECRET, so a person can try the
// server with authentication on. Not for production: real tokens come from your identity provider.
//
//   CHATIFY__AUTH__HS256SECRET=… node packages/server/dist/cli/mintToken.js alice [ttl-seconds]
import { SignJWT } from "jose"

const USAGE = `usage: CHATIFY__AUTH__HS256SECRET=<secret> ./scripts/mint-token.sh <user-id> [ttl-seconds]
       ./scripts/mint-token.sh --help

Prints an HS256 access token for <user-id> (its sub) on stdout, valid for ttl-seconds from now
(default 3600), with iss / aud from CHATIFY__AUTH__ISSUER / CHATIFY__AUTH__AUDIENCE when they are set.

ttl-seconds may be 0 or negative: the token is then already expired (exp = now + ttl-seconds), to
show how the server refuses it. The server tolerates CHATIFY__AUTH__CLOCKSKEWSECONDS of clock skew
around exp (default 30, 0 to 300), so:
  ./scripts/mint-token.sh alice -60     # expired a minute ago: refused with the default skew
  # a short token that expires while you watch: start the server without skew, then
  CHATIFY__AUTH__CLOCKSKEWSECONDS=0 ./scripts/start.sh &
  until curl -sf localhost:8080/health/ready; do sleep 1; done
  TOKEN=$(./scripts/mint-token.sh alice 5)   # accepted now, refused (401) 5 s later
`

const fail = (message: string): never => {
  process.stderr.write(`${message}\n${USAGE}`)
  process.exit(2)
}

const args = process.argv.slice(2)
if (args.includes("--help") || args.includes("-h")) {
  process.stdout.write(USAGE)
  process.exit(0)
}
const [subject, ttl = "3600", ...extra] = args
const secret = process.env["CHATIFY__AUTH__HS256SECRET"]
const ttlSeconds = /^[+-]?\d+$/u.test(ttl) ? Number(ttl) : Number.NaN

if (subject === undefined || subject.length === 0) fail("missing the user id (the token's sub)")
else if (subject.startsWith("-")) fail(`unknown option ${subject}`)
else if (extra.length > 0) fail(`unexpected arguments: ${extra.join(" ")}`)
else if (secret === undefined || new TextEncoder().encode(secret).length < 32) {
  fail("CHATIFY__AUTH__HS256SECRET must be set, at least 32 bytes")
} else if (!Number.isSafeInteger(ttlSeconds)) {
  fail("ttl-seconds must be an integer (0 or negative: an already expired token)")
} else {
  const now = Math.floor(Date.now() / 1000)
  let jwt = new SignJWT({}).setProtectedHeader({ alg: "HS256", typ: "JWT" }).setSubject(subject).setIssuedAt(now)
    .setExpirationTime(now + ttlSeconds)
  const issuer = process.env["CHATIFY__AUTH__ISSUER"]
  const audience = process.env["CHATIFY__AUTH__AUDIENCE"]
  if (issuer !== undefined && issuer.length > 0) jwt = jwt.setIssuer(issuer)
  if (audience !== undefined && audience.length > 0) jwt = jwt.setAudience(audience)
  process.stdout.write(`${await jwt.sign(new TextEncoder().encode(secret))}\n`)
  if (ttlSeconds <= 0) {
    process.stderr.write(
      `note: this token expired ${-ttlSeconds} s ago; a server refuses it once its clock skew ` +
        "(CHATIFY__AUTH__CLOCKSKEWSECONDS, default 30 s) has passed as well\n"
    )
  }
}
