import net from "node:net"
import { Effect } from "effect"
import type { KafkaOptions } from "../../src/kafka/index.js"

export interface BrokerProxy {
  readonly port: number
  /** Connections stay open, but nothing passes either way. */
  readonly stall: () => void
  /** Every connection is dropped and new ones are refused, until `restore`. */
  readonly cut: () => void
  readonly restore: () => void
  readonly close: () => void
}

/**
 * A TCP proxy in front of a single broker (clients reach it through `throughProxy`, a socketFactory,
 * since the broker advertises its own address): it can stall or cut every connection. Closed with
 * the scope.
 */
export const brokerProxy = (broker: string) =>
  Effect.acquireRelease(
    Effect.async<BrokerProxy>((resume) => {
      const [host = "127.0.0.1", port = "9092"] = broker.split(":")
      let mode: "forward" | "stall" | "refuse" = "forward"
      const open = new Set<net.Socket>()
      const track = (socket: net.Socket) => {
        open.add(socket)
        socket.on("error", () => socket.destroy())
        socket.on("close", () => open.delete(socket))
      }
      const server = net.createServer((client) => {
        track(client)
        if (mode === "refuse") return client.destroy()
        const upstream = net.connect(Number(port), host)
        track(upstream)
        client.on("data", (data) => mode === "forward" && upstream.write(data))
        upstream.on("data", (data) => mode === "forward" && client.write(data))
        client.on("close", () => upstream.destroy())
        upstream.on("close", () => client.destroy())
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        const destroyAll = () => {
          for (const socket of open) socket.destroy()
        }
        resume(Effect.succeed({
          port: typeof address === "object" && address !== null ? address.port : 0,
          stall: () => {
            mode = "stall"
          },
          cut: () => {
            mode = "refuse"
            destroyAll()
          },
          restore: () => {
            mode = "forward"
          },
          close: () => {
            destroyAll()
            server.close()
          }
        }))
      })
    }),
    (proxy) => Effect.sync(() => proxy.close())
  )

/** A kafkajs socketFactory that connects every broker connection to the proxy on `port`. */
export const throughProxy = (port: number): KafkaOptions["socketFactory"] => ({ onConnect }) => {
  const socket = net.connect({ host: "127.0.0.1", port }, onConnect)
  socket.setKeepAlive(true, 60_000)
  return socket
}
