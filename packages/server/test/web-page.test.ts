/**
 * The web page's static route (WebPage.ts) on its own router, over real HTTP: content types, caching
 * headers, conditional and gzipped answers, and no path that reaches a file outside the page.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, FastCheck as fc, Layer, Scope } from "effect"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, request } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { gunzipSync } from "node:zlib"
import { acceptsGzip, matchesEtag, PAGE_CONTENT_SECURITY_POLICY, WebPageRoutes } from "../src/WebPage.js"

const SECRET = "the-secret-next-to-the-page"
const root = mkdtempSync(join(tmpdir(), "chatify-web-page-"))
const pageDirectory = join(root, "dist")
const files = {
  "/": "<!doctype html><title>Chatify</title>" + "<p>hello</p>".repeat(50),
  "/assets/main-ABC123.js": "console.log('chat');".repeat(40),
  "/assets/style-DEF456.css": "body { margin: 0 }\n".repeat(40),
  "/assets/logo.png": "PNG, not really"
} as const
mkdirSync(join(pageDirectory, "assets", "nested"), { recursive: true })
writeFileSync(join(pageDirectory, "index.html"), files["/"])
for (const [path, content] of Object.entries(files)) {
  if (path !== "/") writeFileSync(join(pageDirectory, path), content)
}
writeFileSync(join(pageDirectory, "assets", "nested", "deeper.js"), SECRET)
writeFileSync(join(root, "secret.txt"), SECRET)
writeFileSync(join(pageDirectory, "secret.txt"), SECRET)

interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  readonly body: Buffer
}

let port = 0
const scope = Effect.runSync(Scope.make())

/** A raw request: the path goes out exactly as given (fetch would resolve its `..` first). */
const get = (path: string, headers: Record<string, string> = {}): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const outgoing = request({ host: "127.0.0.1", port, path, method: "GET", headers }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }))
      response.on("error", reject)
    })
    outgoing.on("error", reject)
    outgoing.end()
  })

beforeAll(async () => {
  const context = await Effect.runPromise(
    Layer.buildWithScope(
      HttpLayerRouter.serve(WebPageRoutes(pageDirectory), { disableLogger: true }).pipe(
        Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" }))
      ),
      scope
    )
  )
  const address = Context.get(context, HttpServer.HttpServer).address
  if (address._tag !== "TcpAddress") throw new Error("not on TCP")
  port = address.port
})

afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  rmSync(root, { recursive: true, force: true })
})

describe("the web page's static route", () => {
  it("serves index.html at / with its type, no-cache, an ETag and the page's security headers", async () => {
    const answer = await get("/")
    expect(answer.status).toBe(200)
    expect(answer.body.toString()).toBe(files["/"])
    expect(answer.headers["content-type"]).toBe("text/html; charset=utf-8")
    expect(answer.headers["cache-control"]).toBe("no-cache")
    expect(answer.headers["etag"]).toMatch(/^"[A-Za-z0-9_-]{27}"$/u)
    expect(answer.headers["x-content-type-options"]).toBe("nosniff")
    expect(answer.headers["content-security-policy"]).toBe(PAGE_CONTENT_SECURITY_POLICY)
  })

  it("serves each asset with its content type, cached for good (its name holds its hash)", async () => {
    const expected: Record<string, string> = {
      "/assets/main-ABC123.js": "text/javascript; charset=utf-8",
      "/assets/style-DEF456.css": "text/css; charset=utf-8",
      "/assets/logo.png": "image/png"
    }
    for (const [path, contentType] of Object.entries(expected)) {
      const answer = await get(path)
      expect(answer.status).toBe(200)
      expect(answer.headers["content-type"]).toBe(contentType)
      expect(answer.headers["cache-control"]).toBe("public, max-age=31536000, immutable")
      expect(answer.body.toString("latin1")).toBe(files[path as keyof typeof files])
      expect(answer.headers["content-security-policy"]).toBeUndefined()
    }
  })

  it("answers 304 without a body to a request that names the current ETag, 200 to a stale one", async () => {
    const first = await get("/assets/main-ABC123.js")
    const etag = String(first.headers["etag"])
    const again = await get("/assets/main-ABC123.js", { "if-none-match": `"stale", ${etag}` })
    expect(again.status).toBe(304)
    expect(again.body.length).toBe(0)
    expect(again.headers["etag"]).toBe(etag)
    expect(again.headers["cache-control"]).toBe("public, max-age=31536000, immutable")
    expect((await get("/assets/main-ABC123.js", { "if-none-match": "\"stale\"" })).status).toBe(200)
  })

  it("sends gzip to a client that takes it, and the same bytes once unzipped", async () => {
    const zipped = await get("/", { "accept-encoding": "br, gzip" })
    expect(zipped.headers["content-encoding"]).toBe("gzip")
    expect(zipped.headers["vary"]).toBe("accept-encoding")
    expect(gunzipSync(zipped.body).toString()).toBe(files["/"])
    expect(zipped.body.length).toBeLessThan(files["/"].length)
    const refused = await get("/", { "accept-encoding": "gzip;q=0" })
    expect(refused.headers["content-encoding"]).toBeUndefined()
    expect(refused.body.toString()).toBe(files["/"])
  })

  it("never serves a file outside the page, nor a nested one, whatever the path says", async () => {
    const attempts = [
      "/secret.txt",
      "/../secret.txt",
      "/assets/../secret.txt",
      "/assets/../../secret.txt",
      "/assets/..%2fsecret.txt",
      "/assets/..%2F..%2Fsecret.txt",
      "/assets/%2e%2e/secret.txt",
      "/assets/%2e%2e%2f%2e%2e%2fsecret.txt",
      "/assets/..\\secret.txt",
      "/assets/nested/deeper.js",
      "/assets/nested",
      "/assets/",
      "/assets",
      "//secret.txt",
      "/assets/main-ABC123.js/../../secret.txt",
      "/index.html/../secret.txt"
    ]
    for (const path of attempts) {
      const answer = await get(path)
      expect({ path, status: answer.status }).toEqual({ path, status: 404 })
      expect(answer.body.toString()).not.toContain(SECRET)
    }
  })

  // mostly the pieces a traversal is made of, so that a few runs cover many of their combinations
  const segment = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom("..", ".", "%2e%2e", "%2E%2e", "..%2f", "%2f", "%5c", "secret.txt") },
    { weight: 2, arbitrary: fc.constantFrom("assets", "nested", "deeper.js", "main-ABC123.js", "index.html", "") },
    { weight: 1, arbitrary: fc.webSegment() }
  )
  const path = fc.tuple(fc.constantFrom("/", "/assets/"), fc.array(segment, { minLength: 1, maxLength: 5 })).map((
    [prefix, segments]
  ) => prefix + segments.join("/"))

  it("answers any path with one of the page's own files or a 404, never with another file", async () => {
    await fc.assert(
      fc.asyncProperty(path, async (path) => {
        const answer = await get(path)
        const served = Object.entries(files).find(([servedAt]) => servedAt === path)
        expect({ path, status: answer.status }).toEqual({ path, status: served === undefined ? 404 : 200 })
        if (served === undefined) expect(answer.body.toString()).not.toContain(SECRET)
        else expect(answer.body.toString()).toBe(served[1])
      }),
      { numRuns: 100 }
    )
  })
})

describe("request header parsing", () => {
  const quality = fc.option(fc.integer({ min: 0, max: 10 }).map((tenths) => tenths / 10))
  const coding = fc.record({
    name: fc.constantFrom("gzip", "GZip", "br", "deflate", "identity", "*", "x-gzip", "gzipped"),
    quality,
    space: fc.constantFrom("", " ", "  ")
  })
  const acceptEncoding = fc.array(coding, { maxLength: 5 })

  it.prop("acceptsGzip: gzip (or *) listed with a quality above 0", { codings: acceptEncoding }, ({ codings }) => {
    const header = codings.map(({ name, quality, space }) =>
      `${space}${name}${quality === null ? "" : `;${space}q=${quality}`}`
    ).join(",")
    const expected = codings.some(({ name, quality }) =>
      (name.toLowerCase() === "gzip" || name === "*") && (quality === null || quality > 0)
    )
    expect(acceptsGzip(header)).toBe(expected)
  })

  const tag = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/u).map((value) => `"${value}"`)
  it.prop(
    "matchesEtag: the tag itself, its weak form or * anywhere in the list",
    { etag: tag, others: fc.array(tag, { maxLength: 4 }), form: fc.constantFrom("none", "strong", "weak", "star") },
    ({ etag, others, form }) => {
      const listed = form === "strong" ? [etag] : form === "weak" ? [`W/${etag}`] : form === "star" ? ["*"] : []
      const candidates = [...others.filter((other) => other !== etag && other !== `W/${etag}`), ...listed]
      expect(matchesEtag(candidates.join(", "), etag)).toBe(form !== "none")
    }
  )

  it("takes no header as no match and no gzip", () => {
    expect(matchesEtag(undefined, "\"abc\"")).toBe(false)
    expect(acceptsGzip(undefined)).toBe(false)
  })
})
