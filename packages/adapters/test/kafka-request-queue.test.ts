/**
 * kafkajs 2.2.4's RequestQueue, as patched (patches/kafkajs@2.2.4.patch): an idle connection runs no
 * timer. Unpatched, every broker connection of every client re-armed a 1 ms timer for good
 * (kafkajs issue #1556): about 2.5 points of a core per idle pod here. Requests that wait for the
 * client-side throttle still go out when it ends.
 */
import { createRequire } from "node:module"
import { describe, expect, it } from "vitest"

interface PushedRequest {
  readonly entry: {
    readonly correlationId: number
    readonly resolve: (response: unknown) => void
    readonly reject: (error: unknown) => void
  }
  readonly expectResponse: boolean
  readonly sendRequest: () => void
}

interface RequestQueue {
  throttledUntil: number
  throttleCheckTimeoutId: unknown
  readonly pending: ReadonlyArray<unknown>
  push(request: PushedRequest): void
  scheduleCheckPendingRequests(): void
  checkPendingRequests(): void
  destroy(): void
}

// kafkajs's own module, not a copy: what the producer and consumers run
const RequestQueueClass = createRequire(import.meta.url)("kafkajs/src/network/requestQueue/index.js") as new(
  options: Record<string, unknown>
) => RequestQueue

const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined }
const makeQueue = () =>
  new RequestQueueClass({
    maxInFlightRequests: 1,
    requestTimeout: 30_000,
    enforceRequestTimeout: false,
    clientId: "chatify-test",
    broker: "127.0.0.1:9092",
    logger: silent
  })

describe("kafkajs RequestQueue (patched)", () => {
  it("schedules no check while nothing is pending, however often it is asked", () => {
    const queue = makeQueue()
    try {
      queue.scheduleCheckPendingRequests()
      queue.checkPendingRequests()
      expect(queue.throttleCheckTimeoutId).toBeNull()
    } finally {
      queue.destroy()
    }
  })

  it("still sends a request held back by the client-side throttle once the throttle ends", async () => {
    const queue = makeQueue()
    try {
      const sent: Array<number> = []
      queue.throttledUntil = Date.now() + 30
      queue.push({
        entry: { correlationId: 1, resolve: () => undefined, reject: () => undefined },
        expectResponse: false,
        sendRequest: () => sent.push(1)
      })
      expect(sent).toEqual([])
      expect(queue.pending.length).toBe(1)
      const deadline = Date.now() + 5_000
      while (sent.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
      expect(sent).toEqual([1])
      expect(queue.pending.length).toBe(0)
      // and, with the queue empty again, no timer is left behind
      expect(queue.throttleCheckTimeoutId).toBeNull()
    } finally {
      queue.destroy()
    }
  })
})
