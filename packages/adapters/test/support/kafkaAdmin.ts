import { Effect } from "effect"
import { Kafka, logLevel } from "kafkajs"
import { kafkaCall } from "../../src/kafka/index.js"
import { endpoints } from "./services.js"

/** Runs `use` with a connected admin client of the Kafka from scripts/services/kafka.sh, disconnected after. */
export const withAdmin = <A>(use: (admin: ReturnType<Kafka["admin"]>) => Promise<A>, clientId = "chatify-test-setup") =>
  Effect.acquireUseRelease(
    Effect.sync(() => new Kafka({ brokers: [endpoints.kafka], clientId, logLevel: logLevel.NOTHING }).admin()),
    (admin) => Effect.zipRight(kafkaCall("connect", () => admin.connect()), kafkaCall("admin", () => use(admin))),
    (admin) => Effect.ignore(kafkaCall("disconnect", () => admin.disconnect()))
  )
