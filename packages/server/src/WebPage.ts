/**
 * The chat page (packages/web, built into packages/web/dist) at `/`, its bundles under `/assets/`.
 * The files are read once at startup into memory (the page is a few files, ~100 KB): a request can
 * only ever get one of them, looked up by its exact path, so no path a client sends reaches the
 * file system (no traversal, whatever `..` or percent-encoding it holds).
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Layer, Option } from "effect"
import { createHash } from "node:crypto"
import { readdir, readFile } from "node:fs/promises"
import { extname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { gzipSync } from "node:zlib"
import { CorrelationId } from "@chatify/core"
import { NotFound } from "@chatify/domain"
import { pathOf } from "./Auth.js"
import { problemResponse } from "./Http.js"

/** packages/web/dist, from this module in src/ (tests) or dist/ (the built server) alike. */
export const defaultWebDirectory = fileURLToPath(new URL("../../web/dist/", import.meta.url))

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
  ".json": "application/json"
}

/**
 * The page's own script, style and socket only: even a message that slipped into the DOM as markup
 * could run nothing (no inline script, no event-handler attribute, no foreign origin).
 */
export const PAGE_CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'"
].join("; ")

/** Asset names carry their content's hash (`main-3KQ2J7XA.js`): a browser may keep them for good. */
const IMMUTABLE = "public, max-age=31536000, immutable"
/** index.html names the current assets: asked again on every visit (answered 304 while unchanged). */
const REVALIDATE = "no-cache"

interface StaticFile {
  readonly body: Uint8Array
  readonly gzipped: Uint8Array | undefined
  readonly headers: Readonly<Record<string, string>>
}

const staticFile = (name: string, body: Uint8Array, immutable: boolean): StaticFile => {
  const contentType = CONTENT_TYPES[extname(name)] ?? "application/octet-stream"
  const gzipped = gzipSync(body, { level: 9 })
  const html = contentType.startsWith("text/html")
  return {
    body,
    gzipped: gzipped.length < body.length ? gzipped : undefined,
    headers: {
      "content-type": contentType,
      "cache-control": immutable ? IMMUTABLE : REVALIDATE,
      etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`,
      vary: "accept-encoding",
      "x-content-type-options": "nosniff",
      ...(html ? { "content-security-policy": PAGE_CONTENT_SECURITY_POLICY, "referrer-policy": "no-referrer" } : {})
    }
  }
}

/** The page's files by URL path (`/` and `/assets/{name}`); empty when the page was not built. */
export const loadWebPage = (directory: string): Effect.Effect<ReadonlyMap<string, StaticFile>> =>
  Effect.promise(async () => {
    const files = new Map<string, StaticFile>()
    const index = await readFile(join(directory, "index.html")).catch(() => undefined)
    if (index === undefined) return files
    files.set("/", staticFile("index.html", index, false))
    const assets = await readdir(join(directory, "assets"), { withFileTypes: true }).catch(() => [])
    for (const asset of assets) {
      if (!asset.isFile()) continue
      files.set(
        `/assets/${asset.name}`,
        staticFile(asset.name, await readFile(join(directory, "assets", asset.name)), true)
      )
    }
    return files
  })

/** Whether an `If-None-Match` header names this entity tag (a list, weak tags and `*` included). */
export const matchesEtag = (ifNoneMatch: string | undefined, etag: string): boolean =>
  ifNoneMatch !== undefined &&
  ifNoneMatch.split(",").some((candidate) => {
    const tag = candidate.trim()
    return tag === "*" || tag === etag || tag === `W/${etag}`
  })

/** Whether an `Accept-Encoding` header takes gzip (`gzip;q=0` refuses it). */
export const acceptsGzip = (acceptEncoding: string | undefined): boolean =>
  acceptEncoding !== undefined &&
  acceptEncoding.split(",").some((entry) => {
    const [coding = "", ...parameters] = entry.split(";").map((part) => part.trim().toLowerCase())
    const quality = parameters.find((parameter) => parameter.startsWith("q="))
    return (coding === "gzip" || coding === "*") && (quality === undefined || Number(quality.slice(2)) > 0)
  })

/** GET `/` and `/assets/*` from the page's files; any other path under them is a 404 ProblemDetails. */
export const WebPageRoutes = (directory: string = defaultWebDirectory) =>
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const router = yield* HttpLayerRouter.HttpRouter
      const files = yield* loadWebPage(directory)
      if (files.size === 0) {
        yield* Effect.logWarning(`The web page is not built (no ${join(directory, "index.html")}): run pnpm run build`)
      }
      const serve = Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const path = pathOf(request.url)
        const file = files.get(path)
        if (file === undefined) {
          const message = path === "/"
            ? "The web page is not built: run pnpm run build (./scripts/start.sh does)"
            : `No route for ${request.method} ${path}`
          return problemResponse(
            new NotFound({ message }),
            path,
            Option.getOrUndefined(yield* Effect.serviceOption(CorrelationId))
          )
        }
        if (matchesEtag(request.headers["if-none-match"], file.headers["etag"] ?? "")) {
          return HttpServerResponse.empty({ status: 304, headers: file.headers })
        }
        const gzipped = acceptsGzip(request.headers["accept-encoding"]) ? file.gzipped : undefined
        return HttpServerResponse.uint8Array(gzipped ?? file.body, {
          headers: gzipped === undefined ? file.headers : { ...file.headers, "content-encoding": "gzip" },
          contentType: file.headers["content-type"] ?? "application/octet-stream"
        })
      })
      yield* router.add("GET", "/", serve)
      yield* router.add("GET", "/assets/*", serve)
    })
  )
