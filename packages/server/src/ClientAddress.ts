import { Context, Layer } from "effect"
import { BlockList, isIP } from "node:net"

/**
 * The address of the client behind a request, for limits by address (anonymous rate limits,
 * connections per address). The socket's peer, unless that peer is a trusted proxy
 * (CHATIFY__HTTP__TRUSTEDPROXIES: addresses or CIDR ranges): then X-Forwarded-For is read from the
 * right, hop by hop, while the hop is trusted. A client cannot pick its address by sending the
 * header itself: only what trusted proxies appended is believed.
 */
export class ClientAddresses extends Context.Tag("@chatify/server/ClientAddresses")<ClientAddresses, {
  readonly of: (peerAddress: string | undefined, forwardedFor: string | ReadonlyArray<string> | undefined) => string
}>() {
  static readonly layer = (trustedProxies: ReadonlyArray<string>) =>
    Layer.succeed(ClientAddresses, clientAddresses(trustedProxies))
}

/** `::ffff:10.0.0.1` (an IPv4 peer on a dual-stack socket) is 10.0.0.1. */
const normalize = (address: string): string => {
  const trimmed = address.trim()
  return trimmed.toLowerCase().startsWith("::ffff:") && isIP(trimmed.slice(7)) === 4 ? trimmed.slice(7) : trimmed
}

/** Addresses and CIDR ranges (IPv4 or IPv6); undefined for an entry that is neither. */
export const parseTrustedProxy = (
  entry: string
): { readonly address: string; readonly prefix: number | undefined } | undefined => {
  const [address = "", prefixText, ...rest] = entry.trim().split("/")
  const family = isIP(address)
  if (family === 0 || rest.length > 0) return undefined
  if (prefixText === undefined) return { address, prefix: undefined }
  if (!/^\d{1,3}$/.test(prefixText)) return undefined
  const prefix = Number(prefixText)
  return prefix <= (family === 4 ? 32 : 128) ? { address, prefix } : undefined
}

export const clientAddresses = (trustedProxies: ReadonlyArray<string>): ClientAddresses["Type"] => {
  const trusted = new BlockList()
  for (const entry of trustedProxies) {
    const parsed = parseTrustedProxy(entry)
    if (parsed === undefined) continue
    const family = isIP(parsed.address) === 4 ? "ipv4" : "ipv6"
    if (parsed.prefix === undefined) trusted.addAddress(parsed.address, family)
    else trusted.addSubnet(parsed.address, parsed.prefix, family)
  }
  const isTrusted = (address: string) => {
    const family = isIP(address)
    return family !== 0 && trusted.check(address, family === 4 ? "ipv4" : "ipv6")
  }
  return {
    of: (peerAddress, forwardedFor) => {
      let address = normalize(peerAddress ?? "unknown")
      if (trustedProxies.length === 0 || forwardedFor === undefined || !isTrusted(address)) return address
      const hops = (typeof forwardedFor === "string" ? [forwardedFor] : forwardedFor)
        .flatMap((header) => header.split(","))
        .map(normalize)
        .filter((hop) => hop.length > 0)
      while (isTrusted(address)) {
        const hop = hops.pop()
        if (hop === undefined) break
        // a hop that is not an address ends the walk: the last believable one stands
        if (isIP(hop) === 0) break
        address = hop
      }
      return address
    }
  }
}
