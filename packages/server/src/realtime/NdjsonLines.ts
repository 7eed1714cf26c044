/** What one read of a connection's text gave: the values of the lines it completed, or why reading stops. */
export type NdjsonRead =
  | { readonly _tag: "Lines"; readonly values: ReadonlyArray<unknown> }
  | { readonly _tag: "TooLong"; readonly message: string }
  | { readonly _tag: "NotJson"; readonly message: string }

const NO_LINES: NdjsonRead = { _tag: "Lines", values: [] }

/**
 * A connection's ndjson text as JSON values, a line at a time; the start of a line a frame ends
 * with waits for the frames that complete it. Lines are bounded as RpcSerialization's ndjson
 * parser bounds them (in UTF-16 code units), whose place this takes on `/rpc`: that parser holds a
 * TextDecoder that text frames never use, ~0.7 KiB of native memory per connection.
 */
export class NdjsonLines {
  private partial = ""

  constructor(private readonly maxLineLength: number) {}

  /** Whether the start of a line is held, waiting for the rest. */
  get midLine(): boolean {
    return this.partial.length > 0
  }

  read(text: string): NdjsonRead {
    const buffer = this.partial.length === 0 ? text : this.partial + text
    let position = 0
    let newline = buffer.indexOf("\n")
    if (newline === -1) return this.keep(buffer, NO_LINES)
    const values: Array<unknown> = []
    while (newline !== -1) {
      if (newline - position > this.maxLineLength) return this.tooLong()
      try {
        values.push(JSON.parse(buffer.slice(position, newline)))
      } catch (error) {
        this.partial = ""
        return { _tag: "NotJson", message: error instanceof Error ? error.message : String(error) }
      }
      position = newline + 1
      newline = buffer.indexOf("\n", position)
    }
    return this.keep(position === buffer.length ? "" : buffer.slice(position), { _tag: "Lines", values })
  }

  private keep(rest: string, read: NdjsonRead): NdjsonRead {
    if (rest.length > this.maxLineLength) return this.tooLong()
    this.partial = rest
    return read
  }

  private tooLong(): NdjsonRead {
    this.partial = ""
    return { _tag: "TooLong", message: `a line is longer than ${this.maxLineLength} characters` }
  }
}
