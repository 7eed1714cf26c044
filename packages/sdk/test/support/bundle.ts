import type { Metafile } from "esbuild"

/** Packages that only work in Node: `ws` (esbuild's browser build swaps in a stub that throws) and Effect's Node platform. */
const NODE_ONLY_PACKAGE = /(^|\/)node_modules\/(ws|@effect\/platform-node[^/]*)\//u

/**
 * The Node-only modules a bundle holds or imports: inputs from Node-only packages, and imports left
 * out of the bundle (a browser has no `node:` built-ins to give them).
 */
export const nodeModulesIn = (bundle: { readonly metafile: Metafile }): ReadonlyArray<string> => {
  const inputs = Object.entries(bundle.metafile.inputs)
  return [
    ...inputs.map(([path]) => path).filter((path) => NODE_ONLY_PACKAGE.test(path)),
    ...inputs.flatMap(([, input]) =>
      input.imports.filter((imported) => imported.external === true || imported.path.startsWith("node:")).map((
        imported
      ) => imported.path)
    )
  ]
}
