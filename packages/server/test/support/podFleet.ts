import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Client } from "cassandra-driver"
import { Effect } from "effect"
import { withAdmin } from "../../../adapters/test/support/kafkaAdmin.js"
import { endpoints } from "../../../adapters/test/support/services.js"
import { type ServerProcess, startServerProcess } from "./serverProcess.js"

/** What a test file's pods leave on the shared services (topics with their `-dlq`): removed when the fleet stops. */
export interface RunResources {
  readonly topics: ReadonlyArray<string>
  readonly groups: ReadonlyArray<string>
  readonly keyspaces: ReadonlyArray<string>
}

export interface PodFleet {
  /** A server process (from source) named `podName`, with a data directory of its own and `env` on top. */
  readonly start: (podName: string, env: Record<string, string>) => ServerProcess
  /**
   * Stops every pod gracefully (so they leave their consumer groups at once instead of stalling them
   * for a session timeout), kills what is left after 20 s, removes the data directories, and drops
   * the run's topics, groups and keyspaces.
   */
  readonly stop: () => Promise<void>
}

/** The pods of one test file on the real services of scripts/services (see resume-kafka-cassandra, tracing-jaeger). */
export const makePodFleet = (resources: RunResources): PodFleet => {
  const children: Array<ChildProcess> = []
  const directories: Array<string> = []
  const pods: Array<ServerProcess> = []
  return {
    start: (podName, env) => {
      const dataDirectory = mkdtempSync(join(tmpdir(), `chatify-${podName}-`))
      directories.push(dataDirectory)
      const pod = startServerProcess(
        { POD_NAME: podName, CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory, ...env },
        children
      )
      pods.push(pod)
      return pod
    },
    stop: async () => {
      for (const pod of pods) pod.child.kill("SIGTERM")
      await Promise.all(
        pods.map((pod) => Promise.race([pod.exited, new Promise((resolve) => setTimeout(resolve, 20_000))]))
      )
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      for (const dir of directories) rmSync(dir, { recursive: true, force: true })
      await Effect.runPromise(
        withAdmin(async (admin) => {
          // with CREATETOPICS the pods also created each topic's dead-letter topic, `{topic}-dlq`
          const topics = resources.topics.flatMap((topic) => [topic, `${topic}-dlq`])
          await admin.deleteTopics({ topics }).catch(() => undefined)
          await admin.deleteGroups([...resources.groups]).catch(() => undefined)
        }).pipe(Effect.ignore)
      )
      if (resources.keyspaces.length === 0) return
      const cassandra = new Client({
        contactPoints: [endpoints.cassandra.host],
        protocolOptions: { port: endpoints.cassandra.port },
        localDataCenter: "datacenter1"
      })
      for (const keyspace of resources.keyspaces) {
        await cassandra.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`).catch(() => undefined)
      }
      await cassandra.shutdown()
    }
  }
}
