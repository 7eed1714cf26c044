/**
 * Crash consistency of the embedded server: the real process on one data directory, killed with
 * SIGKILL at a random moment while clients send, then started again, round after round. After each
 * restart every acknowledged message is in the history (with the partition and offset it was
 * acknowledged with), no message is there twice, and offsets go on counting: no acknowledged
 * (partition, offset) is reused or goes back. The rounds are planned by fast-check from a printed
 * seed (FUZZ_SEED replays them; CRASH_ROUNDS sets their number).
 */
import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, FastCheck as fc } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { casesOf, fuzzSettings, timeoutFor } from "./support/fuzz.js"
import { startServerProcess } from "./support/serverProcess.js"
import { hs256Token } from "./support/tokens.js"

const SECRET = "a-crash-consistency-secret-of-32b"
const SCOPES = ["crash-a", "crash-b", "crash-c", "crash-d"]
const ROUNDS = Number(process.env["CRASH_ROUNDS"] ?? 20)

const children: Array<ChildProcess> = []
const directory = mkdtempSync(join(tmpdir(), "chatify-crash-"))

afterAll(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL")
  rmSync(directory, { recursive: true, force: true })
})

interface Acknowledged {
  readonly messageId: string
  readonly text: string
  readonly scopeId: string
  readonly partition: number
  readonly offset: number
  readonly round: number
}

interface Sent {
  readonly chatEvent: { readonly messageId: string; readonly text: string; readonly scopeId: string }
  readonly partition: number
  readonly offset: number
}

/** One round: how many clients send, and when (after the first acknowledgement) the process is killed. */
const roundPlan = fc.record({
  clients: fc.integer({ min: 1, max: 8 }),
  killAfterMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 50, max: 600 }))
})

const bearer = async () => `Bearer ${await Effect.runPromise(hs256Token(SECRET, "crash-tester"))}`

/** Every message of `scopeId`'s history, page after page (bounded: 200 pages). */
const historyOf = async (base: string, authorization: string, scopeId: string) => {
  const items: Array<Sent> = []
  let before: string | undefined
  for (let page = 0; page < 200; page++) {
    const query = before === undefined ? "limit=500" : `limit=500&before=${encodeURIComponent(before)}`
    const response = await fetch(`${base}/api/chat/scopes/0/${scopeId}/history?${query}`, {
      headers: { authorization }
    })
    expect(response.status).toBe(200)
    const body = (await response.json()) as { readonly items: ReadonlyArray<Sent>; readonly nextCursor?: string }
    items.push(...body.items)
    if (body.nextCursor === undefined) return items
    before = body.nextCursor
  }
  throw new Error(`more than 200 pages of history in ${scopeId}`)
}

/** Checks the history against everything acknowledged so far, once the history writer has caught up (≤ 30 s). */
const expectConsistentHistory = async (
  base: string,
  authorization: string,
  acknowledged: ReadonlyArray<Acknowledged>
) => {
  let missing: Array<Acknowledged> = acknowledged.slice()
  let stored: Array<Sent> = []
  for (let attempt = 0; attempt < 300 && missing.length > 0; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 100))
    stored = (await Promise.all(SCOPES.map((scopeId) => historyOf(base, authorization, scopeId)))).flat()
    const byId = new Map(stored.map((item) => [item.chatEvent.messageId, item]))
    missing = acknowledged.filter((ack) => !byId.has(ack.messageId))
  }
  expect(missing, "acknowledged but not in the history").toEqual([])
  // each message once: by messageId, and by its text (each send's text is unique)
  const ids = stored.map((item) => item.chatEvent.messageId)
  expect(ids.length - new Set(ids).size, "messages stored twice").toBe(0)
  const texts = stored.map((item) => item.chatEvent.text)
  expect(texts.length - new Set(texts).size, "sends stored twice").toBe(0)
  // each log position holds one message, and the history keeps the acknowledged position
  const positions = stored.map((item) => `${item.partition}:${item.offset}`)
  expect(positions.length - new Set(positions).size, "log positions used twice").toBe(0)
  const byId = new Map(stored.map((item) => [item.chatEvent.messageId, item]))
  for (const ack of acknowledged) {
    const item = byId.get(ack.messageId)
    expect({ text: item?.chatEvent.text, partition: item?.partition, offset: item?.offset }).toEqual({
      text: ack.text,
      partition: ack.partition,
      offset: ack.offset
    })
  }
  return stored.length
}

describe("the embedded server killed with SIGKILL during sends", () => {
  it(`keeps every acknowledged message, once, and its offsets go on counting, over ${ROUNDS} crashes`, async () => {
    // its rounds are CRASH_ROUNDS, not the fuzzers' FUZZ_RUNS (which `pnpm bench:fuzz` sets to 100,000)
    const settings = fuzzSettings("crash consistency", ROUNDS, "CRASH_ROUNDS")
    const plans = casesOf(roundPlan, settings)
    const authorization = await bearer()
    const dataDirectory = join(directory, "data")
    const acknowledged: Array<Acknowledged> = []
    const started = Date.now()
    let attempted = 0
    for (const [round, plan] of plans.entries()) {
      const roundStarted = Date.now()
      const server = startServerProcess({
        CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory,
        CHATIFY__AUTH__HS256SECRET: SECRET,
        POD_NAME: "crash-pod",
        CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0",
        CHATIFY__RATELIMIT__LIMIT: "1000000000",
        CHATIFY__RATELIMIT__READLIMIT: "1000000000"
      }, children)
      const base = await server.listening
      const listeningAt = Date.now()
      // what earlier rounds acknowledged is all there, after this restart
      await expectConsistentHistory(base, authorization, acknowledged)
      const checkedAt = Date.now()
      // the highest acknowledged offset per partition before this round: this round's must be above
      const highest = new Map<number, number>()
      for (const ack of acknowledged) highest.set(ack.partition, Math.max(highest.get(ack.partition) ?? -1, ack.offset))

      let killed = false
      let onFirstAck: () => void = () => undefined
      const firstAck = new Promise<void>((resolve) => {
        onFirstAck = resolve
      })
      const client = async (clientIndex: number) => {
        // bounded: at most 2,000 sends per client, and each ends once the process is gone
        for (let n = 0; n < 2_000 && !killed; n++) {
          attempted++
          const text = `r${round}-c${clientIndex}-n${n}`
          const scopeId = SCOPES[(clientIndex + n) % SCOPES.length] ?? "crash-a"
          try {
            const response = await fetch(`${base}/api/chat/send`, {
              method: "POST",
              headers: { "content-type": "application/json", authorization },
              body: JSON.stringify({ scopeType: 0, scopeId, text, clientMessageId: text })
            })
            if (response.status !== 200) {
              await response.arrayBuffer()
              continue
            }
            const sent = (await response.json()) as Sent
            acknowledged.push({
              messageId: sent.chatEvent.messageId,
              text,
              scopeId,
              partition: sent.partition,
              offset: sent.offset,
              round
            })
            onFirstAck()
          } catch {
            // the process was killed under this send: neither acknowledged nor refused
            return
          }
        }
      }
      const clients = Promise.all(Array.from({ length: plan.clients }, (_, i) => client(i)))
      // (or the clients gave up: then the check below fails the round)
      await Promise.race([firstAck, clients])
      await new Promise((resolve) => setTimeout(resolve, plan.killAfterMs))
      server.child.kill("SIGKILL")
      killed = true
      await server.exited
      await clients

      const thisRound = acknowledged.filter((ack) => ack.round === round)
      console.log(
        `[crash] round ${round}: ${plan.clients} clients, killed ${plan.killAfterMs} ms after the first acknowledgement, ${thisRound.length} acknowledged; ` +
          `listening after ${listeningAt - roundStarted} ms, history checked in ${checkedAt - listeningAt} ms, ` +
          `sent and killed in ${Date.now() - checkedAt} ms`
      )
      expect(thisRound.length).toBeGreaterThan(0)
      for (const ack of thisRound) {
        expect(ack.offset, `partition ${ack.partition} went back after a restart`).toBeGreaterThan(
          highest.get(ack.partition) ?? -1
        )
      }
    }
    // the last crash too: one more restart, and the same checks
    const last = startServerProcess({
      CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory,
      CHATIFY__AUTH__HS256SECRET: SECRET,
      POD_NAME: "crash-pod",
      CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0",
      CHATIFY__RATELIMIT__READLIMIT: "1000000000"
    }, children)
    const stored = await expectConsistentHistory(await last.listening, authorization, acknowledged)
    const positions = acknowledged.map((ack) => `${ack.partition}:${ack.offset}`)
    expect(positions.length - new Set(positions).size, "acknowledged positions reused").toBe(0)
    console.log(
      `[crash] ${ROUNDS} SIGKILLs in ${((Date.now() - started) / 1000).toFixed(1)} s: ${attempted} sends attempted, ` +
        `${acknowledged.length} acknowledged, ${stored} in the history, none lost, none twice`
    )
    last.child.kill("SIGTERM")
    expect(await last.exited).toBe(0)
  }, timeoutFor(ROUNDS, 60_000))
})
