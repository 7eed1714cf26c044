import { Layer, TestClock } from "effect"
import {
  MemoryFanout,
  MemoryLogLayer,
  MemoryPresence,
  MemoryRateLimiter,
  MemoryReadRateLimiter,
  MemorySendDeduplicator
} from "../src/memory/index.js"
import { eventLogContract } from "./contracts/EventLogContract.js"
import { localFanoutContract } from "./contracts/LocalFanoutContract.js"
import { presenceContract } from "./contracts/PresenceContract.js"
import { rateLimiterContract } from "./contracts/RateLimiterContract.js"
import { readRateLimiterContract } from "./contracts/ReadRateLimiterContract.js"
import { sendDeduplicatorContract } from "./contracts/SendDeduplicatorContract.js"

rateLimiterContract("in-memory fixed window", {
  makeLayer: (windowSeconds) => MemoryRateLimiter({ limit: 5, windowSeconds }),
  limit: 5,
  windowSeconds: 60,
  advance: (d) => TestClock.adjust(d)
})

readRateLimiterContract("in-memory fixed window", {
  makeLayer: (windowSeconds) =>
    Layer.merge(MemoryReadRateLimiter({ limit: 5, windowSeconds }), MemoryRateLimiter({ limit: 5, windowSeconds })),
  limit: 5,
  windowSeconds: 60,
  advance: (d) => TestClock.adjust(d)
})

presenceContract("in-memory with TTL", {
  makeLayer: () => MemoryPresence({ ttlMillis: 300_000 }),
  advance: (d) => TestClock.adjust(d)
})

localFanoutContract("in-memory", () => MemoryFanout)

sendDeduplicatorContract("in-memory", {
  makeLayer: (settings) => MemorySendDeduplicator(settings),
  advance: (d) => TestClock.adjust(d)
})

eventLogContract("embedded log", { makeLayer: () => MemoryLogLayer({ partitions: 3 }) })
