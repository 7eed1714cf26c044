/**
 * The SDK as a service outside this workspace gets it: both packages packed with `pnpm pack`,
 * installed with npm into a fresh project in a temp directory, a consumer (examples/sdk.ts, as the
 * READMEs show it) typechecked against the published declarations, built, and run against a real
 * server; and the published `@chatify/sdk/browser` bundled for browsers without a Node module.
 */
import * as Command from "@effect/platform/Command"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type { PlatformError } from "@effect/platform/Error"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { describe, expect, it } from "@effect/vitest"
import { build } from "esbuild"
import { Effect, Logger, LogLevel, Stream } from "effect"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { makeTempDirectory, startTestServer } from "@chatify/server/testing"
import { nodeModulesIn } from "./support/bundle.js"

const ROOT = fileURLToPath(new URL("../../../", import.meta.url))
const TSC = join(ROOT, "node_modules/typescript/bin/tsc")
const CACHE = join(homedir(), ".cache/chatify")
/** npm's cache outside the repository: later runs install without the network. */
const NPM_CACHE = join(CACHE, "npm")

/** The pnpm scripts/lib/setup.sh installed: on the PATH, or under the cache directory without the rights for that. */
const PNPM = existsSync(join(CACHE, "pnpm/bin/pnpm")) ? join(CACHE, "pnpm/bin/pnpm") : "pnpm"

const NPM_FLAGS = ["--prefer-offline", "--no-audit", "--no-fund", "--cache", NPM_CACHE]

const readJson = (path: string) => JSON.parse(readFileSync(join(ROOT, path), "utf8")) as Record<string, unknown>
const devDependencies = readJson("packages/sdk/package.json")["devDependencies"] as Record<string, string>
const rootDevDependencies = readJson("package.json")["devDependencies"] as Record<string, string>

/** What the consumer installs from the registry, at the workspace's exact versions. */
const REGISTRY_PACKAGES = [
  "effect",
  "@effect/platform",
  "@effect/rpc",
  // examples/sdk.ts runs on NodeRuntime; its required peers are listed so npm picks our versions
  "@effect/platform-node",
  "@effect/platform-node-shared",
  "@effect/cluster",
  "@effect/sql",
  "@effect/workflow",
  "@effect/experimental",
  // what a browser consumer adds for @chatify/sdk/browser (an optional peer)
  "@effect/platform-browser"
]

/** `[name, version]` as the workspace pins it. */
const pinned = (versions: Record<string, string>, name: string): readonly [string, string] => {
  const version = versions[name]
  if (version === undefined) throw new Error(`the workspace pins no version of ${name}`)
  return [name, version]
}

/** The consumer's registry dependencies, at the workspace's versions. */
const registryDependencies: Record<string, string> = Object.fromEntries([
  ...REGISTRY_PACKAGES.map((name) => pinned(devDependencies, name)),
  pinned(rootDevDependencies, "@types/node"),
  // @effect/platform-node's own declarations import `ws` (ours do not): any strict consumer of it needs these
  pinned(rootDevDependencies, "@types/ws")
])

interface Run {
  readonly exitCode: number
  readonly output: string
}

/** Runs a command to its end, with stdout and stderr together; a failing exit code is returned, not raised. */
const run = (
  directory: string,
  command: string,
  args: ReadonlyArray<string>,
  env: Record<string, string> = {}
): Effect.Effect<Run, PlatformError, CommandExecutor.CommandExecutor> =>
  Effect.scoped(Effect.gen(function*() {
    const process = yield* Command.start(
      Command.make(command, ...args).pipe(Command.workingDirectory(directory), Command.env(env))
    )
    const [output, exitCode] = yield* Effect.all([
      Stream.merge(process.stdout, process.stderr).pipe(Stream.decodeText(), Stream.mkString),
      process.exitCode
    ], { concurrency: "unbounded" })
    return { exitCode, output }
  }))

const expectSuccess = (what: string) => (result: Run) =>
  Effect.sync(() => expect(result.exitCode, `${what}:\n${result.output}`).toBe(0))

/**
 * A project with only the registry dependencies, installed once per set of versions under the
 * cache directory; each run's fresh consumer starts from a copy of its node_modules.
 */
const installedRegistryPackages = Effect.gen(function*() {
  const key = createHash("sha256").update(JSON.stringify(registryDependencies)).digest("hex").slice(0, 16)
  const directory = join(CACHE, "sdk-consumer", key)
  if (existsSync(join(directory, "node_modules"))) return directory
  const staging = `${directory}.staging-${process.pid}`
  rmSync(staging, { recursive: true, force: true })
  mkdirSync(staging, { recursive: true })
  writeFileSync(
    join(staging, "package.json"),
    JSON.stringify({ name: "sdk-consumer-registry", private: true, dependencies: registryDependencies })
  )
  yield* run(staging, "npm", ["install", ...NPM_FLAGS]).pipe(Effect.flatMap(expectSuccess("npm install (registry)")))
  renameSync(staging, directory) // whole or not at all: a broken install is never taken for a cached one
  return directory
})

/**
 * A consumer of every entry point: it only has to typecheck against the published declarations.
 * `NotAny` makes a type that an unresolved import in a declaration file turned into `any` an error,
 * which `skipLibCheck` (the usual setting, and seconds faster) would not report.
 */
const ENTRY_POINTS_CONSUMER = `import { WebSocketConnector } from "@chatify/sdk"
import { BrowserWebSocketConnector, ChatClient, makeChatClient } from "@chatify/sdk/browser"
import { ChatClient as NodeChatClient, NodeWebSocketConnector } from "@chatify/sdk/node"
import { ChatRpcs } from "@chatify/domain"
import { Effect, Layer } from "effect"

type NotAny<T> = 0 extends 1 & T ? never : T

export const layer: NotAny<Layer.Layer<ChatClient>> = ChatClient.layer({ url: "wss://chat.example/rpc", accessToken: "t" })
export const nodeLayer: NotAny<typeof NodeChatClient.layer> = NodeChatClient.layer
export const connectors: NotAny<Array<Layer.Layer<WebSocketConnector>>> = [BrowserWebSocketConnector, NodeWebSocketConnector]
export const contract: NotAny<typeof ChatRpcs> = ChatRpcs
export const sent = Effect.scoped(Effect.flatMap(
  makeChatClient({ url: "wss://chat.example/rpc" }),
  (chat) => chat.send({ scopeType: 0, scopeId: "general", text: "hi" })
))
export const sentType: NotAny<typeof sent> = sent
`

describe("the published packages", () => {
  it.scopedLive(
    "install with npm outside the workspace, typecheck and run a consumer, and bundle for browsers",
    () =>
      Effect.gen(function*() {
        const work = yield* makeTempDirectory()
        const tarballs = join(work, "tarballs")
        const consumer = join(work, "consumer")
        mkdirSync(tarballs)
        mkdirSync(join(consumer, "src"), { recursive: true })

        // 1. Build dist (declarations included) and pack both, as `pnpm publish` would.
        yield* run(ROOT, process.execPath, [TSC, "-b", "packages/sdk/tsconfig.json"]).pipe(
          Effect.flatMap(expectSuccess("tsc -b"))
        )
        for (const name of ["domain", "sdk"]) {
          yield* run(join(ROOT, "packages", name), PNPM, ["pack", "--pack-destination", tarballs]).pipe(
            Effect.flatMap(expectSuccess(`pnpm pack ${name}`))
          )
        }
        const tarball = (name: string) => {
          const file = readdirSync(tarballs).find((entry) => entry.startsWith(`chatify-${name}-`))
          if (file === undefined) throw new Error(`no tarball for ${name} in ${tarballs}`)
          return join(tarballs, file)
        }
        const packed = yield* run(work, "tar", ["-tzf", tarball("sdk")])
        expect(packed.output).toContain("package/dist/browser.d.ts")
        expect(packed.output).toContain("package/dist/node.js")
        expect(packed.output).not.toContain("package/test/")
        const manifest = yield* run(work, "tar", ["-xzOf", tarball("sdk"), "package/package.json"])
        const published = JSON.parse(manifest.output) as { dependencies: Record<string, string> }
        expect(published.dependencies["@chatify/domain"]).toBe("^0.1.0") // pnpm rewrote workspace:^

        // 2. A fresh project: the tarballs plus effect and @effect/* from the registry.
        const dependencies = {
          ...registryDependencies,
          "@chatify/domain": `file:${tarball("domain")}`,
          "@chatify/sdk": `file:${tarball("sdk")}`
        }
        writeFileSync(
          join(consumer, "package.json"),
          JSON.stringify({ name: "sdk-consumer", private: true, type: "module", dependencies }, null, 2)
        )
        writeFileSync(
          join(consumer, "tsconfig.json"),
          JSON.stringify({
            compilerOptions: {
              target: "ES2022",
              module: "NodeNext",
              moduleResolution: "NodeNext",
              strict: true,
              skipLibCheck: true,
              types: ["node"],
              rootDir: "src",
              outDir: "dist"
            },
            include: ["src"]
          })
        )
        writeFileSync(join(consumer, "src/sdk.ts"), readFileSync(join(ROOT, "examples/sdk.ts"), "utf8"))
        writeFileSync(join(consumer, "src/entry-points.ts"), ENTRY_POINTS_CONSUMER)
        // the registry packages come pre-installed from the cache (as a warm npm would lay them out)
        const registryModules = yield* installedRegistryPackages
        yield* run(consumer, "cp", ["-a", join(registryModules, "node_modules"), "."]).pipe(
          Effect.flatMap(expectSuccess("copying the installed registry packages"))
        )
        yield* run(consumer, "npm", ["install", ...NPM_FLAGS]).pipe(Effect.flatMap(expectSuccess("npm install")))

        // 3. Typecheck and build it against the published declarations (no workspace paths in sight).
        const typecheck = yield* run(consumer, process.execPath, [TSC, "-p", "tsconfig.json", "--listFiles"])
        yield* expectSuccess("tsc")(typecheck)
        for (const declarations of ["domain/dist/index", "sdk/dist/index", "sdk/dist/node", "sdk/dist/browser"]) {
          expect(typecheck.output).toContain(`/node_modules/@chatify/${declarations}.d.ts`)
        }

        // 4. Run it against a real server: it subscribes, sends, and gets its own message back.
        const server = yield* startTestServer()
        const example = yield* run(consumer, process.execPath, ["dist/sdk.js"], { CHATIFY_URL: server.httpUrl })
        yield* expectSuccess("the consumer")(example)
        const sent = /sent (\S+) \(partition \d+, offset \d+\)/u.exec(example.output)
        expect(sent, example.output).not.toBeNull()
        expect(example.output).toMatch(/received \[general\] anon_\S+: Hello from the SDK!/u)

        // 5. The published browser entry point bundles for browsers with no Node module in it.
        const bundle = yield* Effect.promise(() =>
          build({
            stdin: { contents: `export * from "@chatify/sdk/browser"`, resolveDir: consumer },
            bundle: true,
            platform: "browser",
            format: "esm",
            write: false,
            metafile: true,
            logLevel: "silent"
          })
        )
        expect(nodeModulesIn(bundle)).toEqual([])
      }).pipe(
        Effect.provide(NodeContext.layer),
        Logger.withMinimumLogLevel(LogLevel.Warning)
      ),
    { timeout: 300_000 }
  )
})
