import { mkdtempSync, rmSync } from "node:fs"
import { randomUUID } from "node:crypto"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Context, Effect, Layer, TestClock } from "effect"
import { SendDeduplicator } from "@chatify/core"
import { EnrichedChatEvent } from "@chatify/domain"
import { SqliteSendDeduplicator } from "../src/sqlite/index.js"
import { candidateEvent, sendDeduplicatorContract } from "./contracts/SendDeduplicatorContract.js"

/** A fresh directory, removed with everything in it when the scope closes. */
const tempDirectory = Effect.acquireRelease(
  Effect.try(() => mkdtempSync(join(tmpdir(), "chatify-idempotency-"))),
  (directory) => Effect.try(() => rmSync(directory, { recursive: true, force: true })).pipe(Effect.ignore)
)

const rowCount = (directory: string) =>
  Effect.acquireUseRelease(
    Effect.try(() => new Database(join(directory, "idempotency.sqlite"), { readonly: true, fileMustExist: true })),
    (db) => Effect.try(() => db.prepare<[], number>("SELECT count(*) FROM sent_messages").pluck().get() ?? 0),
    (db) => Effect.try(() => db.close()).pipe(Effect.ignore)
  )

sendDeduplicatorContract("SQLite", {
  makeLayer: (settings) =>
    Layer.unwrapScoped(
      Effect.map(tempDirectory, (dataDirectory) => SqliteSendDeduplicator.layer({ dataDirectory, ...settings }))
    ),
  advance: (d) => TestClock.adjust(d)
})

describe("SqliteSendDeduplicator", () => {
  it.scoped("remembers a send across a restart on the same data directory", () =>
    Effect.gen(function*() {
      const dataDirectory = yield* tempDirectory
      const key = { senderId: "alice", clientMessageId: randomUUID() }
      const first = candidateEvent(key)
      const sent = new EnrichedChatEvent({ chatEvent: first, partition: 1, offset: 9 })
      yield* Effect.scoped(
        Effect.gen(function*() {
          const store = Context.get(
            yield* Layer.build(SqliteSendDeduplicator.layer({ dataDirectory, windowSeconds: 60 })),
            SendDeduplicator
          )
          yield* store.claim(key, first)
          yield* store.complete(key, sent)
        })
      )
      const store = Context.get(
        yield* Layer.build(SqliteSendDeduplicator.layer({ dataDirectory, windowSeconds: 60 })),
        SendDeduplicator
      )
      expect(yield* store.claim(key, candidateEvent(key))).toEqual({ _tag: "Sent", sent })
    }))

  it.scoped("purges expired rows in the background", () =>
    Effect.gen(function*() {
      const dataDirectory = yield* tempDirectory
      const store = Context.get(
        yield* Layer.build(
          SqliteSendDeduplicator.layer({ dataDirectory, windowSeconds: 10, purgeInterval: "1 minute" })
        ),
        SendDeduplicator
      )
      for (let i = 0; i < 3; i++) {
        const key = { senderId: "alice", clientMessageId: `m-${i}` }
        yield* store.claim(key, candidateEvent(key))
      }
      expect(yield* rowCount(dataDirectory)).toBe(3)
      yield* TestClock.adjust("30 seconds")
      expect(yield* rowCount(dataDirectory)).toBe(3)
      yield* TestClock.adjust("31 seconds")
      expect(yield* rowCount(dataDirectory)).toBe(0)
    }))
})
