import { Effect, type Scope } from "effect"
import { createServer, type Server, type Socket, connect } from "node:net"

export interface TcpProxy {
  readonly port: number
  /** Destroys every open connection on both sides; answers how many client connections it cut. */
  readonly dropConnections: Effect.Effect<number>
  /** Client connections accepted so far. */
  readonly accepted: Effect.Effect<number>
  /** Sends new connections to another port, e.g. a restarted server: clients keep one address. */
  readonly retarget: (port: number) => Effect.Effect<void>
  /**
   * Stops passing the server's bytes to the client on every open connection, which stay open: a
   * peer that went silent (a stalled network path, an overloaded server). New connections pass.
   */
  readonly stallReplies: Effect.Effect<void>
}

/** A loopback TCP proxy to 127.0.0.1:targetPort, to cut a client's connection from outside it. */
export const startTcpProxy = (targetPort: number): Effect.Effect<TcpProxy, never, Scope.Scope> =>
  Effect.gen(function*() {
    const pairs = new Set<readonly [Socket, Socket]>()
    let accepted = 0
    let target = targetPort
    const server = yield* Effect.acquireRelease(
      Effect.async<Server>((resume) => {
        const server = createServer((client) => {
          accepted++
          const upstream = connect(target, "127.0.0.1")
          const pair = [client, upstream] as const
          pairs.add(pair)
          const close = () => {
            pairs.delete(pair)
            client.destroy()
            upstream.destroy()
          }
          client.on("error", close).on("close", close)
          upstream.on("error", close).on("close", close)
          client.pipe(upstream)
          upstream.pipe(client)
        })
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.async<void>((resume) => {
          for (const [client, upstream] of pairs) {
            client.destroy()
            upstream.destroy()
          }
          server.close(() => resume(Effect.void))
        })
    )
    const address = server.address()
    if (address === null || typeof address === "string") return yield* Effect.dieMessage("proxy is not on TCP")
    return {
      port: address.port,
      dropConnections: Effect.sync(() => {
        const cut = pairs.size
        for (const [client, upstream] of pairs) {
          client.destroy()
          upstream.destroy()
        }
        pairs.clear()
        return cut
      }),
      accepted: Effect.sync(() => accepted),
      retarget: (port) =>
        Effect.sync(() => {
          target = port
        }),
      stallReplies: Effect.sync(() => {
        for (const [client, upstream] of pairs) {
          upstream.unpipe(client)
          upstream.pause()
        }
      })
    }
  })
