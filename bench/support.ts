import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"

/** Resident memory of a process in bytes (Linux /proc). */
export const rssOf = (pid: number): number => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = /VmRSS:\s+(\d+)\s+kB/u.exec(status)?.[1]
  return kb === undefined ? Number.NaN : Number(kb) * 1024
}

export const percentile = (sorted: Float64Array, p: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

export interface Child {
  readonly process: ChildProcess
  readonly pid: number
  readonly url: string
  readonly stop: () => Promise<void>
}

/** Starts a server process and resolves once it printed its listening address. */
export const startProcess = (args: ReadonlyArray<string>, env: Record<string, string>, pattern: RegExp) =>
  new Promise<Child>((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    const timer = setTimeout(() => reject(new Error(`server did not start in time:\n${output}`)), 60_000)
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const url = pattern.exec(output)?.[1]
      if (url !== undefined) {
        clearTimeout(timer)
        child.stdout.off("data", onData)
        child.stderr.off("data", onData)
        child.stdout.resume()
        child.stderr.resume()
        resolve({
          process: child,
          pid: child.pid!,
          url,
          stop: () =>
            new Promise((done) => {
              if (child.exitCode !== null) return done()
              child.once("exit", () => done())
              child.kill("SIGTERM")
            })
        })
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    child.once("exit", (code) => reject(new Error(`server exited with ${code}:\n${output}`)))
  })

export const fmt = (n: number, digits = 1) => n.toLocaleString("en-US", { maximumFractionDigits: digits })
