import { describe, expect, it } from "@effect/vitest"
import { Config, ConfigProvider, Duration, Effect, Exit, Option } from "effect"
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

  it("the JWT key comes from the Secret scripts/up.sh creates", () => {
    const secretRef = apiContainer.env?.find((entry) => entry.name === "CHATIFY__AUTH__HS256SECRET")?.valueFrom
      ?.secretKeyRef
    expect(secretRef).toBeDefined()
    const upScript = readFileSync(join(ROOT, "scripts/up.sh"), "utf8")
    expect(upScript).toContain(`create secret generic ${secretRef!.name}`)
    expect(upScript).toContain(`--from-literal=${secretRef!.key}=`)
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
    expect(fromLines(text).at(-1)).toMatch(/^node:20-/u) // the Node line the workspace targets (engines)
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
    expect(statSync(join(ROOT, "packages/analytics/src/main/java", `${mainClass.replaceAll(".", "/")}.java`)).isFile())
      .toBe(true)
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

  it("the production overlay exposes no NodePort", () => {
    const production = rendered.get("deploy/overlays/production")!.manifests
    expect(production.filter((manifest) => manifest.spec?.type === "NodePort").map((m) => m.metadata.name)).toEqual([])
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

it("deploy/k8s has the original design's layout", () => {
  const layout = ["00-namespace.yaml", "chat-api", "kafka", "redis", "scylla", "elastic", "flink", "akhq"]
  expect(layout.filter((entry) => !readdirSync(join(ROOT, "deploy/k8s")).includes(entry))).toEqual([])
})
