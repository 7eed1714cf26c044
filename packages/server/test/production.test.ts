import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Logger, LogLevel, Option, Schedule } from "effect"
import { SignJWT } from "jose"
import { Client } from "cassandra-driver"
import { endpoints, ensureService } from "../../adapters/test/support/services.js"
import type { ServerConfig } from "../src/index.js"
import { startTestServer, hs256TestAuth } from "../src/testing.js"

// Real Redis and Cassandra, started by scripts/services; the log stays embedded here (Kafka has its
// own tests until the multi-pod end-to-end test).
beforeAll(() => Promise.all([ensureService("redis"), ensureService("cassandra")]), 300_000)

const keyspace = `chatify_server_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`
afterAll(async () => {
  const client = new Client({
    contactPoints: [endpoints.cassandra.host],
    protocolOptions: { port: endpoints.cassandra.port },
    localDataCenter: "datacenter1"
  })
  await client.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`).catch(() => undefined)
  await client.shutdown()
}, 120_000)

const SECRET = "a-production-test-secret-of-32-bytes"
const auth = hs256TestAuth(SECRET)
const production = (podId: string, overrides: Partial<ServerConfig> = {}): Partial<ServerConfig> => ({
  podId,
  auth: Option.some(auth),
  caching: Option.some({ connectionString: endpoints.redis }),
  database: Option.some({
    contactPoints: [endpoints.cassandra.host],
    port: endpoints.cassandra.port,
    keyspace,
    localDataCenter: "datacenter1",
    consistency: "LOCAL_QUORUM",
    replicationFactor: 1,
    applySchemaOnStartup: true,
    failFastOnSchemaError: true,
    schemaMigrationTableName: "schema_migrations"
  }),
  ...overrides
})
const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

const tokenFor = (sub: string) =>
  Effect.promise(() =>
    new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setExpirationTime("10m")
      .sign(new TextEncoder().encode(SECRET))
  )

const send = (base: string, token: string, scopeId: string, text: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${base}/api/chat/send`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ scopeType: 0, scopeId, text })
    })
    return { status: response.status, body: (await response.json()) as { chatEvent?: { messageId: string } } }
  })

describe("production adapters in the server", () => {
  it.scopedLive("two pods share one rate limit in Redis: sends spread over both are counted once", () =>
    Effect.gen(function*() {
      const limit = { rateLimit: { limit: 5, windowSeconds: 60, failOpen: false } }
      const podA = yield* startTestServer({ config: production("pod-a", limit) })
      const podB = yield* startTestServer({ config: production("pod-b", limit) })
      const token = yield* tokenFor(`user-${crypto.randomUUID()}`)
      const statuses = yield* Effect.forEach(
        Array.from({ length: 10 }, (_, i) => i),
        (i) => Effect.map(send(i % 2 === 0 ? podA.httpUrl : podB.httpUrl, token, "general", `m${i}`), (r) => r.status)
      )
      expect(statuses.filter((s) => s === 200).length).toBe(5)
      expect(statuses.filter((s) => s === 429).length).toBe(5)
    }).pipe(quiet))

  it.scopedLive("stores the history in Cassandra, reports each dependency as ready, and keeps it across restarts", () =>
    Effect.gen(function*() {
      const scopeId = `room-${crypto.randomUUID()}`
      const token = yield* tokenFor("alice")
      const sent = yield* Effect.scoped(Effect.gen(function*() {
        const server = yield* startTestServer({ config: production("pod-a") })
        const ready = yield* Effect.promise(async () => (await fetch(`${server.httpUrl}/health/ready`)).json())
        expect(ready).toMatchObject({ status: "Healthy", checks: { redis: "ok", "history-store": "ok" } })
        const ids = yield* Effect.forEach(
          [1, 2, 3],
          (i) => Effect.map(send(server.httpUrl, token, scopeId, `m${i}`), (r) => r.body.chatEvent?.messageId)
        )
        // the history writer runs behind the log: wait until Cassandra has all three
        yield* Effect.promise(async () => {
          const page = await fetch(`${server.httpUrl}/api/chat/scopes/0/${scopeId}/history`, {
            headers: { authorization: `Bearer ${token}` }
          })
          return ((await page.json()) as { items: ReadonlyArray<unknown> }).items.length
        }).pipe(
          Effect.repeat({ until: (n) => n === 3, schedule: Schedule.spaced("50 millis") }),
          Effect.timeout("20 seconds")
        )
        return ids
      }))
      // a new server on another data directory: only Cassandra can answer
      const again = yield* startTestServer({ config: production("pod-b") })
      const page = yield* Effect.promise(async () => {
        const response = await fetch(`${again.httpUrl}/api/chat/scopes/0/${scopeId}/history`, {
          headers: { authorization: `Bearer ${token}` }
        })
        return (await response.json()) as { items: ReadonlyArray<{ chatEvent: { messageId: string } }> }
      })
      expect(page.items.map((i) => i.chatEvent.messageId).sort()).toEqual([...sent].sort())
    }).pipe(quiet))
})
