import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { describe, expect, it } from "vitest"

const FIXTURE = new URL("./support/loadedDrivers.ts", import.meta.url).pathname

/** The drivers an embedded server loaded, run in a process of its own (a test worker shares its modules). */
const loadedDrivers = async (...args: ReadonlyArray<string>) => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--conditions=@chatify/source", "--import", "tsx", FIXTURE, ...args],
    { timeout: 60_000 }
  )
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "null") as unknown
}

// The drivers of Kafka, Redis and Cassandra are loaded by the first client made: the embedded
// default's resident memory (its base RSS) carries none of their code.
describe("the drivers of external services", () => {
  it("are not loaded by the embedded default", async () => {
    expect(await loadedDrivers()).toEqual([])
  }, 90_000)

  it("are loaded once a client needs one: Redis-backed limits load ioredis alone", async () => {
    // nothing listens on port 1 of loopback: the client degrades, the server starts
    expect(await loadedDrivers("127.0.0.1:1")).toEqual(["ioredis"])
  }, 90_000)
})
