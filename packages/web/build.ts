/**
 * Bundles the chat page into packages/web/dist, which the server serves at `/`:
 *   pnpm --filter @chatify/web build      (the root `pnpm run build` runs it too)
 * index.html names its script and style by content hash (`/assets/main-3KQ2J7XA.js`), so the
 * server can let browsers cache them for good and only index.html is asked for again.
 */
import * as esbuild from "esbuild"
import { mkdir, readFile, rm, writeFile } from "node:fs/promises"
import { basename, dirname, join, relative } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { gzipSync } from "node:zlib"

const root = dirname(fileURLToPath(import.meta.url))
export const webDistDirectory = join(root, "dist")

/** The page's budget: everything a first visit downloads, gzipped. */
export const PAGE_BUDGET_BYTES = 150 * 1024

/** What `effect`'s index exports besides its modules (`export * as Effect from "./Effect.js"`, …). */
const EFFECT_FUNCTION_EXPORTS = new Set(["absurd", "flow", "hole", "identity", "pipe", "unsafeCoerce"])

/**
 * `import { Effect, Schema } from "effect"` as `import * as Effect from "effect/Effect"`, … in the
 * workspace's sources. esbuild keeps every export of a module re-exported as a namespace
 * (`export * as Effect`) by the index, so the barrel import costs the page ~90 KB gzipped more (199
 * KB instead of 107 KB, measured); a deep import lets it keep only what is used. Type-only imports go.
 */
export const deepEffectImports = (source: string): string =>
  source.replace(
    /import\s+(type\s+)?\{([^}]*)\}\s*from\s*"effect"/gu,
    (_import, typeOnly: string | undefined, names: string) =>
      typeOnly !== undefined ? "" : names
        .split(",")
        .map((name) => name.trim())
        .filter((name) => name.length > 0 && !name.startsWith("type "))
        .map((name) => {
          const [imported = name, local = imported] = name.split(/\s+as\s+/u)
          return EFFECT_FUNCTION_EXPORTS.has(imported)
            ? `import { ${imported} as ${local} } from "effect/Function"`
            : `import * as ${local} from "effect/${imported}"`
        })
        .join("\n")
  )

const deepEffectImportsPlugin: esbuild.Plugin = {
  name: "deep-effect-imports",
  setup: (build) => {
    // esbuild runs the filter as a Go regular expression: no `u` flag
    build.onLoad({ filter: /\/packages\/[^/]+\/src\/.*\.ts$/ }, async ({ path }) => ({
      contents: deepEffectImports(await readFile(path, "utf8")),
      loader: "ts"
    }))
  }
}

export interface WebBuild {
  /** Each file of the page (path under dist/) with its size and gzipped size in bytes. */
  readonly files: ReadonlyArray<{ readonly path: string; readonly bytes: number; readonly gzipBytes: number }>
  readonly gzipBytes: number
}

export const buildWeb = async (): Promise<WebBuild> => {
  await rm(webDistDirectory, { recursive: true, force: true })
  const assets = join(webDistDirectory, "assets")
  const result = await esbuild.build({
    entryPoints: [join(root, "src/main.ts"), join(root, "src/style.css")],
    outdir: assets,
    entryNames: "[name]-[hash]",
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    // the workspace packages' TypeScript sources: no need to build them first
    conditions: ["@chatify/source"],
    legalComments: "none",
    metafile: true,
    plugins: [deepEffectImportsPlugin],
    logLevel: "warning"
  })
  const outputs = Object.keys(result.metafile.outputs)
  const nameOf = (extension: string): string => {
    const found = outputs.find((path) => path.endsWith(extension))
    if (found === undefined) throw new Error(`esbuild wrote no ${extension} file`)
    return `/assets/${basename(found)}`
  }
  const template = await readFile(join(root, "src/index.html"), "utf8")
  const html = template.replace("{{script}}", nameOf(".js")).replace("{{style}}", nameOf(".css"))
  await mkdir(webDistDirectory, { recursive: true })
  await writeFile(join(webDistDirectory, "index.html"), html)
  const paths = [join(webDistDirectory, "index.html"), ...outputs.map((path) => join(process.cwd(), path))]
  const files = await Promise.all(paths.map(async (path) => {
    const content = await readFile(path)
    return {
      path: relative(webDistDirectory, path),
      bytes: content.length,
      gzipBytes: gzipSync(content, { level: 9 }).length
    }
  }))
  return { files, gzipBytes: files.reduce((sum, file) => sum + file.gzipBytes, 0) }
}

const kilobytes = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KB`

/** One line per file and the total against the budget, as the build log shows them. */
export const describeBuild = (build: WebBuild): string =>
  [
    ...build.files.map((file) => `[web] ${file.path}: ${kilobytes(file.bytes)} (${kilobytes(file.gzipBytes)} gzipped)`),
    `[web] page: ${kilobytes(build.gzipBytes)} gzipped (budget ${kilobytes(PAGE_BUDGET_BYTES)})`
  ].join("\n")

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const build = await buildWeb()
  console.error(describeBuild(build))
  if (build.gzipBytes > PAGE_BUDGET_BYTES) {
    console.error("[web] the page is over its budget")
    process.exitCode = 1
  }
}
