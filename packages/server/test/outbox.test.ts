import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import * as ws from "ws"
import { Flusher, Outbox, ReusedList, textFrame, type Transport } from "../src/realtime/Outbox.js"

// ws's own frame parser (what every Node client runs) is the judge of the frames we build by hand
interface FrameReceiver {
  write(chunk: Buffer): boolean
  on(event: "message", listener: (data: Buffer, isBinary: boolean) => void): this
  on(event: "error", listener: (error: Error) => void): this
}
// ws exports it at run time; its type declarations do not
const { Receiver } = ws as unknown as {
  readonly Receiver: new(options: { readonly isServer: boolean }) => FrameReceiver
}

/** What a client reads from these bytes: each message's text, or the error it closes with. */
const clientReads = (bytes: Buffer) => {
  const receiver = new Receiver({ isServer: false })
  const texts: Array<string> = []
  const errors: Array<string> = []
  receiver.on("message", (data, isBinary) => texts.push(isBinary ? "<binary>" : data.toString("utf8")))
  receiver.on("error", (error) => errors.push(error.message))
  receiver.write(bytes)
  return { texts, errors }
}

// lengths around each header form's edges (7-bit, 16-bit, 64-bit), and anything in between
const boundaryLength = fc.constantFrom(0, 1, 125, 126, 127, 65_535, 65_536, 70_000)
const payload = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 300 }),
  fc.tuple(boundaryLength, fc.string({ unit: "grapheme", maxLength: 4 })).map(([length, tail]) =>
    "a".repeat(length) + tail
  )
)

describe("textFrame", () => {
  it.prop("a client reads back every text, framed from a string or from its bytes", [
    fc.array(payload, { minLength: 1, maxLength: 5 })
  ], ([texts]) => {
    const frames = texts.map((text, i) => (i % 2 === 0 ? textFrame(text) : textFrame(Buffer.from(text, "utf8"))))
    expect(clientReads(Buffer.concat(frames))).toEqual({ texts, errors: [] })
  }, { fastCheck: { numRuns: 150 } })

  it("uses the shortest length form, as RFC 6455 requires", () => {
    expect(textFrame("a".repeat(125)).subarray(0, 2)).toEqual(Buffer.from([0x81, 125]))
    expect(textFrame("a".repeat(126)).subarray(0, 4)).toEqual(Buffer.from([0x81, 126, 0, 126]))
    expect(textFrame("a".repeat(65_536)).subarray(0, 10)).toEqual(Buffer.from([0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]))
  })
})

const recordingTransport = () => {
  const writes: Array<Buffer> = []
  let open = true
  let buffered = 0
  const transport: Transport = {
    write: (frames) => void writes.push(frames),
    bufferedAmount: () => buffered,
    isOpen: () => open
  }
  return {
    transport,
    writes,
    close: () => void (open = false),
    setBuffered: (bytes: number) => void (buffered = bytes)
  }
}

/** Resolves after the Flusher's turn has run. */
const nextTurn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

describe("ReusedList", () => {
  it.prop("holds what was pushed since the last clear, in order, through bursts past what it keeps", [
    fc.array(fc.array(fc.integer(), { maxLength: 100 }), { maxLength: 8 })
  ], ([rounds]) => {
    const list = new ReusedList<number>(8)
    for (const items of rounds) {
      for (const item of items) list.push(item)
      expect(list.size).toBe(items.length)
      expect(list.toArray()).toEqual(items)
      expect(items.map((_, i) => list.get(i))).toEqual(items)
      list.clear()
      expect(list.toArray()).toEqual([])
    }
  })
})

describe("Outbox", () => {
  it.effect("what one turn writes goes out in one write, in order, the shared frames as they are", () =>
    Effect.gen(function*() {
      const flusher = yield* Effect.provide(Flusher, Flusher.layer)
      const socket = recordingTransport()
      const outbox = new Outbox(socket.transport, flusher, 1024)
      const shared = textFrame("event")
      outbox.write("first")
      outbox.writeFrame(shared)
      outbox.write("last")
      expect(outbox.backlog()).toBe(textFrame("first").length + shared.length + textFrame("last").length)
      expect(socket.writes).toEqual([])
      yield* nextTurn
      expect(socket.writes.length).toBe(1)
      expect(clientReads(socket.writes[0]!).texts).toEqual(["first", "event", "last"])
      expect(outbox.backlog()).toBe(0)
    }))

  it.effect.prop(
    "each turn's write holds that turn's frames and nothing written before, however long a burst",
    { turns: fc.array(fc.array(fc.string({ maxLength: 8 }), { maxLength: 90 }), { minLength: 1, maxLength: 5 }) },
    ({ turns }) =>
      Effect.gen(function*() {
        const flusher = yield* Effect.provide(Flusher, Flusher.layer)
        const socket = recordingTransport()
        const outbox = new Outbox(socket.transport, flusher, 1024 * 1024)
        const written: Array<ReadonlyArray<string>> = []
        for (const texts of turns) {
          const before = socket.writes.length
          for (const text of texts) outbox.write(text)
          yield* nextTurn
          written.push(socket.writes.slice(before).flatMap((write) => clientReads(write).texts))
          expect(socket.writes.length - before).toBe(texts.length === 0 ? 0 : 1)
          expect(outbox.backlog()).toBe(0)
        }
        expect(written).toEqual(turns)
      }),
    { fastCheck: { numRuns: 60 } }
  )

  it.effect("counts the socket's buffer in its backlog and has no room past its limit", () =>
    Effect.gen(function*() {
      const flusher = yield* Effect.provide(Flusher, Flusher.layer)
      const socket = recordingTransport()
      const outbox = new Outbox(socket.transport, flusher, 100)
      socket.setBuffered(95)
      expect(outbox.hasRoom()).toBe(true)
      outbox.write("123") // 5 bytes framed
      expect(outbox.hasRoom()).toBe(true)
      outbox.write("4")
      expect(outbox.backlog()).toBe(95 + 5 + 3)
      expect(outbox.hasRoom()).toBe(false)
    }))

  it.effect("writes nothing once closed, or once the socket is no longer open", () =>
    Effect.gen(function*() {
      const flusher = yield* Effect.provide(Flusher, Flusher.layer)
      const closedSocket = recordingTransport()
      const closing = new Outbox(closedSocket.transport, flusher, 1024)
      closing.write("queued before close")
      closing.close()
      closing.write("after close")
      const goneSocket = recordingTransport()
      const gone = new Outbox(goneSocket.transport, flusher, 1024)
      gone.write("queued while open")
      goneSocket.close()
      yield* nextTurn
      expect(closedSocket.writes).toEqual([])
      expect(goneSocket.writes).toEqual([])
      expect(closing.backlog()).toBe(0)
    }))

  it.effect("a flush of many outboxes runs in slices across turns and reaches every one, in the order they were queued", () =>
    Effect.gen(function*() {
      const flusher = yield* Effect.provide(Flusher, Flusher.layer)
      const order: Array<number> = []
      const outboxes = Array.from({ length: 600 }, (_, i) => {
        const transport: Transport = { write: () => void order.push(i), bufferedAmount: () => 0, isOpen: () => true }
        return new Outbox(transport, flusher, 1024)
      })
      for (const outbox of outboxes) outbox.write("event")
      yield* nextTurn
      // the first slice only: the event loop gets its turn before the rest
      expect(order.length).toBeGreaterThan(0)
      expect(order.length).toBeLessThan(600)
      yield* Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 0))).pipe(
        Effect.repeat({ until: () => order.length === 600 })
      )
      expect(order).toEqual(outboxes.map((_, i) => i))
    }))

  it.effect("an owner's frames added in onFlush go out in that flush, and the outbox is not queued a second time", () =>
    Effect.gen(function*() {
      const base = yield* Effect.provide(Flusher, Flusher.layer)
      let scheduled = 0
      const flusher: Flusher["Type"] = {
        schedule: (outbox) => {
          scheduled++
          base.schedule(outbox)
        }
      }
      const socket = recordingTransport()
      const outbox = new Outbox(socket.transport, flusher, 1024)
      let flushes = 0
      let pending: Array<string> = []
      outbox.onFlush = () => {
        flushes++
        for (const text of pending) outbox.write(text)
        pending = []
      }
      pending.push("batched")
      outbox.wake()
      yield* nextTurn
      yield* nextTurn
      expect(clientReads(Buffer.concat(socket.writes)).texts).toEqual(["batched"])
      expect({ scheduled, flushes }).toEqual({ scheduled: 1, flushes: 1 })
    }))
})
