/**
 * Outbound buffering for WebSocket connections. Writes made while the event loop is busy (a fan-out
 * of one event to thousands of sockets, a batch of events) are queued per connection as whole
 * WebSocket frames and written in one write per connection when the turn ends; a connection more than `limitBytes` behind refuses
 * further deliveries, so a slow reader costs bounded memory.
 */
import { Context, Layer } from "effect"
import type { Duplex } from "node:stream"
import type { WebSocket } from "ws"

/** What a connection needs of its socket. */
export interface Transport {
  /** Hands complete WebSocket frames to the socket, in one write. */
  readonly write: (frames: Buffer) => void
  /** Bytes accepted but not yet handed to the kernel. */
  readonly bufferedAmount: () => number
  readonly isOpen: () => boolean
}

/**
 * A whole server-to-client WebSocket text frame (FIN, not masked) around `payload`. A frame from
 * the server is the same bytes for every client, so an event is framed once and the one Buffer is
 * written to every subscriber's socket.
 */
export const textFrame = (payload: string | Buffer): Buffer => {
  const length = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length
  const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10
  const frame = Buffer.allocUnsafe(headerLength + length)
  frame[0] = 0x81
  if (length < 126) frame[1] = length
  else if (length < 65536) {
    frame[1] = 126
    frame.writeUInt16BE(length, 2)
  } else {
    frame[1] = 127
    frame.writeUInt32BE(Math.floor(length / 0x1_0000_0000), 2)
    frame.writeUInt32BE(length >>> 0, 6)
  }
  if (typeof payload === "string") frame.write(payload, headerLength, "utf8")
  else payload.copy(frame, headerLength)
  return frame
}

/**
 * How many outboxes one turn flushes. A fan-out to thousands of sockets is written in slices with
 * the event loop's I/O between them, so events that arrive meanwhile join the queues of the
 * sockets not yet written: under load each write carries several events (fewer system calls per
 * delivery, as a Go server's per-connection writers get), and a send is never stuck behind a
 * whole fan-out.
 */
const FLUSH_SLICE = 256

/**
 * A list emptied and refilled at every turn that keeps its array. Emptying an array with
 * `length = 0` drops its storage in V8 (and a new array per turn is garbage as well), so every
 * refill would allocate anew: at one per delivery, that was most of the fan-out's garbage. After a
 * burst longer than `keepAtMost`, the array is let go, so an idle owner stays small.
 */
export class ReusedList<A> {
  private items: Array<A | undefined> = []
  private count = 0

  constructor(private readonly keepAtMost = 64) {}

  get size(): number {
    return this.count
  }

  push(item: A) {
    this.items[this.count++] = item
  }

  /** The item at `index`, below `size`. */
  get(index: number): A {
    return this.items[index]!
  }

  toArray(): Array<A> {
    return this.items.slice(0, this.count) as Array<A>
  }

  /** Empties the list; what it held is released. */
  clear() {
    if (this.items.length > this.keepAtMost) this.items = []
    else this.items.fill(undefined, 0, this.count)
    this.count = 0
  }
}

/** Flushes every queued outbox soon after it was queued, in the order they were queued. */
export class Flusher extends Context.Tag("@chatify/server/Flusher")<Flusher, {
  readonly schedule: (outbox: Outbox) => void
}>() {
  static readonly layer = Layer.sync(Flusher, () => {
    // one list for the whole pod, however many outboxes a turn flushes
    const due = new ReusedList<Outbox>(Infinity)
    let next = 0
    let scheduled = false
    const flushSlice = () => {
      const end = Math.min(due.size, next + FLUSH_SLICE)
      for (; next < end; next++) due.get(next).flush()
      if (next < due.size) return setImmediate(flushSlice)
      due.clear()
      next = 0
      scheduled = false
    }
    return {
      schedule: (outbox) => {
        due.push(outbox)
        if (!scheduled) {
          scheduled = true
          setImmediate(flushSlice)
        }
      }
    }
  })
}

/** One connection's outbound queue. */
export class Outbox {
  /** The frames queued for this turn's write. */
  private readonly frames = new ReusedList<Buffer>()
  private bytes = 0
  /**
   * The socket's unsent bytes as of our last write or check. Only our writes grow it (besides ws's
   * few control frames), so it is never below the truth for long; reading the socket itself on
   * every delivery of a fan-out costs a cache miss per subscriber.
   */
  private socketBytes = 0
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
    this.socketBytes = this.transport.bufferedAmount()
    return this.bytes + this.socketBytes
  }

  /** True while the peer is within `limitBytes` of what was written to it (plus `pendingBytes` the owner holds). */
  hasRoom(pendingBytes = 0): boolean {
    // the socket is asked only when the estimate says no: it may have drained since
    return this.bytes + this.socketBytes + pendingBytes <= this.limitBytes ||
      this.backlog() + pendingBytes <= this.limitBytes
  }

  /** Queues a text message for this turn's write. Deliveries check `hasRoom` first. */
  write(payload: string | Buffer) {
    this.writeFrame(textFrame(payload))
  }

  /** Queues a frame built by `textFrame` (shared by every connection that gets it). */
  writeFrame(frame: Buffer) {
    if (this.closed) return
    this.frames.push(frame)
    this.bytes += frame.length
    this.wake()
  }

  /** Asks for a flush at the end of this turn (for owners that batch in `onFlush`). */
  wake() {
    if (this.queued || this.closed) return
    this.queued = true
    this.flusher.schedule(this)
  }

  /** Writes everything queued in one write: one system call however many frames. */
  flush() {
    if (this.closed) return
    // still marked queued while the owner adds its frames, so they do not schedule a second flush
    this.onFlush?.()
    this.queued = false
    const frames = this.frames
    if (frames.size === 0) return
    let write: Buffer
    if (frames.size === 1) write = frames.get(0)
    else {
      write = Buffer.allocUnsafe(this.bytes)
      let at = 0
      for (let i = 0; i < frames.size; i++) {
        const frame = frames.get(i)
        frame.copy(write, at)
        at += frame.length
      }
    }
    this.dropFrames()
    if (!this.transport.isOpen()) return
    this.transport.write(write)
    this.socketBytes = this.transport.bufferedAmount()
  }

  private dropFrames() {
    this.frames.clear()
    this.bytes = 0
  }

  /** Drops whatever is queued; nothing is written after this. */
  close() {
    this.closed = true
    this.dropFrames()
  }
}

const OPEN = 1

/**
 * A `ws` WebSocket and the socket under it: frames go to the socket as they are, past ws's own
 * framing (it frames and writes every message again; compression is off, so its writes are
 * synchronous and ours interleave with its pings and close frames in order). Nothing is written
 * once ws starts closing, so a close frame is always the last.
 */
export const webSocketTransport = (ws: WebSocket, socket: Duplex): Transport => ({
  write: (frames) => void socket.write(frames),
  bufferedAmount: () => socket.writableLength,
  isOpen: () => ws.readyState === OPEN
})
