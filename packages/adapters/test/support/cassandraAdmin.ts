import { Effect } from "effect"
import { Client } from "cassandra-driver"
import { endpoints } from "./services.js"

/** Drops a keyspace of the Cassandra from scripts/services/cassandra.sh (a test's own, at the end of its run). */
export const dropKeyspace = (keyspace: string) =>
  Effect.acquireUseRelease(
    Effect.sync(() =>
      new Client({
        contactPoints: [endpoints.cassandra.host],
        protocolOptions: { port: endpoints.cassandra.port },
        localDataCenter: "datacenter1"
      })
    ),
    // dropping is slow on a busy node: longer than the driver's 12 s
    (client) =>
      Effect.tryPromise(() => client.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`, [], { readTimeout: 60_000 })),
    (client) => Effect.promise(() => client.shutdown())
  )
