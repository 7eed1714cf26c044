/**
 * Direct-message authorization on the REST reads (history and presence): the two members are
 * served, everyone else gets a 403 ProblemDetails, and the percent-encoding of
 * directMessageScopeId keeps user ids that contain ':' or '%' from passing for someone else
 * (`dm:ann%3Ax:bob` is ann:x's and bob's, never ann's or x's), through a URL path that carries the
 * scope id percent-encoded once more.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Logger, LogLevel, Option, Schedule, Schema } from "effect"
import { directMessageScopeId, HistoryPage, PROBLEM_CONTENT_TYPE, ProblemDetails, ScopePresence } from "@chatify/domain"
import { hs256TestAuth, startTestServer } from "../src/testing.js"
import { hs256Token } from "./support/tokens.js"

const SECRET = "a-direct-message-test-secret-32b!!"
const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Error)

const tokenFor = (sub: string) => hs256Token(SECRET, sub)

interface Reply {
  readonly status: number
  readonly contentType: string
  readonly body: unknown
}

const get = (url: string, token: string) =>
  Effect.promise(async (): Promise<Reply> => {
    const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } })
    return {
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
      body: await response.json()
    }
  })

const sendAs = (httpUrl: string, token: string, scopeId: string, text: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${httpUrl}/api/chat/send`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ scopeType: 1, scopeId, text })
    })
    return { status: response.status, body: await response.json() }
  })

/** The REST path of a scope: the id percent-encoded as one path segment. */
const scopeUrl = (httpUrl: string, scopeId: string) => `${httpUrl}/api/chat/scopes/1/${encodeURIComponent(scopeId)}`

describe("direct messages on REST history and presence", () => {
  it("directMessageScopeId percent-encodes each member, so ':' and '%' only ever separate", () => {
    expect(directMessageScopeId("bob", "ann:x")).toBe("dm:ann%3Ax:bob")
    expect(directMessageScopeId("ann", "x:bob")).toBe("dm:ann:x%3Abob")
    expect(directMessageScopeId("bob", "50%")).toBe("dm:50%25:bob")
    // sorted as the ids are, then encoded
    expect(directMessageScopeId("é ü/?", "bob")).toBe("dm:bob:%C3%A9%20%C3%BC%2F%3F")
  })

  it.scopedLive("members read history and presence; anyone else, whose id only looks like a member's, gets 403", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer({ config: { auth: Option.some(hs256TestAuth(SECRET)) } })
      const run = crypto.randomUUID().slice(0, 8)
      const bob = `bob-${run}`
      // each conversation: its two members, then users whose ids an unencoded id would confuse with theirs
      const conversations: ReadonlyArray<
        { readonly members: readonly [string, string]; readonly outsiders: ReadonlyArray<string> }
      > = [
        { members: ["ann:x", bob], outsiders: ["ann", "x", `x:${bob}`, "ann%3Ax", "carol"] },
        { members: ["ann", `x:${bob}`], outsiders: ["ann:x", "x", bob] },
        { members: ["50%", bob], outsiders: ["50", "50%25", "5"] },
        { members: ["é ü/?", bob], outsiders: ["é ü", "%C3%A9%20%C3%BC%2F%3F"] }
      ]
      // the first two would be one id without the encoding (dm:ann:x:bob-…): they must be two conversations
      expect(new Set(conversations.map((c) => directMessageScopeId(...c.members))).size).toBe(conversations.length)

      for (const { members, outsiders } of conversations) {
        const scopeId = directMessageScopeId(...members)
        const [first, second] = members
        const text = `from ${first} to ${second}`
        const sent = yield* sendAs(server.httpUrl, yield* tokenFor(first), scopeId, text)
        expect(sent.status, `${first} sends in ${scopeId}: ${JSON.stringify(sent.body)}`).toBe(200)

        for (const member of members) {
          const token = yield* tokenFor(member)
          // the history writer runs behind the log: the other member's read waits for the message
          const history = yield* get(`${scopeUrl(server.httpUrl, scopeId)}/history`, token).pipe(
            Effect.filterOrFail((reply) =>
              reply.status !== 200 || Schema.decodeUnknownSync(HistoryPage)(reply.body).items.length > 0
            ),
            Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 500 }),
            Effect.timeout("10 seconds"),
            Effect.orDie
          )
          expect(history.status, `${member} reads ${scopeId}: ${JSON.stringify(history.body)}`).toBe(200)
          const page = Schema.decodeUnknownSync(HistoryPage)(history.body)
          expect(page.items.map((e) => [e.chatEvent.scopeId, e.chatEvent.senderId, e.chatEvent.text])).toEqual([[
            scopeId,
            first,
            text
          ]])

          const presence = yield* get(`${scopeUrl(server.httpUrl, scopeId)}/presence`, token)
          expect(presence.status, `${member} asks who is in ${scopeId}`).toBe(200)
          expect(Schema.decodeUnknownSync(ScopePresence)(presence.body)).toMatchObject({ scopeType: 1, scopeId })
        }

        for (const outsider of outsiders) {
          const token = yield* tokenFor(outsider)
          for (const read of ["history", "presence"]) {
            const refused = yield* get(`${scopeUrl(server.httpUrl, scopeId)}/${read}`, token)
            expect(refused.status, `${outsider} reads ${read} of ${scopeId}: ${JSON.stringify(refused.body)}`).toBe(403)
            expect(refused.contentType).toBe(PROBLEM_CONTENT_TYPE)
            const problem = Schema.decodeUnknownSync(ProblemDetails)(refused.body)
            expect(problem).toMatchObject({ type: "urn:chatify:problem:forbidden", status: 403 })
            expect(problem.detail).toBe(`${outsider} may not read in this scope`)
          }
        }
      }
    }).pipe(quiet))
})
