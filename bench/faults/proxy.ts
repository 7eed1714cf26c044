// A loopback TCP proxy for the fault bench: in front of the Kafka broker it adds latency or cuts
// every connection (as packages/adapters/test/support/brokerProxy.ts does for one test); in front of
// a pod it is the load balancer, which sends a new connection to the next target when the first
// refuses it (a killed pod), so the pod's clients reconnect to the other pod.
import net from "node:net"

export interface TcpProxy {
  readonly port: number
  /** Every chunk from now on is held this long in each direction (0: none). */
  readonly setLatency: (millis: number) => void
  /** Every connection is dropped and new ones are refused, until `restore`. */
  readonly cut: () => void
  /** Forwards again, without latency. */
  readonly restore: () => void
  /** The ports tried in order for each new connection. */
  readonly setTargets: (ports: ReadonlyArray<number>) => void
  readonly close: () => Promise<void>
}

export const startTcpProxy = (options: {
  readonly targets: ReadonlyArray<number>
  /** 0 (default): any free port. */
  readonly listenPort?: number
}): Promise<TcpProxy> =>
  new Promise((resolve, reject) => {
    let targets = options.targets
    let latency = 0
    let refusing = false
    const open = new Set<net.Socket>()
    const track = (socket: net.Socket) => {
      open.add(socket)
      socket.on("error", () => socket.destroy())
      socket.on("close", () => open.delete(socket))
    }
    // in order, each chunk no earlier than `latency` after it arrived (a timer per chunk could reorder)
    const pipe = (from: net.Socket, to: net.Socket) => {
      const queue: Array<{ readonly due: number; readonly data: Buffer }> = []
      let timer: NodeJS.Timeout | undefined
      const flush = () => {
        timer = undefined
        const now = Date.now()
        while (queue.length > 0 && queue[0]!.due <= now) to.write(queue.shift()!.data)
        if (queue.length > 0) timer = setTimeout(flush, queue[0]!.due - now)
      }
      from.on("data", (data: Buffer) => {
        if (latency === 0 && queue.length === 0) {
          to.write(data)
          return
        }
        queue.push({ due: Date.now() + latency, data })
        timer ??= setTimeout(flush, latency)
      })
      from.on("close", () => {
        if (timer !== undefined) clearTimeout(timer)
        to.destroy()
      })
    }
    const connectUpstream = (client: net.Socket, candidates: ReadonlyArray<number>) => {
      const [port, ...rest] = candidates
      if (port === undefined || refusing) {
        client.destroy()
        return
      }
      const upstream = net.connect(port, "127.0.0.1")
      upstream.once("error", () => {
        upstream.destroy()
        if (!client.destroyed) connectUpstream(client, rest)
      })
      upstream.once("connect", () => {
        if (client.destroyed) {
          upstream.destroy()
          return
        }
        track(upstream)
        pipe(client, upstream)
        pipe(upstream, client)
        client.resume()
      })
    }
    const server = net.createServer({ pauseOnConnect: true }, (client) => {
      track(client)
      if (refusing) {
        client.destroy()
        return
      }
      connectUpstream(client, targets)
    })
    server.once("error", reject)
    server.listen(options.listenPort ?? 0, "127.0.0.1", () => {
      const address = server.address()
      resolve({
        port: typeof address === "object" && address !== null ? address.port : 0,
        setLatency: (millis) => {
          latency = millis
        },
        cut: () => {
          refusing = true
          for (const socket of open) socket.destroy()
        },
        restore: () => {
          refusing = false
          latency = 0
        },
        setTargets: (ports) => {
          targets = ports
        },
        close: () =>
          new Promise((done) => {
            for (const socket of open) socket.destroy()
            server.close(() => done())
          })
      })
    })
  })
