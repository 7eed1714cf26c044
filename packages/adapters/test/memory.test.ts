import { TestClock } from "effect"
import { MemoryFanout, MemoryLogLayer, MemoryPresence, MemoryRateLimiter } from "../src/memory/index.js"
import { eventLogContract } from "./contracts/EventLogContract.js"
import { localFanoutContract } from "./contracts/LocalFanoutContract.js"
import { presenceContract } from "./contracts/PresenceContract.js"
import { rateLimiterContract } from "./contracts/RateLimiterContract.js"

rateLimiterContract("in-memory fixed window", {
  makeLayer: () => MemoryRateLimiter({ limit: 5, windowSeconds: 60 }),
  limit: 5,
  windowSeconds: 60,
  advance: (d) => TestClock.adjust(d)
})

presenceContract("in-memory with TTL", {
  makeLayer: () => MemoryPresence({ ttlMillis: 300_000 }),
  advance: (d) => TestClock.adjust(d)
})

localFanoutContract("in-memory", () => MemoryFanout)

eventLogContract("embedded log", { makeLayer: () => MemoryLogLayer({ partitions: 3 }) })

