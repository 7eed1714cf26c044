import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"

const scripts = fileURLToPath(new URL("../../../../scripts/services/", import.meta.url))

export type Service = "redis" | "kafka" | "cassandra" | "opensearch" | "jaeger"

/** Loopback endpoints of the services that scripts/services/ starts (same env overrides). */
export const endpoints = {
  redis: `127.0.0.1:${process.env["CHATIFY_REDIS_PORT"] ?? "6379"}`,
  kafka: `127.0.0.1:${process.env["CHATIFY_KAFKA_PORT"] ?? "9092"}`,
  cassandra: { host: "127.0.0.1", port: Number(process.env["CHATIFY_CASSANDRA_PORT"] ?? "9042") },
  opensearch: `http://127.0.0.1:${process.env["CHATIFY_OPENSEARCH_PORT"] ?? "9200"}`,
  jaeger: {
    otlp: `http://127.0.0.1:${process.env["CHATIFY_JAEGER_OTLP_PORT"] ?? "4318"}`,
    query: `http://127.0.0.1:${process.env["CHATIFY_JAEGER_QUERY_PORT"] ?? "16686"}`
  }
} as const

/**
 * Starts a real service with the project's own script (a no-op when it already runs) and waits
 * until it is ready. Integration tests call this in beforeAll; ./scripts/test.sh stops the
 * services when the run ends.
 */
export const ensureService = (service: Service): Promise<void> =>
  new Promise((resolve, reject) => {
    execFile(
      "bash",
      [`${scripts}${service}.sh`, "start"],
      { timeout: 300_000, maxBuffer: 10 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error === null) return resolve()
        reject(new Error(`${service} did not start: ${error.message}\n${stdout}\n${stderr}`))
      }
    )
  })
