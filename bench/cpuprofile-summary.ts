// Sums the self time of a V8 .cpuprofile (node --cpu-prof) per function and per file.
//
//   node --import tsx bench/cpuprofile-summary.ts /tmp/prof/CPU.*.cpuprofile [top=30]
import { readFileSync } from "node:fs"

interface ProfileNode {
  readonly id: number
  readonly children?: ReadonlyArray<number>
  readonly callFrame: {
    readonly functionName: string
    readonly url: string
    readonly lineNumber: number
  }
}
interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const [path, topArg] = process.argv.slice(2)
if (path === undefined) {
  console.error("usage: cpuprofile-summary.ts <file.cpuprofile> [top]")
  process.exit(2)
}
const top = Number(topArg ?? 30)
const profile = JSON.parse(readFileSync(path, "utf8")) as Profile
const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const parentOf = new Map<number, number>()
for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id)

// Shortens node_modules/.pnpm/<pkg>@<version>/node_modules/<pkg>/… and file:///work/main/… paths.
const shortFile = (url: string): string => {
  if (url === "") return "(native)"
  const pnpm = /node_modules\/\.pnpm\/[^/]+\/node_modules\/(.+)$/u.exec(url)
  if (pnpm !== null) return pnpm[1]!
  return url.replace(/^file:\/\//u, "").replace(/^.*\/work\/main\//u, "")
}

const perFunction = new Map<string, number>()
const perFile = new Map<string, number>()
const inclusive = new Map<string, number>()
let total = 0
profile.samples.forEach((id, i) => {
  const micros = profile.timeDeltas[i] ?? 0
  const node = byId.get(id)
  if (node === undefined) return
  const file = shortFile(node.callFrame.url)
  const nameOf = (frame: ProfileNode["callFrame"]) =>
    `${frame.functionName === "" ? "(anonymous)" : frame.functionName} ${shortFile(frame.url)}:${frame.lineNumber + 1}`
  const fn = nameOf(node.callFrame)
  perFunction.set(fn, (perFunction.get(fn) ?? 0) + micros)
  // inclusive: every distinct function on the sample's stack, once
  const onStack = new Set<string>()
  for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
    const frame = byId.get(at)
    if (
      frame !== undefined && frame.callFrame.url.includes("/work/main/") &&
      !frame.callFrame.url.includes("node_modules")
    ) {
      onStack.add(nameOf(frame.callFrame))
    }
  }
  for (const name of onStack) inclusive.set(name, (inclusive.get(name) ?? 0) + micros)
  perFile.set(file, (perFile.get(file) ?? 0) + micros)
  total += micros
})

const print = (title: string, entries: Map<string, number>) => {
  console.log(`\n${title} (total ${(total / 1000).toFixed(0)} ms)`)
  for (const [name, micros] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(
      `${(micros / 1000).toFixed(0).padStart(8)} ms ${((100 * micros) / total).toFixed(1).padStart(5)}%  ${name}`
    )
  }
}
print("Self time per function", perFunction)
print("Self time per file", perFile)
print("Inclusive time per workspace function", inclusive)
