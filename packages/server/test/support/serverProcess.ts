import { type ChildProcess, spawn } from "node:child_process"
import { freeLoopbackPort } from "../../../adapters/test/support/ports.js"

const MAIN = new URL("../../src/main.ts", import.meta.url).pathname

export interface ServerProcess {
  readonly child: ChildProcess
  readonly output: () => string
  /** When a line matching `pattern` was first written (Date.now()), once it has been. */
  readonly seenAt: (pattern: RegExp) => number | undefined
  readonly exited: Promise<number | null>
  /** The base URL, once the server logs that it listens; rejected if it exits first. */
  readonly listening: Promise<string>
}

/**
 * The real entry point, as ./scripts/start.sh runs it (from source, through tsx), on 127.0.0.1 and
 * a free port, with `env` on top. The child is added to `children`, for the test file's cleanup.
 */
export const startServerProcess = (env: Record<string, string>, children: Array<ChildProcess>): ServerProcess => {
  const child = spawn(process.execPath, ["--conditions=@chatify/source", "--import", "tsx", MAIN], {
    env: { ...process.env, HOST: "127.0.0.1", PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.push(child)
  let output = ""
  const lines: Array<{ readonly at: number; readonly text: string }> = []
  const listening = new Promise<string>((resolve, reject) => {
    let searching = true
    const onData = (chunk: Buffer) => {
      const text = chunk.toString()
      output += text
      lines.push({ at: Date.now(), text })
      // only until found: a server that logs every request would otherwise be searched anew per chunk
      if (!searching) return
      const match = /Listening on (http:\/\/[^"\s]+)/u.exec(output)
      if (match?.[1] !== undefined) {
        searching = false
        resolve(match[1].replace("0.0.0.0", "127.0.0.1"))
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    child.on("exit", () => reject(new Error(`exited before listening:\n${output}`)))
  })
  // not every test waits for it; its rejection is still seen by those that do
  listening.catch(() => undefined)
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  return {
    child,
    output: () => output,
    seenAt: (pattern) => lines.find((line) => pattern.test(line.text))?.at,
    exited,
    listening
  }
}

/**
 * A loopback port nothing listens on, and that nothing is given meanwhile however late it is used: a
 * dead endpoint stays dead, a service stopped on it can start on it again (see freeLoopbackPort).
 */
export const freePort = freeLoopbackPort
