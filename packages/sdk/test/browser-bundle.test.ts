/**
 * `@chatify/sdk/browser` bundles for browsers with no Node module in it, so a page can use it;
 * `@chatify/sdk/node` does pull Node in, which shows the check sees what it looks for.
 */
import { describe, expect, it } from "@effect/vitest"
import { build } from "esbuild"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"
import { gzipSync } from "node:zlib"
import { nodeModulesIn } from "./support/bundle.js"

const SDK = fileURLToPath(new URL("../", import.meta.url))

/** The entry point bundled for browsers, from source as the workspace's packages use it. */
const bundleForBrowsers = (entry: string) =>
  Effect.promise(() =>
    build({
      stdin: { contents: `export * from "@chatify/sdk/${entry}"`, resolveDir: SDK },
      conditions: ["@chatify/source"],
      bundle: true,
      minify: true,
      platform: "browser",
      format: "esm",
      write: false,
      metafile: true,
      logLevel: "silent",
      // Node built-ins stay imports here (instead of failing the build), to be named by the check
      external: ["node:*"]
    })
  )

describe("the SDK in a browser bundle", () => {
  it.live("@chatify/sdk/browser holds no Node module, and its size stays where it was", () =>
    Effect.gen(function*() {
      const bundle = yield* bundleForBrowsers("browser")
      expect(nodeModulesIn(bundle)).toEqual([])
      const gzipped = gzipSync(bundle.outputFiles[0]?.contents ?? new Uint8Array()).byteLength
      expect(gzipped).toBeGreaterThan(10_000) // the client really is in it
      // ~198 KB gzipped on 2026-11-30, nearly all of it Effect itself (Schema, Stream, fibers), fast-check
      // (imported by Schema) and msgpackr (by RpcSerialization): a jump means something new came in
      expect(gzipped).toBeLessThan(230_000)
    }), 60_000)

  it.live("@chatify/sdk/node does hold Node modules (the check finds them)", () =>
    Effect.gen(function*() {
      const bundle = yield* bundleForBrowsers("node")
      expect(nodeModulesIn(bundle)).toEqual(expect.arrayContaining([expect.stringMatching(/node_modules\/ws\//u)]))
    }), 60_000)
})
