import { readFileSync } from "node:fs"
import { createServer } from "node:net"

/** Ports from here up to the ephemeral range: above the well-known ones the services of scripts/services use. */
const LOWEST = 20_000

/** The low end of the kernel's ephemeral port range: Linux says it; elsewhere, the IANA range. */
const ephemeralRangeStart = (): number => {
  const range = (() => {
    try {
      return readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
    } catch {
      return "" // not Linux
    }
  })()
  const low = Number(range.trim().split(/\s+/u)[0])
  return Number.isInteger(low) && low > LOWEST ? low : 49_152
}

const isFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = createServer()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

/**
 * A loopback port nothing listens on, below the kernel's ephemeral range: neither a `listen(0)` nor an
 * outgoing connection of any process is given it, so it stays free however long after it is picked it
 * is used, and a service stopped on it can start on it again. (A port from `listen(0)`, released, can
 * be handed to anything running meanwhile: a "dead" endpoint would answer, a restart would not bind.)
 */
export const freeLoopbackPort = async (): Promise<number> => {
  const end = ephemeralRangeStart()
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = LOWEST + Math.floor(Math.random() * (end - LOWEST))
    if (await isFree(port)) return port
  }
  throw new Error(`no free loopback port in ${LOWEST}-${end - 1} after 100 tries`)
}
