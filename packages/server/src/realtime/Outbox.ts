/**
 * Outbound buffering for WebSocket connections. Writes made while the event loop is busy (a fan-out
 * of one event to thousands of sockets, a batch of events) are queued per connection and written in
 * one frame per connection when the turn ends; a connection more than `limitBytes` behind refuses
 * further deliveries, so a slow reader costs bounded memory.
 */
import { Context, Layer } from "effect"
import type { WebSocket } from "ws"

/** What a connection needs of its socket; a `ws` WebSocket has all of it. */
export interface Transport {
  readonly send: (data: string | Buffer) => void
  /** Bytes accepted but not yet handed to the kernel. */
  readonly bufferedAmount: () => number
  readonly isOpen: () => boolean
}

/** Runs every queued outbox's flush once per event-loop turn, however many writes were made. */
export class Flusher extends Context.Tag("@chatify/server/Flusher")<Flusher, {
  readonly schedule: (outbox: Outbox) => void
}>() {
  static readonly layer = Layer.sync(Flusher, () => {
    let due: Array<Outbox> = []
    let scheduled = false
    const flushAll = () => {
      scheduled = false
      const now = due
      due = []
      for (const outbox of now) outbox.flush()
    }
    return {
      schedule: (outbox) => {
        due.push(outbox)
        if (!scheduled) {
          scheduled = true
          setImmediate(flushAll)
        }
      }
    }
  })
}

/** One connection's outbound queue. */
export class Outbox {
  private parts: Array<string | Buffer> = []
  private bytes = 0
  private queued = false
  private closed = false
  /** Called at the start of each flush: the owner adds what it batched itself (RPC chunks). */
  onFlush: (() => void) | undefined = undefined

  constructor(
    private readonly transport: Transport,
    private readonly flusher: Flusher["Type"],
    readonly limitBytes: number
  ) {}

  /** Bytes this connection is behind: queued here plus buffered by the socket. */
  backlog(): number {
    return this.bytes + this.transport.bufferedAmount()
  }

  /** True while the peer is within `limitBytes` of what was written to it. */
  hasRoom(): boolean {
    return this.backlog() <= this.limitBytes
  }

  /** Queues data for this turn's frame. Control messages use it too; deliveries check `hasRoom` first. */
  write(data: string | Buffer) {
    if (this.closed) return
    this.parts.push(data)
    this.bytes += data.length
    this.wake()
  }

  /** Asks for a flush at the end of this turn (for owners that batch in `onFlush`). */
  wake() {
    if (this.queued || this.closed) return
    this.queued = true
    this.flusher.schedule(this)
  }

  flush() {
    this.queued = false
    if (this.closed) return
    this.onFlush?.()
    const parts = this.parts
    if (parts.length === 0) return
    this.parts = []
    this.bytes = 0
    if (!this.transport.isOpen()) return
    if (parts.length === 1) return this.transport.send(parts[0]!)
    let allText = true
    for (const part of parts) {
      if (typeof part !== "string") {
        allText = false
        break
      }
    }
    this.transport.send(
      allText ? (parts as Array<string>).join("") : Buffer.concat(parts.map((part) => (typeof part === "string" ? Buffer.from(part) : part)))
    )
  }

  /** Drops whatever is queued; nothing is written after this. */
  close() {
    this.closed = true
    this.parts = []
    this.bytes = 0
  }
}

const OPEN = 1

/** A `ws` WebSocket as a transport; text frames, as the JSON protocols expect. */
export const webSocketTransport = (ws: WebSocket): Transport => {
  const options = { binary: false }
  return {
    send: (data) => ws.send(data, options),
    bufferedAmount: () => ws.bufferedAmount,
    isOpen: () => ws.readyState === OPEN
  }
}
