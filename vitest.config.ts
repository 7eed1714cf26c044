import { defineConfig } from "vitest/config"

// Workspace packages export their TypeScript sources under the "@chatify/source" condition, so the
// tests run against src/ without a build.
const conditions = ["@chatify/source", "module", "node", "development|production"]

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    include: ["packages/*/test/**/*.test.ts", "examples/test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } }
  }
})
