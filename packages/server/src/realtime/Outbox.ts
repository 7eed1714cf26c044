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

/** Flushes every queued outbox soon after it was queued, in the order they were queued. */
export class Flusher extends Context.Tag("@chatify/server/Flusher")<Flusher, {
  readonly schedule: (outbox: Outbox) => void
}>() {
  static readonly layer = Layer.sync(Flusher, () => {
    // one array for every turn, its first `dueCount` slots in use (see Outbox.frames)
    const due: Array<Outbox | undefined> = []
    let dueCount = 0
    let next = 0
    let scheduled = false
    const flushSlice = () => {
      const end = Math.min(dueCount, next + FLUSH_SLICE)
      for (; next < end; next++) {
        const outbox = due[next]!
        due[next] = undefined
        outbox.flush()
      }
      if (next < dueCount) return setImmediate(flushSlice)
      dueCount = 0
      next = 0
      scheduled = false
    }
    return {
      schedule: (outbox) => {
        due[dueCount++] = outbox
        if (!scheduled) {
          scheduled = true
          setImmediate(flushSlice)
        }
      }
    }
  })
}

/** A queue array longer than this (after a burst) is not kept for reuse: idle connections stay small. */
const MAX_KEPT_SLOTS = 64

/** One connection's outbound queue. */
export class Outbox {
  /**
   * The frames queued for this turn's write: the first `frameCount` slots. The array is reused
   * (a new one per flush, or emptying it with `length = 0`, which drops its storage, would be
   * garbage at every delivery), unless a burst made it long.
   */
  private frames: Array<Buffer | undefined> = []
  private frameCount = 0
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
    this.frames[this.frameCount++] = frame
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
    const count = this.frameCount
    if (count === 0) return
    const frames = this.frames
    let write: Buffer
    if (count === 1) write = frames[0]!
    else {
      write = Buffer.allocUnsafe(this.bytes)
      let at = 0
      for (let i = 0; i < count; i++) {
        const frame = frames[i]!
        frame.copy(write, at)
        at += frame.length
      }
    }
    this.dropFrames()
    if (!this.transport.isOpen()) return
    this.transport.write(write)
    this.socketBytes = this.transport.bufferedAmount()
  }

  /** Empties the queue: the frames it held are released. */
  private dropFrames() {
    if (this.frames.length > MAX_KEPT_SLOTS) this.frames = []
    else this.frames.fill(undefined, 0, this.frameCount)
    this.frameCount = 0
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
