import type { ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { endpoints, ensureService } from "../../adapters/test/support/services.js"
import { startServerProcess } from "./support/serverProcess.js"

// Server processes on the real Kafka of scripts/services/kafka.sh: a POD_NAME names the pod's
// broadcast consumer group, so two live pods with one name would each get only part of the events.
const TOPIC = "chatify-pod-name"
// the history writers' group of this run's pods only (they are killed, and a killed member would
// stall a shared group for a session timeout)
const HISTORY_GROUP = `chatify-pod-name-history-${crypto.randomUUID().slice(0, 8)}`
const children: Array<ChildProcess> = []
const directories: Array<string> = []

beforeAll(() => ensureService("kafka"), 300_000)
afterAll(() => {
  for (const child of children) child.kill("SIGKILL")
  for (const dir of directories) rmSync(dir, { recursive: true, force: true })
})

const start = (podName: string) => {
  const dataDirectory = mkdtempSync(join(tmpdir(), "chatify-pod-name-"))
  directories.push(dataDirectory)
  return startServerProcess({
    POD_NAME: podName,
    CHATIFY__EMBEDDED__DATADIRECTORY: dataDirectory,
    CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS: endpoints.kafka,
    CHATIFY__MESSAGEBROKER__TOPICNAME: TOPIC,
    CHATIFY__MESSAGEBROKER__CREATETOPICS: "true",
    CHATIFY__MESSAGEBROKER__HISTORYWRITERCONSUMERGROUP: HISTORY_GROUP,
    // no load balancer to wait for
    CHATIFY__SHUTDOWN__DRAINDELAYSECONDS: "0"
  }, children)
}

const ready = async (base: string) => {
  for (let attempt = 0; attempt < 600; attempt++) {
    const status = await fetch(`${base}/health/ready`).then((r) => r.status, () => 0)
    if (status === 200) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${base} did not become ready`)
}

const errorLines = (output: string) => output.split("\n").filter((line) => line.includes("\"level\":\"ERROR\""))

describe("POD_NAME on Kafka", () => {
  it(
    "a second live pod with the same POD_NAME refuses to start; the pod's own restart after a crash does not",
    async () => {
      const podName = `pod-${crypto.randomUUID().slice(0, 8)}`
      const first = start(podName)
      await ready(await first.listening)

      // a live member heartbeats, so it is still there after the session timeout: refused
      const duplicate = start(podName)
      const outcome = await duplicate.listening.then(
        () => "listening",
        () => duplicate.exited.then((code) => `exited with ${code}`)
      )
      expect(outcome).toBe("exited with 1")
      const errors = errorLines(duplicate.output())
      expect(errors).toHaveLength(1)
      expect(errors[0]).toContain(
        `POD_NAME: another live pod already runs as ${podName} (the consumer group chatify-broadcast-${podName} has live members (chatify-${podName}@`
      )
      expect(duplicate.output()).not.toContain("Listening on")
      // another name is another group
      const other = start(`${podName}-b`)
      await ready(await other.listening)

      // a crashed pod's member is dropped by the coordinator after the session timeout: the restart waits, then runs
      first.child.kill("SIGKILL")
      await first.exited
      const restarted = start(podName)
      await ready(await restarted.listening)
      expect(restarted.output()).toContain(`Consumer group chatify-broadcast-${podName} has live members`)
      expect(errorLines(restarted.output())).toEqual([])
      for (const running of [restarted, other]) {
        running.child.kill("SIGTERM")
        expect(await running.exited).toBe(0)
      }
    },
    240_000
  )
})
