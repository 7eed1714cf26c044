import { describe, expect, it } from "@effect/vitest"
import { Config, ConfigProvider, Duration, Effect, Exit, FastCheck as fc, Option } from "effect"
import { execFile } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { parseAllDocuments } from "yaml"
import { loadServerConfig, type ServerConfig } from "../src/Config.js"
import { startTestServer } from "../src/testing.js"

// deploy/ checked offline: every manifest (the base and each rendered overlay) against the
// Kubernetes 1.33 schemas in strict mode, and against the code it deploys — the ConfigMap through
// the server's own config reader, the probes against the routes the server serves, Services
// against the pods they select, images against the Dockerfiles and scripts/up.sh. The validators
// (kustomize, kubernetes-validate) come from deploy/tools.sh, cached under ~/.cache/chatify.

const ROOT = fileURLToPath(new URL("../../../", import.meta.url))
const KUBERNETES_VERSION = "1.33.0"
const OVERLAYS = ["deploy/k8s", "deploy/overlays/kind", "deploy/overlays/production"] as const
const SCRIPTS = ["up", "down", "status", "logs-chatify", "port-forward"].map((name) => `scripts/${name}.sh`)
/** The Secret scripts/up.sh creates and the chat API's env reads (a 48-byte key, base64). */
const SECRET_PLACEHOLDER = "x".repeat(64)

interface Run {
  readonly code: number
  readonly output: string
}

const run = (file: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env): Promise<Run> =>
  new Promise((resolve) => {
    execFile(
      file,
      [...args],
      { cwd: ROOT, env, timeout: 900_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
        resolve({ code, output: `${stdout}${stderr}` })
      }
    )
  })

// --- the parts of Kubernetes objects these checks read

interface EnvVar {
  readonly name: string
  readonly value?: string
  readonly valueFrom?: {
    readonly fieldRef?: { readonly fieldPath: string }
    readonly secretKeyRef?: { readonly name: string; readonly key: string }
    readonly configMapKeyRef?: { readonly name: string; readonly key: string }
  }
}
interface Probe {
  readonly httpGet?: { readonly path: string; readonly port: number | string }
  readonly tcpSocket?: { readonly port: number | string }
}
interface Container {
  readonly name: string
  readonly image: string
  readonly imagePullPolicy?: string
  readonly args?: ReadonlyArray<string>
  readonly env?: ReadonlyArray<EnvVar>
  readonly envFrom?: ReadonlyArray<{ readonly configMapRef?: { readonly name: string } }>
  readonly ports?: ReadonlyArray<{ readonly name?: string; readonly containerPort: number }>
  readonly startupProbe?: Probe
  readonly readinessProbe?: Probe
  readonly livenessProbe?: Probe
  readonly lifecycle?: { readonly preStop?: { readonly sleep?: { readonly seconds: number } } }
  readonly securityContext?: {
    readonly allowPrivilegeEscalation?: boolean
    readonly readOnlyRootFilesystem?: boolean
    readonly capabilities?: { readonly drop?: ReadonlyArray<string> }
  }
  readonly volumeMounts?: ReadonlyArray<{ readonly name: string; readonly mountPath: string }>
  readonly resources?: Resources
}
interface Resources {
  readonly requests?: Record<string, string>
  readonly limits?: Record<string, string>
}
interface PodSpec {
  readonly containers: ReadonlyArray<Container>
  readonly initContainers?: ReadonlyArray<Container>
  readonly terminationGracePeriodSeconds?: number
  readonly securityContext?: {
    readonly runAsNonRoot?: boolean
    readonly runAsUser?: number
    readonly seccompProfile?: { readonly type: string }
  }
  readonly volumes?: ReadonlyArray<{ readonly name: string; readonly emptyDir?: object }>
}
interface Manifest {
  readonly apiVersion: string
  readonly kind: string
  readonly metadata: {
    readonly name: string
    readonly namespace?: string
    readonly labels?: Record<string, string>
    readonly annotations?: Record<string, string>
  }
  readonly data?: Record<string, string>
  readonly spec?: {
    readonly replicas?: number
    readonly minReplicas?: number
    readonly maxReplicas?: number
    readonly maxUnavailable?: number | string
    readonly minAvailable?: number | string
    readonly volumeClaimTemplates?: ReadonlyArray<{ readonly spec: { readonly storageClassName?: string } }>
    readonly type?: string
    readonly clusterIP?: string
    readonly serviceName?: string
    readonly selector?: Record<string, string> & { readonly matchLabels?: Record<string, string> }
    readonly ports?: ReadonlyArray<
      { readonly port: number; readonly targetPort?: number | string; readonly nodePort?: number }
    >
    readonly template?: { readonly metadata?: { readonly labels?: Record<string, string> }; readonly spec: PodSpec }
    readonly scaleTargetRef?: { readonly kind: string; readonly name: string }
  }
}

const parseManifests = (text: string, source: string): Array<Manifest> =>
  parseAllDocuments(text).flatMap((document) => {
    if (document.errors.length > 0) throw new Error(`${source}: ${document.errors.map(String).join("; ")}`)
    const value: unknown = document.toJS()
    if (value === null || value === undefined) return []
    const manifest = value as Manifest
    if (typeof manifest.kind !== "string" || typeof manifest.metadata.name !== "string") {
      throw new Error(`${source}: a document without kind or metadata.name`)
    }
    return [manifest]
  })

const isWorkload = (manifest: Manifest) => ["Deployment", "StatefulSet", "Job"].includes(manifest.kind)
const podSpecOf = (manifest: Manifest): PodSpec => {
  const spec = manifest.spec?.template?.spec
  if (spec === undefined) throw new Error(`${manifest.kind}/${manifest.metadata.name} has no pod template`)
  return spec
}
const podLabelsOf = (manifest: Manifest) => manifest.spec?.template?.metadata?.labels ?? {}
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels[key] === value)
const find = (manifests: ReadonlyArray<Manifest>, kind: string, name: string): Manifest => {
  const found = manifests.find((manifest) => manifest.kind === kind && manifest.metadata.name === name)
  if (found === undefined) throw new Error(`no ${kind}/${name}`)
  return found
}
const containerNamed = (manifest: Manifest, name: string): Container => {
  const container = podSpecOf(manifest).containers.find((candidate) => candidate.name === name)
  if (container === undefined) throw new Error(`${manifest.metadata.name} has no container ${name}`)
  return container
}
/** The containerPort a probe or Service port names (by name or number), undefined when none. */
const resolvePort = (containers: ReadonlyArray<Container>, port: number | string): number | undefined =>
  containers.flatMap((container) => container.ports ?? []).find((candidate) =>
    typeof port === "number" ? candidate.containerPort === port : candidate.name === port
  )?.containerPort

/** The environment the chat API's container sees: its ConfigMap, then its own entries. */
const containerEnvironment = (manifests: ReadonlyArray<Manifest>, container: Container): Map<string, string> => {
  const env = new Map<string, string>()
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef === undefined) continue
    for (const [key, value] of Object.entries(find(manifests, "ConfigMap", source.configMapRef.name).data ?? {})) {
      env.set(key, value)
    }
  }
  for (const entry of container.env ?? []) {
    const from = entry.valueFrom
    if (entry.value !== undefined) env.set(entry.name, entry.value)
    else if (from?.fieldRef?.fieldPath === "metadata.name") env.set(entry.name, "chatify-chat-api-7d9f4c5b6d-abc12")
    else if (from?.secretKeyRef !== undefined) env.set(entry.name, SECRET_PLACEHOLDER)
    else if (from?.configMapKeyRef !== undefined) {
      const value = find(manifests, "ConfigMap", from.configMapKeyRef.name).data?.[from.configMapKeyRef.key]
      if (value !== undefined) env.set(entry.name, value)
    } else throw new Error(`env ${entry.name}: a source this test does not resolve`)
  }
  return env
}

/** The server's modules, but its entry points (main.ts runs the server, cli/ runs a command). */
const serverModuleFiles = (directory: string): Array<string> =>
  readdirSync(join(ROOT, directory)).flatMap((name) => {
    const path = join(directory, name)
    if (statSync(join(ROOT, path)).isDirectory()) return name === "cli" ? [] : serverModuleFiles(path)
    return name.endsWith(".ts") && path !== "packages/server/src/main.ts" ? [path] : []
  })

/**
 * Every other configuration the server's modules export: Config values (`tracingConfig`), and the
 * functions named `…Config` that make one from a flag (`loggingConfig(stdoutIsTerminal)`).
 */
const otherServerConfigs: ReadonlyArray<Config.Config<unknown>> = (
  await Promise.all(
    serverModuleFiles("packages/server/src").map(async (file) =>
      (await import(pathToFileURL(join(ROOT, file)).href)) as Record<string, unknown>
    )
  )
).flatMap((module) =>
  Object.entries(module).flatMap(([name, value]: [string, unknown]) => {
    if (Config.isConfig(value)) return [value]
    if (typeof value === "function" && name.endsWith("Config") && value.length <= 1) {
      const made: unknown = (value as (flag: boolean) => unknown)(false)
      return Config.isConfig(made) ? [made] : []
    }
    return []
  })
)

/**
 * Loads the server's configuration (the same `loadServerConfig` main.ts runs, and every other
 * config the module exports) from `env`, recording every key asked for: the keys the server reads,
 * taken from its code, not from a list.
 */
const loadConfigRecording = (env: ReadonlyMap<string, string>) => {
  const requested = new Set<string>()
  const flat = ConfigProvider.fromMap(new Map(env), { pathDelim: "__", seqDelim: "," }).flattened
  const recording = ConfigProvider.fromFlat(ConfigProvider.makeFlat({
    load: (path, primitive, split) => {
      requested.add(path.join("__"))
      return flat.load(path, primitive, split)
    },
    enumerateChildren: (path) => flat.enumerateChildren(path),
    patch: flat.patch
  }))
  const others = Effect.runSyncExit(
    Effect.forEach(otherServerConfigs, (config) => config).pipe(Effect.withConfigProvider(recording))
  )
  const exit = Effect.runSyncExit(loadServerConfig.pipe(Effect.withConfigProvider(recording)))
  return { exit, others, requested }
}

/** host:port pairs of a comma-separated list, the port defaulting to `defaultPort`. */
const endpoints = (list: string, defaultPort: number) =>
  list.split(",").map((entry) => {
    const [host = "", port] = entry.trim().split(":")
    return { host, port: port === undefined ? defaultPort : Number(port) }
  })

/** A container's plain `value` entries (not those from a ConfigMap, Secret or field). */
const plainEnv = (container: Container): Map<string, string> =>
  new Map((container.env ?? []).flatMap((entry) => entry.value === undefined ? [] : [[entry.name, entry.value]]))

/** A CPU or memory quantity ("250m", "1", "768Mi", "2Gi", "750M") in cores or bytes. */
const quantity = (value: string): number => {
  const match = /^(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi|Ti)?$/u.exec(value)
  if (match === null) throw new Error(`not a quantity: ${value}`)
  const factor: Record<string, number> = {
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40
  }
  return Number(match[1]) * (match[2] === undefined ? 1 : factor[match[2]]!)
}

/**
 * Whether a .dockerignore pattern leaves `path` (relative to the context) out: `*` within one path
 * segment, `**` any number of segments, and a directory's contents with it (no `?`, `[…]` or `!`).
 */
const dockerignoreExcludes = (pattern: string, path: string): boolean =>
  new RegExp(
    `^${
      pattern.replace(/^\/+|\/+$/gu, "").split("/").map((part) =>
        part === "**" ? "(?:[^/]+/)*" : `${part.replace(/[.+^${}()|[\]\\]/gu, "\\$&").replaceAll("*", "[^/]*")}/`
      ).join("").replace(/\/$/u, "")
    }(?:/.*)?$`,
    "u"
  ).test(path)

/** The Service (in the chatify namespace) a host name reaches, with the port it must offer. */
const expectServiceFor = (manifests: ReadonlyArray<Manifest>, host: string, port: number) => {
  const name = host.replace(/\.chatify(\.svc(\.cluster\.local)?)?$/u, "")
  const service = find(manifests, "Service", name)
  expect(service.spec?.ports?.map((candidate) => candidate.port), `${name} port`).toContain(port)
}

/** The `--name value` pairs of a command line. */
const flagsOf = (commandLine: string) =>
  new Map([...commandLine.matchAll(/--([a-z-]+)[ =]([^\s\\]+)/gu)].map((match) => [match[1]!, match[2]!]))

const yamlFilesUnder = (directory: string): Array<string> =>
  readdirSync(join(ROOT, directory)).flatMap((name) => {
    const path = join(directory, name)
    if (statSync(join(ROOT, path)).isDirectory()) return yamlFilesUnder(path)
    return name.endsWith(".yaml") && name !== "kustomization.yaml" ? [path] : []
  })

const libValue = (name: string) => {
  const match = new RegExp(`^${name}="([^"]+)"$`, "mu").exec(readFileSync(join(ROOT, "deploy/lib.sh"), "utf8"))
  if (match === null) throw new Error(`deploy/lib.sh sets no ${name}`)
  return match[1]!
}

// --- the validators and the rendered overlays, once for the whole file

const tools = await (async () => {
  const installed = await run("bash", ["deploy/tools.sh", "paths"])
  if (installed.code !== 0) throw new Error(`deploy/tools.sh paths failed:\n${installed.output}`)
  const path = (name: string) => {
    const match = new RegExp(`^${name}=(.+)$`, "mu").exec(installed.output)
    if (match === null) throw new Error(`deploy/tools.sh printed no ${name}`)
    return match[1]!
  }
  return { kustomize: path("KUSTOMIZE"), kubernetesValidate: path("KUBERNETES_VALIDATE") }
})()

const rendered = new Map<string, { readonly text: string; readonly manifests: Array<Manifest> }>()
for (const overlay of OVERLAYS) {
  const build = await run(tools.kustomize, ["build", overlay])
  if (build.code !== 0) throw new Error(`kustomize build ${overlay} failed:\n${build.output}`)
  rendered.set(overlay, { text: build.output, manifests: parseManifests(build.output, overlay) })
}
const eachOverlay = [...rendered.entries()].map(([overlay, { manifests }]) => ({ overlay, manifests }))

describe("deploy/: Kubernetes schemas", () => {
  it("every manifest file and every rendered overlay validates strictly against Kubernetes 1.33", async () => {
    const scratch = mkdtempSync(join(tmpdir(), "chatify-deploy-"))
    try {
      const renderedFiles = [...rendered.entries()].map(([overlay, { text }]) => {
        const file = join(scratch, `${overlay.replaceAll("/", "_")}.yaml`)
        writeFileSync(file, text)
        return file
      })
      const files = [...yamlFilesUnder("deploy/k8s").map((file) => join(ROOT, file)), ...renderedFiles]
      const validated = await run(tools.kubernetesValidate, [
        "--kubernetes-version",
        KUBERNETES_VERSION,
        "--strict",
        ...files
      ])
      // a kind or apiVersion without a schema is only a WARN to the tool: here it is a failure
      const problems = validated.output.split("\n").filter((line) => /^(WARN|ERROR|CRITICAL)/u.test(line))
      expect(problems).toEqual([])
      expect(validated.code).toBe(0)
      const passed = validated.output.split("\n").filter((line) => line.startsWith("INFO") && line.includes("passed"))
      const documents = [...rendered.values()].reduce((sum, { manifests }) => sum + manifests.length, 0)
      expect(passed.length).toBeGreaterThan(documents) // the rendered ones and the files themselves
    } finally {
      rmSync(scratch, { recursive: true, force: true })
    }
  }, 120_000)

  it("the base holds every manifest file under deploy/k8s, all in namespace chatify", () => {
    const base = rendered.get("deploy/k8s")!.manifests
    const inFiles = yamlFilesUnder("deploy/k8s").flatMap((file) =>
      parseManifests(readFileSync(join(ROOT, file), "utf8"), file).map((manifest) =>
        `${manifest.kind}/${manifest.metadata.name}`
      )
    )
    expect(base.map((manifest) => `${manifest.kind}/${manifest.metadata.name}`).sort()).toEqual(inFiles.sort())
    for (const manifest of base) {
      if (manifest.kind === "Namespace") expect(manifest.metadata.name).toBe("chatify")
      else expect(manifest.metadata.namespace, `${manifest.kind}/${manifest.metadata.name}`).toBe("chatify")
    }
  })
})

describe.each(eachOverlay)("deploy/: $overlay", ({ manifests }) => {
  const chatApi = find(manifests, "Deployment", "chatify-chat-api")
  const apiContainer = containerNamed(chatApi, "chatify-chat-api")
  const env = containerEnvironment(manifests, apiContainer)
  const configMap = find(manifests, "ConfigMap", "chatify-chat-api-config")
  const loaded = loadConfigRecording(env)
  const config = (): ServerConfig => {
    if (Exit.isFailure(loaded.exit)) {
      throw new Error(`the server refuses this configuration: ${String(loaded.exit.cause)}`)
    }
    return loaded.exit.value
  }

  it("the server starts with the chat API's environment, on Kafka, Redis, ScyllaDB and JWT", () => {
    expect(otherServerConfigs.length).toBeGreaterThan(1) // the logging and tracing configs, at least
    if (Exit.isFailure(loaded.others)) throw new Error(`refused: ${String(loaded.others.cause)}`)
    const settings = config()
    expect(settings.broker.useInMemoryBroker).toBe(false)
    expect(settings.broker.bootstrapServers.length).toBeGreaterThan(0)
    expect(Option.isSome(settings.caching)).toBe(true)
    expect(Option.isSome(settings.database)).toBe(true)
    expect(Option.isSome(settings.auth)).toBe(true)
    // bound on every interface, or the kubelet's probes (from the node) never reach it
    expect(["0.0.0.0", "::"]).toContain(settings.host)
  })

  it("every key the chat API's environment sets is one the server reads", () => {
    const unread = [...env.keys()].filter((key) => !loaded.requested.has(key) && key !== "NODE_OPTIONS")
    expect(unread).toEqual([])
  })

  it("every CHATIFY__ key the server reads is set, or left unset on purpose (annotated in the ConfigMap)", () => {
    const leftUnset = (configMap.metadata.annotations?.["chatify.io/keys-left-unset"] ?? "").split(/\s+/u).filter(
      (key) => key.length > 0
    )
    const missing = [...loaded.requested].filter((key) =>
      key.startsWith("CHATIFY__") && !env.has(key) && !leftUnset.includes(key)
    )
    expect(missing, "add them to deploy/k8s/chat-api/10-configmap.yaml").toEqual([])
    // and an annotated key is one the server reads and the deployment does not set
    for (const key of leftUnset) {
      expect(loaded.requested.has(key), key).toBe(true)
      expect(env.has(key), key).toBe(false)
    }
  })

  it("the JWT key and the logging password come from the Secret scripts/up.sh creates", () => {
    const secretRefOf = (name: string) =>
      apiContainer.env?.find((entry) => entry.name === name)?.valueFrom?.secretKeyRef
    const secretRef = secretRefOf("CHATIFY__AUTH__HS256SECRET")
    expect(secretRef).toBeDefined()
    const upScript = readFileSync(join(ROOT, "scripts/up.sh"), "utf8")
    expect(upScript).toContain(`create secret generic ${secretRef!.name}`)
    expect(upScript).toContain(`--from-literal=${secretRef!.key}=`)
    // the logging password (only when Elasticsearch wants one) from the same Secret, optional there
    expect(secretRefOf("CHATIFY__LOGGING__PASSWORD")?.name).toBe(secretRef!.name)
    expect(Object.keys(configMap.data ?? {}).some((key) => key.includes("SECRET") || key.includes("PASSWORD"))).toBe(
      false
    )
  })

  it("the probes use the server's port and health routes, and the grace period covers the drain", () => {
    const settings = config()
    const probes = [apiContainer.startupProbe, apiContainer.readinessProbe, apiContainer.livenessProbe]
    expect(probes.map((probe) => probe?.httpGet?.path)).toEqual(["/health/startup", "/health/ready", "/health/live"])
    for (const probe of probes) expect(resolvePort([apiContainer], probe!.httpGet!.port)).toBe(settings.port)
    const preStop = apiContainer.lifecycle?.preStop?.sleep?.seconds ?? 0
    expect(preStop, "a preStop sleep while the endpoint is removed").toBeGreaterThan(0)
    const drain = Duration.toSeconds(settings.shutdownDrainDelay) + 2 * Duration.toSeconds(settings.shutdownGrace)
    expect(podSpecOf(chatApi).terminationGracePeriodSeconds).toBeGreaterThan(preStop + drain)
  })

  it("the chat API runs restricted: non-root, read-only root, no privilege escalation, no capabilities", () => {
    const pod = podSpecOf(chatApi)
    expect(pod.securityContext?.runAsNonRoot).toBe(true)
    expect(pod.securityContext?.seccompProfile?.type).toBe("RuntimeDefault")
    expect(apiContainer.securityContext?.allowPrivilegeEscalation).toBe(false)
    expect(apiContainer.securityContext?.readOnlyRootFilesystem).toBe(true)
    expect(apiContainer.securityContext?.capabilities?.drop).toContain("ALL")
    // the one directory the server writes is a mounted emptyDir
    const dataDirectory = config().dataDirectory
    const mount = apiContainer.volumeMounts?.find((candidate) => dataDirectory.startsWith(candidate.mountPath))
    expect(mount, dataDirectory).toBeDefined()
    expect(pod.volumes?.find((volume) => volume.name === mount!.name)?.emptyDir).toBeDefined()
  })

  it("the chat API runs 3 pods or more, each with its own POD_NAME from the downward API", () => {
    expect(chatApi.spec?.replicas).toBeGreaterThanOrEqual(3)
    const podName = apiContainer.env?.find((entry) => entry.name === "POD_NAME")
    expect(podName?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.name")
    expect(loaded.requested.has("POD_NAME")).toBe(true)
    expect(config().podId).toBe(env.get("POD_NAME"))
  })

  it("the chat API has a PodDisruptionBudget, a NodePort or ClusterIP Service and an HPA, all on its pods", () => {
    const pods = podLabelsOf(chatApi)
    const budgets = manifests.filter((manifest) =>
      manifest.kind === "PodDisruptionBudget" && matches(manifest.spec?.selector?.matchLabels ?? {}, pods)
    )
    expect(budgets.length).toBe(1)
    expect(budgets[0]!.spec?.maxUnavailable ?? budgets[0]!.spec?.minAvailable).toBeDefined()
    const services = manifests.filter((manifest) =>
      manifest.kind === "Service" && matches(manifest.spec?.selector ?? {}, pods)
    )
    expect(services.map((service) => service.metadata.name)).toEqual(["chatify-chat-api"])
    const autoscaler = manifests.find((manifest) =>
      manifest.kind === "HorizontalPodAutoscaler" && manifest.spec?.scaleTargetRef?.kind === "Deployment" &&
      manifest.spec.scaleTargetRef.name === chatApi.metadata.name
    )
    expect(autoscaler?.spec?.minReplicas).toBe(chatApi.spec?.replicas)
    expect(autoscaler?.spec?.maxReplicas).toBeGreaterThan(autoscaler?.spec?.minReplicas ?? Infinity)
  })

  it("every container of every workload has CPU and memory requests and limits, requests within limits", () => {
    for (const workload of manifests.filter(isWorkload)) {
      const pod = podSpecOf(workload)
      for (const container of [...pod.containers, ...(pod.initContainers ?? [])]) {
        const where = `${workload.metadata.name}/${container.name}`
        for (const resource of ["cpu", "memory"]) {
          const request = container.resources?.requests?.[resource]
          const limit = container.resources?.limits?.[resource]
          expect(request, `${where} ${resource} request`).toBeDefined()
          expect(limit, `${where} ${resource} limit`).toBeDefined()
          expect(quantity(request!), `${where} ${resource}`).toBeLessThanOrEqual(quantity(limit!))
        }
      }
    }
  })

  it("every component is deployed: Kafka (KRaft), Redis, ScyllaDB, Elasticsearch, Kibana, Flink, AKHQ", () => {
    const components: ReadonlyArray<readonly [string, string]> = [
      ["StatefulSet", "chatify-kafka"],
      ["Job", "chatify-kafka-topic-init"],
      ["Deployment", "chatify-redis"],
      ["StatefulSet", "chatify-scylla"],
      ["StatefulSet", "chatify-elastic"],
      ["Deployment", "chatify-kibana"],
      ["Deployment", "chatify-flink-jobmanager"],
      ["Deployment", "chatify-flink-taskmanager"],
      ["Job", "chatify-flink-job-submitter"],
      ["Deployment", "chatify-akhq"]
    ]
    for (const [kind, name] of components) expect(() => find(manifests, kind, name), `${kind}/${name}`).not.toThrow()
  })

  it("every StatefulSet is governed by a headless Service of its own pods (stable DNS names per pod)", () => {
    for (const { overlay, manifests: objects } of [{ overlay: "base", manifests }, ...eachOverlay]) {
      for (const set of objects.filter((m) => m.kind === "StatefulSet")) {
        const governing = find(objects, "Service", set.spec?.serviceName ?? "")
        expect(governing.spec?.clusterIP, `${overlay}: ${set.metadata.name}`).toBe("None")
      }
    }
  })

  it("Kafka runs KRaft from the Apache image behind a headless Service, one quorum voter per replica", () => {
    const kafka = find(manifests, "StatefulSet", "chatify-kafka")
    const broker = containerNamed(kafka, "kafka")
    expect(broker.image).toMatch(/^apache\/kafka:/u)
    const headless = find(manifests, "Service", kafka.spec?.serviceName ?? "")
    expect(headless.spec?.clusterIP).toBe("None")
    const brokerEnv = plainEnv(broker)
    expect(brokerEnv.get("KAFKA_PROCESS_ROLES")?.split(",")).toContain("controller")
    const replicas = kafka.spec?.replicas ?? 1
    const voters = (brokerEnv.get("KAFKA_CONTROLLER_QUORUM_VOTERS") ?? "").split(",")
    expect(voters).toEqual(
      Array.from(
        { length: replicas },
        (_, ordinal) => `${ordinal}@chatify-kafka-${ordinal}.${headless.metadata.name}.chatify.svc.cluster.local:9093`
      )
    )
    // every topic and internal topic can be placed, and a write can reach min.insync.replicas
    const replication = Number(brokerEnv.get("KAFKA_DEFAULT_REPLICATION_FACTOR"))
    expect(replication).toBeLessThanOrEqual(replicas)
    expect(Number(brokerEnv.get("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"))).toBeLessThanOrEqual(replicas)
    expect(Number(brokerEnv.get("KAFKA_MIN_INSYNC_REPLICAS"))).toBeLessThanOrEqual(replication)
    const topicInit = plainEnv(containerNamed(find(manifests, "Job", "chatify-kafka-topic-init"), "topic-init"))
    expect(Number(topicInit.get("REPLICATION_FACTOR"))).toBe(replication)
  })

  it("ScyllaDB has as many nodes as the chat API's keyspace has replicas, or more", () => {
    const database = Option.getOrThrow(config().database)
    expect(find(manifests, "StatefulSet", "chatify-scylla").spec?.replicas ?? 1).toBeGreaterThanOrEqual(
      Number(env.get("CHATIFY__DATABASE__REPLICATIONFACTOR"))
    )
    expect(database.contactPoints.length).toBeGreaterThan(0)
  })

  it("Elasticsearch, Kibana, Flink and AKHQ address Services of this deployment, on ports they offer", () => {
    const url = (text: string) => {
      const parsed = new URL(text)
      return { host: parsed.hostname, port: Number(parsed.port) }
    }
    // the chat API's log sink
    const logs = url(env.get("CHATIFY__LOGGING__URI") ?? "")
    expectServiceFor(manifests, logs.host, logs.port)
    // Kibana's Elasticsearch
    const kibana = plainEnv(containerNamed(find(manifests, "Deployment", "chatify-kibana"), "kibana"))
    for (const host of (kibana.get("ELASTICSEARCH_HOSTS") ?? "").split(",")) {
      expectServiceFor(manifests, url(host).host, url(host).port)
    }
    // AKHQ's Kafka cluster (its application.yml, mounted from the ConfigMap)
    const akhq = find(manifests, "ConfigMap", "chatify-akhq-config").data?.["application.yml"] ?? ""
    const akhqSettings = parseAllDocuments(akhq)[0]!.toJS() as {
      readonly akhq: { readonly connections: Record<string, { readonly properties: Record<string, string> }> }
    }
    const connections = Object.values(akhqSettings.akhq.connections)
    expect(connections.length).toBeGreaterThan(0)
    for (const connection of connections) {
      for (const { host, port } of endpoints(connection.properties["bootstrap.servers"] ?? "", 9092)) {
        expectServiceFor(manifests, host, port)
      }
    }
    // the Flink cluster's JobManager: RPC for the TaskManagers, REST for the job submitter
    const flinkProperties = new Map(
      (find(manifests, "ConfigMap", "chatify-flink-config").data?.["FLINK_PROPERTIES"] ?? "").split("\n").flatMap(
        (line) => {
          const [key, value] = line.split(/:\s*/u, 2)
          return key === undefined || value === undefined ? [] : [[key.trim(), value.trim()]]
        }
      )
    )
    expectServiceFor(manifests, flinkProperties.get("jobmanager.rpc.address") ?? "", 6123)
    expectServiceFor(manifests, flinkProperties.get("rest.address") ?? "", 8081)
    const submitter = plainEnv(
      containerNamed(find(manifests, "Job", "chatify-flink-job-submitter"), "flink-submit")
    )
    expectServiceFor(manifests, submitter.get("JOBMANAGER_HOST") ?? "", Number(submitter.get("JOBMANAGER_REST_PORT")))
  })

  it("Kafka, Redis and ScyllaDB endpoints of the configuration are Services of this deployment", () => {
    const settings = config()
    for (const { host, port } of endpoints(settings.broker.bootstrapServers.join(","), 9092)) {
      expectServiceFor(manifests, host, port)
    }
    const redis = Option.getOrThrow(settings.caching).connectionString.split(",")[0]!
    for (const { host, port } of endpoints(redis, 6379)) expectServiceFor(manifests, host, port)
    const database = Option.getOrThrow(settings.database)
    for (const host of database.contactPoints) expectServiceFor(manifests, host, database.port)
  })

  it("the topic-init Job creates the chat API's topics with its partition count, and the Flink job's", () => {
    const settings = config()
    const job = containerNamed(find(manifests, "Job", "chatify-kafka-topic-init"), "topic-init")
    const jobEnv = new Map((job.env ?? []).map((entry) => [entry.name, entry.value ?? ""]))
    const topics = new Map(
      (jobEnv.get("TOPICS") ?? "").split(/\s+/u).filter((entry) => entry.length > 0).map((entry) => {
        const [name = "", partitions = ""] = entry.split(":")
        return [name, Number(partitions)]
      })
    )
    // the pods refuse to start on a topic with another partition count
    expect(topics.get(settings.broker.topicName)).toBe(settings.broker.partitions)
    expect(topics.has(settings.broker.deadLetterTopicName)).toBe(true)
    // and every other topic the chat API is configured with (the analytics job's outputs)
    for (const [key, topic] of env) if (/TOPIC(NAME)?$/u.test(key)) expect(topics.has(topic), key).toBe(true)
    expectServiceFor(manifests, (jobEnv.get("BOOTSTRAP_SERVERS") ?? "").split(":")[0]!, 9092)

    const submitter = containerNamed(find(manifests, "Job", "chatify-flink-job-submitter"), "flink-submit")
    const flags = flagsOf((submitter.args ?? []).join(" "))
    expect(flags.get("input-topic")).toBe(settings.broker.topicName)
    expect(topics.has(flags.get("scope-stats-topic") ?? "")).toBe(true)
    expect(topics.has(flags.get("rate-limit-topic") ?? "")).toBe(true)
    expect(Number(flags.get("partitions"))).toBe(settings.broker.partitions)
    for (const { host, port } of endpoints(flags.get("bootstrap-servers") ?? "", 9092)) {
      expectServiceFor(manifests, host, port)
    }
  })

  it("every Service selects pods of this deployment, on ports those pods declare", () => {
    const workloads = manifests.filter(isWorkload)
    for (const service of manifests.filter((manifest) => manifest.kind === "Service")) {
      const selector = service.spec?.selector ?? {}
      const selected = workloads.filter((workload) => matches(selector, podLabelsOf(workload)))
      expect(selected.map((workload) => workload.metadata.name), service.metadata.name).not.toEqual([])
      for (const port of service.spec?.ports ?? []) {
        const containers = selected.flatMap((workload) => podSpecOf(workload).containers)
        expect(resolvePort(containers, port.targetPort ?? port.port), `${service.metadata.name}:${port.port}`)
          .toBeDefined()
      }
    }
  })

  it("every workload selects its own pods; StatefulSets, PDBs and HPAs name what exists", () => {
    for (const workload of manifests.filter((manifest) => manifest.kind !== "Job" && isWorkload(manifest))) {
      expect(matches(workload.spec?.selector?.matchLabels ?? {}, podLabelsOf(workload)), workload.metadata.name)
        .toBe(true)
      if (workload.kind === "StatefulSet") {
        const governing = find(manifests, "Service", workload.spec?.serviceName ?? "")
        expect(matches(governing.spec?.selector ?? {}, podLabelsOf(workload))).toBe(true)
      }
    }
    for (const budget of manifests.filter((manifest) => manifest.kind === "PodDisruptionBudget")) {
      const selector = budget.spec?.selector?.matchLabels ?? {}
      expect(manifests.filter(isWorkload).some((workload) => matches(selector, podLabelsOf(workload)))).toBe(true)
    }
    for (const autoscaler of manifests.filter((manifest) => manifest.kind === "HorizontalPodAutoscaler")) {
      const target = autoscaler.spec?.scaleTargetRef
      expect(find(manifests, target?.kind ?? "", target?.name ?? "")).toBeDefined()
    }
  })

  it("every image has a pinned tag; Chatify's are the ones scripts/up.sh builds", () => {
    const built = [libValue("CHAT_API_IMAGE"), libValue("FLINK_JOBS_IMAGE")]
    const images = manifests.filter(isWorkload).flatMap((workload) => {
      const pod = podSpecOf(workload)
      return [...pod.containers, ...(pod.initContainers ?? [])].map((container) => container.image)
    })
    for (const image of images) expect(image, image).toMatch(/^[^:]+:(?!latest$)[\w][\w.-]*$/u)
    const ours = new Set(images.filter((image) => image.startsWith("chatify/")))
    expect([...ours].sort()).toEqual([...built].sort())
  })
})

describe("deploy/: images, Dockerfiles and the kind cluster", () => {
  const base = rendered.get("deploy/k8s")!.manifests
  const dockerfile = (path: string) => readFileSync(join(ROOT, path), "utf8")
  const fromLines = (text: string) => [...text.matchAll(/^FROM\s+(\S+)/gmu)].map((match) => match[1]!)

  it("the chat API image is the server's version, built by a Dockerfile that runs it as non-root", () => {
    const [name, tag] = libValue("CHAT_API_IMAGE").split(":")
    const version: unknown = (JSON.parse(readFileSync(join(ROOT, "packages/server/package.json"), "utf8")) as {
      version?: unknown
    }).version
    expect(name).toBe("chatify/chat-api")
    expect(tag).toBe(version)
    const text = dockerfile(libValue("CHAT_API_DOCKERFILE"))
    // multi-stage: built with the toolchain, shipped on the slim image of the Node line the workspace targets
    expect(fromLines(text).length).toBeGreaterThanOrEqual(2)
    expect(fromLines(text).at(-1)).toMatch(/^node:20-[\w.-]*slim$/u)
    expect(text).toMatch(/^USER node$/mu) // uid 1000 in the node image, the Deployment's runAsUser
    expect(podSpecOf(find(base, "Deployment", "chatify-chat-api")).securityContext?.runAsUser).toBe(1000)
    expect(text).toMatch(/^STOPSIGNAL SIGTERM$/mu)
    expect(text).toMatch(/^CMD \["node", "dist\/main\.js"\]$/mu) // exec form: node receives SIGTERM itself
    expect(text).toContain("--frozen-lockfile")
    expect(text).toContain("deploy --prod")
  })

  it("the Flink job image is the analytics jar on the Flink image the cluster runs", () => {
    const [name, tag] = libValue("FLINK_JOBS_IMAGE").split(":")
    const pom = readFileSync(join(ROOT, "packages/analytics/pom.xml"), "utf8")
    expect(name).toBe("chatify/flink-jobs")
    expect(tag).toBe(/<artifactId>chatify-flink-jobs<\/artifactId>\s*<version>([^<]+)<\/version>/u.exec(pom)?.[1])
    const text = dockerfile(libValue("FLINK_JOBS_DOCKERFILE"))
    const flinkImage = fromLines(text).at(-1)!
    expect(flinkImage).toMatch(/^flink:2\.2\.\d+-java17$/u)
    for (const name of ["chatify-flink-jobmanager", "chatify-flink-taskmanager"]) {
      expect(podSpecOf(find(base, "Deployment", name)).containers.map((container) => container.image)).toEqual([
        flinkImage
      ])
    }
    const jar = `/opt/flink/usrlib/${/<finalName>([^<]+)<\/finalName>/u.exec(pom)?.[1] ?? "?"}.jar`
    expect(text).toContain(jar)
    const submit = containerNamed(find(base, "Job", "chatify-flink-job-submitter"), "flink-submit").args!.join(" ")
    expect(submit).toContain(jar)
    const mainClass = /-c (com\.chatify\.[\w.]+)/u.exec(submit)?.[1] ?? "?"
    const javaSources = join(ROOT, "packages/analytics/src/main/java")
    const mainSource = readFileSync(join(javaSources, `${mainClass.replaceAll(".", "/")}.java`), "utf8")
    // the cluster's Flink is the one the job is compiled against
    expect(flinkImage).toBe(`flink:${/<flink\.version>([^<]+)<\/flink\.version>/u.exec(pom)?.[1] ?? "?"}-java17`)
    // every job argument the submitter passes is one the job reads (JobSettings.Key)
    const jobArguments = [
      ...readFileSync(join(javaSources, "com/chatify/flink/JobSettings.java"), "utf8").matchAll(
        /^\s+[A-Z_]+\(\s*"([a-z-]+)",/gmu
      )
    ].map((match) => match[1]!)
    expect(jobArguments.length).toBeGreaterThan(5)
    const passed = [...flagsOf(submit.slice(submit.indexOf(jar))).keys()]
    expect(passed.length).toBeGreaterThan(0)
    expect(passed.filter((flag) => !jobArguments.includes(flag))).toEqual([])
    // "already runs" looks for the name the job executes under
    const submitterEnv = plainEnv(containerNamed(find(base, "Job", "chatify-flink-job-submitter"), "flink-submit"))
    expect(mainSource).toContain(`env.execute("${submitterEnv.get("JOB_NAME") ?? "?"}")`)
  })

  it("scripts/up.sh builds both images from their Dockerfiles and applies the kind overlay", () => {
    const upScript = readFileSync(join(ROOT, "scripts/up.sh"), "utf8")
    expect(upScript).toContain(`docker build -f "$CHAT_API_DOCKERFILE" -t "$CHAT_API_IMAGE"`)
    expect(upScript).toContain(`docker build -f "$FLINK_JOBS_DOCKERFILE" -t "$FLINK_JOBS_IMAGE"`)
    expect(upScript).toContain(`kind load docker-image --name "$KIND_CLUSTER" "$CHAT_API_IMAGE" "$FLINK_JOBS_IMAGE"`)
    expect(upScript).toContain("kubectl kustomize deploy/overlays/kind")
  })

  it("the kind cluster maps a host port to every NodePort of the kind overlay, and only to those", () => {
    const cluster = parseAllDocuments(readFileSync(join(ROOT, "deploy/kind/kind-cluster.yaml"), "utf8"))[0]!.toJS() as {
      readonly nodes: ReadonlyArray<{ readonly extraPortMappings?: ReadonlyArray<{ readonly containerPort: number }> }>
    }
    const mapped = cluster.nodes.flatMap((node) => node.extraPortMappings ?? []).map((mapping) => mapping.containerPort)
    const nodePorts = rendered.get("deploy/overlays/kind")!.manifests.flatMap((manifest) =>
      (manifest.spec?.ports ?? []).flatMap((port) => port.nodePort === undefined ? [] : [port.nodePort])
    )
    expect(mapped.sort()).toEqual(nodePorts.sort())
    // the original's AKHQ (3080) and Flink UI (3081) ports sit below the default NodePort range
    const range = /service-node-port-range: "(\d+)-(\d+)"/u.exec(
      readFileSync(join(ROOT, "deploy/kind/kind-cluster.yaml"), "utf8")
    )
    for (const port of nodePorts) {
      expect(port).toBeGreaterThanOrEqual(Number(range?.[1]))
      expect(port).toBeLessThanOrEqual(Number(range?.[2]))
    }
    expect(mapped).toEqual(expect.arrayContaining([30080, 30020, 30561, 3080, 3081]))
  })

  it("the kind cluster maps the original design's host ports", () => {
    const cluster = parseAllDocuments(readFileSync(join(ROOT, "deploy/kind/kind-cluster.yaml"), "utf8"))[0]!.toJS() as {
      readonly nodes: ReadonlyArray<
        { readonly extraPortMappings?: ReadonlyArray<{ readonly containerPort: number; readonly hostPort: number }> }
      >
    }
    const hostPortOf = new Map(
      cluster.nodes.flatMap((node) => node.extraPortMappings ?? []).map((mapping) => [
        mapping.containerPort,
        mapping.hostPort
      ])
    )
    // API, Elasticsearch, Kibana, AKHQ, Flink UI
    const original = [[30080, 8080], [30020, 9200], [30561, 5601], [3080, 8081], [3081, 8082]] as const
    for (const [nodePort, hostPort] of original) expect(hostPortOf.get(nodePort), String(nodePort)).toBe(hostPort)
  })

  it("the kind cluster runs the Kubernetes minor version the manifests are validated against", () => {
    const cluster = parseAllDocuments(readFileSync(join(ROOT, "deploy/kind/kind-cluster.yaml"), "utf8"))[0]!.toJS() as {
      readonly nodes: ReadonlyArray<{ readonly image?: string }>
    }
    const minor = KUBERNETES_VERSION.split(".").slice(0, 2).join(".")
    expect(cluster.nodes.length).toBeGreaterThan(0)
    for (const node of cluster.nodes) {
      expect(node.image).toMatch(
        new RegExp(`^kindest/node:v${minor.replace(".", "\\.")}\\.\\d+(@sha256:[0-9a-f]{64})?$`, "u")
      )
    }
  })

  it("the kind overlay: volumes on kind's storage class, Chatify's images only from what kind loaded", () => {
    const kind = rendered.get("deploy/overlays/kind")!.manifests
    for (const statefulSet of kind.filter((manifest) => manifest.kind === "StatefulSet")) {
      for (const claim of statefulSet.spec?.volumeClaimTemplates ?? []) {
        expect(claim.spec.storageClassName, statefulSet.metadata.name).toBe("standard")
      }
    }
    const ours = kind.filter(isWorkload).flatMap((workload) =>
      podSpecOf(workload).containers.filter((container) => container.image.startsWith("chatify/"))
    )
    expect(ours.length).toBe(2)
    for (const container of ours) {
      expect(container.imagePullPolicy, container.image).toBe("Never")
    }
  })

  it("the production overlay: more replicas, bigger resources, volumes on a storage class, no NodePort", () => {
    const production = rendered.get("deploy/overlays/production")!.manifests
    expect(production.filter((manifest) => manifest.spec?.type === "NodePort").map((m) => m.metadata.name)).toEqual([])
    for (const name of ["chatify-kafka", "chatify-scylla"]) {
      expect(find(production, "StatefulSet", name).spec?.replicas, name).toBeGreaterThanOrEqual(3)
    }
    expect(find(production, "Deployment", "chatify-chat-api").spec?.replicas).toBeGreaterThanOrEqual(3)
    const total = (manifests: ReadonlyArray<Manifest>) =>
      manifests.filter(isWorkload).reduce((sum, workload) => sum + (workload.spec?.replicas ?? 1), 0)
    expect(total(production)).toBeGreaterThan(total(base))
    for (
      const [kind, name, container] of [["Deployment", "chatify-chat-api", "chatify-chat-api"], [
        "StatefulSet",
        "chatify-scylla",
        "scylla"
      ], ["StatefulSet", "chatify-kafka", "kafka"]] as const
    ) {
      const before = containerNamed(find(base, kind, name), container).resources
      const after = containerNamed(find(production, kind, name), container).resources
      for (const resource of ["cpu", "memory"]) {
        expect(quantity(after?.requests?.[resource] ?? "0"), `${name} ${resource}`).toBeGreaterThan(
          quantity(before?.requests?.[resource] ?? "0")
        )
      }
    }
    for (const statefulSet of production.filter((manifest) => manifest.kind === "StatefulSet")) {
      for (const claim of statefulSet.spec?.volumeClaimTemplates ?? []) {
        expect(claim.spec.storageClassName, statefulSet.metadata.name).toMatch(/^[a-z0-9][a-z0-9.-]*$/u)
      }
    }
  })

  it(".dockerignore keeps host build output out of the images, and every source they build from in", async () => {
    const patterns = readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n").map((line) => line.trim())
      .filter((line) => line.length > 0 && !line.startsWith("#"))
    expect(patterns.some((pattern) => pattern.startsWith("!")), "no re-inclusions: the matcher below ignores them")
      .toBe(false)
    const excluded = (path: string) => patterns.some((pattern) => dockerignoreExcludes(pattern, path))
    for (const path of ["node_modules", "packages/server/node_modules/effect", "packages/server/dist/main.js"]) {
      expect(excluded(path), path).toBe(true)
    }
    // what the Dockerfiles copy from the context, and every tracked file of the workspace's packages
    const copied = [libValue("CHAT_API_DOCKERFILE"), libValue("FLINK_JOBS_DOCKERFILE")].flatMap((file) =>
      [...dockerfile(file).matchAll(/^COPY\s+(?!--from)(?:--\S+\s+)*(.+)\s+\S+$/gmu)].flatMap((match) =>
        match[1]!.split(/\s+/u).filter((source) => source !== ".")
      )
    )
    expect(copied).toEqual(expect.arrayContaining(["pnpm-lock.yaml", "patches", "packages/analytics/pom.xml"]))
    const tracked = await run("git", ["ls-files", "--", "packages", "package.json", "tsconfig*.json", ".npmrc"])
    expect(tracked.code).toBe(0)
    const sources = [...copied, ...tracked.output.split("\n").filter((line) => line.length > 0)]
    expect(sources.length).toBeGreaterThan(100)
    expect(sources.filter(excluded)).toEqual([])
  })
})

describe("deploy/: scripts", () => {
  it("shellcheck passes on the deploy scripts", async () => {
    const checked = await run("bash", ["scripts/shellcheck.sh", ...SCRIPTS, "deploy/lib.sh", "deploy/tools.sh"])
    expect(checked.output).toContain("clean")
    expect(checked.code).toBe(0)
  }, 120_000)

  it("without kind, kubectl or docker each script stops at once, names what to install and calls nothing", async () => {
    const bin = mkdtempSync(join(tmpdir(), "chatify-path-"))
    try {
      const bash = (await run("bash", ["-c", "command -v bash"])).output.trim()
      for (const tool of ["bash", "dirname"]) {
        symlinkSync((await run("bash", ["-c", `command -v ${tool}`])).output.trim(), join(bin, tool))
      }
      const empty = { PATH: bin, HOME: bin }
      const needs: Record<string, ReadonlyArray<string>> = {
        "scripts/up.sh": ["kind", "kubectl", "docker"],
        "scripts/down.sh": ["kind", "docker"],
        "scripts/status.sh": ["kubectl"],
        "scripts/logs-chatify.sh": ["kubectl"],
        "scripts/port-forward.sh": ["kubectl"]
      }
      for (const [script, tools] of Object.entries(needs)) {
        const result = await run(bash, [script], empty)
        expect(result.code, script).toBe(1)
        expect(result.output, script).toContain(`missing: ${tools.join(" ")} (nothing was changed)`)
        for (const tool of tools) {
          expect(result.output, script).toMatch(new RegExp(`^\\[chatify\\]   ${tool}: \\S`, "mu"))
        }
      }

      // kubectl and docker present, kind missing: up.sh calls neither before stopping
      const calls = join(bin, "calls.log")
      for (const tool of ["kubectl", "docker"]) {
        writeFileSync(join(bin, tool), `#!${bash}\necho "${tool} $*" >> "${calls}"\n`, { mode: 0o755 })
      }
      const withoutKind = await run(bash, ["scripts/up.sh"], empty)
      expect(withoutKind.code).toBe(1)
      expect(withoutKind.output).toContain("missing: kind (nothing was changed)")
      expect(() => readFileSync(calls, "utf8")).toThrow() // never written: no call was made
    } finally {
      rmSync(bin, { recursive: true, force: true })
    }
  })
})

/**
 * Runs a deploy script against fake kind, kubectl and docker that record every call (one line
 * each) and answer as a reachable cluster would. `kubectl kustomize` renders with the real
 * kustomize. FAKE_CLUSTERS: what `kind get clusters` prints; FAKE_CONTEXTS: what `kubectl config
 * get-contexts -o name` prints; FAKE_DOCKER_INFO: the exit code of `docker info`.
 */
const runWithFakeTools = async (
  script: string,
  args: ReadonlyArray<string>,
  fake: { readonly clusters?: string; readonly contexts?: string; readonly dockerInfo?: number } = {}
): Promise<Run & { readonly calls: Array<string> }> => {
  const bin = mkdtempSync(join(tmpdir(), "chatify-fake-"))
  try {
    const bash = (await run("bash", ["-c", "command -v bash"])).output.trim()
    const calls = join(bin, "calls.log")
    const record = `printf '%s\\n' "$(basename "$0") $*" >> "$FAKE_CALLS"`
    const fakes: Record<string, string> = {
      kind: `${record}\n[ "$1 $2" != "get clusters" ] || printf '%s' "$FAKE_CLUSTERS"\n`,
      docker: `${record}\n[ "$1" != info ] || exit "$FAKE_DOCKER_INFO"\n`,
      kubectl: `${record}
case " $* " in
  *" kustomize "*) exec "$FAKE_KUSTOMIZE" build "\${@: -1}" ;;
  *" config get-contexts "*) printf '%s' "$FAKE_CONTEXTS" ;;
  *" get secret "*) exit 1 ;;
  *" get deployments,statefulsets "*) echo deployment.apps/fake ;;
  *" get jobs "*) echo job.batch/fake ;;
esac
`
    }
    for (const [tool, body] of Object.entries(fakes)) {
      writeFileSync(join(bin, tool), `#!${bash}\n${body}`, { mode: 0o755 })
    }
    const { CHATIFY_KIND_CLUSTER: _cluster, CHATIFY_KUBE_CONTEXT: _context, ...inherited } = process.env
    const result = await run(bash, [script, ...args], {
      ...inherited,
      PATH: `${bin}:${process.env["PATH"] ?? ""}`,
      FAKE_CALLS: calls,
      FAKE_KUSTOMIZE: tools.kustomize,
      FAKE_CLUSTERS: fake.clusters ?? "",
      FAKE_CONTEXTS: fake.contexts ?? "kind-chatify\n",
      FAKE_DOCKER_INFO: String(fake.dockerInfo ?? 0)
    })
    let recorded = ""
    try {
      recorded = readFileSync(calls, "utf8")
    } catch {
      // no call was made
    }
    return { ...result, calls: recorded.split("\n").filter((line) => line.length > 0) }
  } finally {
    rmSync(bin, { recursive: true, force: true })
  }
}

describe("deploy/: scripts against fake kind, kubectl and docker", () => {
  const kind = rendered.get("deploy/overlays/kind")!.manifests
  const production = rendered.get("deploy/overlays/production")!.manifests
  const kubectlCalls = (calls: ReadonlyArray<string>) => calls.filter((call) => call.startsWith("kubectl "))

  it("up.sh builds and loads both images, then applies every object of the kind overlay, in dependency order", async () => {
    const up = await runWithFakeTools("scripts/up.sh", [])
    expect(up.code, up.output).toBe(0)
    const { calls } = up
    const at = (call: string) => {
      const index = calls.indexOf(call)
      expect(index, call).toBeGreaterThanOrEqual(0)
      return index
    }
    expect(calls[0]).toBe("docker info")
    const create = at("kind create cluster --name chatify --config deploy/kind/kind-cluster.yaml --wait 180s")
    const chatApiBuild = at(`docker build -f ${libValue("CHAT_API_DOCKERFILE")} -t ${libValue("CHAT_API_IMAGE")} .`)
    const flinkBuild = at(`docker build -f ${libValue("FLINK_JOBS_DOCKERFILE")} -t ${libValue("FLINK_JOBS_IMAGE")} .`)
    const load = at(
      `kind load docker-image --name chatify ${libValue("CHAT_API_IMAGE")} ${libValue("FLINK_JOBS_IMAGE")}`
    )
    const applies = calls.flatMap((call, index) => call.includes(" apply ") ? [index] : [])
    expect(create).toBeLessThan(chatApiBuild)
    expect(Math.max(chatApiBuild, flinkBuild)).toBeLessThan(load)
    expect(load).toBeLessThan(applies[0]!)
    // never the current context: every call to the cluster names kind-chatify
    for (const call of kubectlCalls(calls).filter((call) => !call.startsWith("kubectl kustomize "))) {
      expect(call).toContain("--context kind-chatify")
    }
    expect(calls[applies[0]!]).toMatch(/ apply -f deploy\/k8s\/00-namespace\.yaml$/u)
    const secret = calls.findIndex((call) => call.includes(" create secret generic chatify-chat-api-secrets "))
    expect(secret).toBeGreaterThan(applies[0]!)

    // the component steps, in order, each waited for before the next is applied
    const steps = applies.slice(1).map((index) => {
      const component = / apply -f \S+ -l app\.kubernetes\.io\/component=(\S+)$/u.exec(calls[index]!)?.[1]
      expect(component, calls[index]).toBeDefined()
      return { index, component: component! }
    })
    steps.forEach(({ component, index }, step) => {
      const next = steps[step + 1]?.index ?? calls.length
      const between = calls.slice(index + 1, next)
      expect(between.some((call) => call.includes(" rollout status ")), component).toBe(true)
      expect(
        between.some((call) =>
          call.includes(` wait --for=condition=complete job -l app.kubernetes.io/component=${component} `)
        ),
        component
      ).toBe(true)
    })
    const order = steps.map((step) => step.component)
    expect(secret).toBeLessThan(steps[order.indexOf("api")]!.index)
    for (const dependency of ["message-broker", "cache", "database"]) {
      expect(order.indexOf(dependency), dependency).toBeLessThan(order.indexOf("api"))
    }
    // and nothing of the overlay is left out: every object but the namespace is in one step
    const missed = kind.filter((manifest) =>
      manifest.kind !== "Namespace" && !order.includes(manifest.metadata.labels?.["app.kubernetes.io/component"] ?? "")
    )
    expect(missed.map((manifest) => `${manifest.kind}/${manifest.metadata.name}`)).toEqual([])
    const namespace = parseManifests(readFileSync(join(ROOT, "deploy/k8s/00-namespace.yaml"), "utf8"), "namespace")
    expect(namespace).toEqual(kind.filter((manifest) => manifest.kind === "Namespace"))
  })

  it("up.sh and down.sh stop before changing anything when Docker's daemon does not answer", async () => {
    for (const script of ["scripts/up.sh", "scripts/down.sh"]) {
      const stopped = await runWithFakeTools(script, [], { dockerInfo: 1, clusters: "chatify\n" })
      expect(stopped.code, script).toBe(1)
      expect(stopped.output, script).toContain("daemon does not answer")
      expect(stopped.calls, script).toEqual(["docker info"])
    }
  })

  it("down.sh deletes the chatify cluster when it exists, and only then", async () => {
    const deleted = await runWithFakeTools("scripts/down.sh", [], { clusters: "other\nchatify\n" })
    expect(deleted.code, deleted.output).toBe(0)
    expect(deleted.calls.filter((call) => call.startsWith("kind delete"))).toEqual([
      "kind delete cluster --name chatify"
    ])
    const absent = await runWithFakeTools("scripts/down.sh", [], { clusters: "other\n" })
    expect(absent.code).toBe(0)
    expect(absent.output).toContain("nothing to delete")
    expect(absent.calls.filter((call) => call.startsWith("kind delete"))).toEqual([])
  })

  it("status.sh, logs-chatify.sh and port-forward.sh refuse a missing context and call nothing else", async () => {
    for (const script of ["scripts/status.sh", "scripts/logs-chatify.sh", "scripts/port-forward.sh"]) {
      const refused = await runWithFakeTools(script, [], { contexts: "kind-other\n" })
      expect(refused.code, script).toBe(1)
      expect(refused.output, script).toContain("no kubectl context kind-chatify")
      expect(refused.calls, script).toEqual(["kubectl config get-contexts -o name"])
    }
  })

  it("logs-chatify.sh follows the chat API's pods; port-forward.sh forwards Services and ports that exist", async () => {
    const logs = await runWithFakeTools("scripts/logs-chatify.sh", ["--since=10m"])
    expect(logs.code, logs.output).toBe(0)
    const follow = kubectlCalls(logs.calls).find((call) => call.includes(" logs "))!
    expect(follow).toContain("--context kind-chatify --namespace chatify")
    expect(follow).toMatch(/ --since=10m$/u)
    const chatApi = find(kind, "Deployment", "chatify-chat-api")
    const [key = "", value = ""] = (/--selector (\S+)/u.exec(follow)?.[1] ?? "").split("=")
    expect(matches({ [key]: value }, podLabelsOf(chatApi))).toBe(true)
    expect(() => containerNamed(chatApi, /--container (\S+)/u.exec(follow)?.[1] ?? "")).not.toThrow()

    const forward = await runWithFakeTools("scripts/port-forward.sh", [])
    expect(forward.code, forward.output).toBe(0)
    const forwards = kubectlCalls(forward.calls).flatMap((call) => {
      const match = /--context kind-chatify --namespace chatify port-forward service\/(\S+) (\d+):(\d+)$/u.exec(call)
      return match === null ? [] : [{ service: match[1]!, local: Number(match[2]), remote: Number(match[3]) }]
    })
    expect(forwards.map((entry) => entry.service)).toEqual(
      expect.arrayContaining(["chatify-chat-api", "chatify-akhq", "chatify-flink-jobmanager", "chatify-kibana"])
    )
    expect(new Set(forwards.map((entry) => entry.local)).size).toBe(forwards.length)
    for (const { remote, service } of forwards) expectServiceFor(production, service, remote)
  })
})

describe("deploy/: probes against the server", () => {
  it.scopedLive("the chat API's probe paths are routes the server serves", () =>
    Effect.gen(function*() {
      const server = yield* startTestServer()
      const status = (path: string) =>
        Effect.promise(() => fetch(`${server.httpUrl}${path}`).then((response) => response.status))
      const apiContainer = containerNamed(
        find(rendered.get("deploy/k8s")!.manifests, "Deployment", "chatify-chat-api"),
        "chatify-chat-api"
      )
      const paths = [apiContainer.startupProbe, apiContainer.readinessProbe, apiContainer.livenessProbe].map((probe) =>
        probe?.httpGet?.path ?? ""
      )
      for (const path of paths) expect(yield* status(path), path).toBe(200)
      // and the check can fail: a path the server does not serve
      expect(yield* status("/health/nonexistent")).toBe(404)
    }))
})

describe("deploy/: this file's parsers", () => {
  const segment = fc.stringMatching(/^[a-z][a-z0-9_-]{0,7}$/u)
  const units = { "": 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 } as const

  it.prop("quantity reads a count in its unit", {
    count: fc.integer({ min: 0, max: 100_000 }),
    unit: fc.constantFrom(...Object.keys(units))
  }, ({ count, unit }) => {
    expect(quantity(`${count}${unit}`)).toBeCloseTo(count * units[unit as keyof typeof units], 6)
    expect(quantity(`${count}Gi`)).toBe(quantity(`${count * 1024}Mi`))
    expect(quantity(`${count}`)).toBeCloseTo(quantity(`${count * 1000}m`), 9)
  })

  // paths that hold the name (or start with the pattern) half of the time, at any depth
  const segments = fc.array(segment, { maxLength: 4 })

  it.prop("a **/name pattern leaves out exactly the paths with a segment of that name", {
    name: segment,
    before: segments,
    after: segments,
    holds: fc.boolean()
  }, ({ after, before, holds, name }) => {
    const path = holds ? [...before, name, ...after] : [...before, ...after]
    fc.pre(path.length > 0)
    expect(dockerignoreExcludes(`**/${name}`, path.join("/"))).toBe(path.includes(name))
  })

  it.prop("a rooted pattern leaves out that path and what is under it, nothing else", {
    pattern: fc.array(segment, { minLength: 1, maxLength: 3 }),
    rest: segments,
    under: fc.boolean()
  }, ({ pattern, rest, under }) => {
    const path = under ? [...pattern, ...rest] : rest
    fc.pre(path.length > 0)
    const expected = pattern.every((part, index) => path[index] === part)
    expect(dockerignoreExcludes(pattern.join("/"), path.join("/"))).toBe(expected)
    // a sibling whose name only starts like the pattern's last segment stays in
    expect(dockerignoreExcludes(pattern.join("/"), `${pattern.join("/")}x`)).toBe(false)
    expect(dockerignoreExcludes(`${pattern.join("/")}*`, `${pattern.join("/")}x`)).toBe(true)
  })
})

it("deploy/k8s has the original design's layout", () => {
  const layout = ["00-namespace.yaml", "chat-api", "kafka", "redis", "scylla", "elastic", "flink", "akhq"]
  expect(layout.filter((entry) => !readdirSync(join(ROOT, "deploy/k8s")).includes(entry))).toEqual([])
})
