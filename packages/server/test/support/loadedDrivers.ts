/**
 * Starts an embedded server (Redis-backed limits when a connection string is given), then prints
 * which client drivers of external services the process has loaded, as a JSON array.
 */
import { createRequire } from "node:module"
import { Effect, Option } from "effect"
import { startTestServer } from "../../src/testing.js"

const DRIVERS = ["kafkajs", "ioredis", "cassandra-driver"]
const redis = process.argv[2]

const loadedDrivers = () => {
  const paths = Object.keys(createRequire(import.meta.url).cache)
  return DRIVERS.filter((driver) => paths.some((path) => path.includes(`/node_modules/${driver}/`)))
}

const program = Effect.scoped(
  Effect.gen(function*() {
    yield* startTestServer(
      redis === undefined ? {} : { config: { caching: Option.some({ connectionString: redis }) } }
    )
    return loadedDrivers()
  })
)

Effect.runPromise(program).then(
  (drivers) => {
    console.log(JSON.stringify(drivers))
    process.exit(0)
  },
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
