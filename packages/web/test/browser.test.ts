/**
 * The chat page in a real browser: Debian's Chromium, headless, driven by playwright-core, against
 * embedded servers on 127.0.0.1. Every element is found by its role and accessible name, as a
 * screen reader finds it. A screenshot of each state goes to $CHATIFY_CACHE/web-screenshots/.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { homedir, tmpdir } from "node:os"
import { join } from "node:path"
import { SignJWT } from "jose"
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core"
import { directMessageScopeId, partitionForScope } from "@chatify/domain"
import { makeChatClient } from "@chatify/sdk/node"
import { hs256TestAuth, startTestServer, type TestServer } from "@chatify/server/testing"
import type { ServerConfig } from "@chatify/server"
import { buildWeb, describeBuild, PAGE_BUDGET_BYTES, type WebBuild } from "../build.js"

const chromiumPath = process.env["CHATIFY_CHROMIUM"] ?? "/usr/bin/chromium"
const screenshots = join(process.env["CHATIFY_CACHE"] ?? join(homedir(), ".cache", "chatify"), "web-screenshots")

interface RunningServer {
  readonly server: TestServer
  readonly stop: () => Promise<void>
}

/** An embedded server on `dataDirectory` (kept when it stops, so another can start on it). */
const startServer = async (dataDirectory: string, config: Partial<ServerConfig> = {}): Promise<RunningServer> => {
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(Scope.extend(startTestServer({ dataDirectory, config }), scope))
  return { server, stop: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** Sends `texts` in order to a channel through the Node SDK: another client than the page. */
const sendFromNode = (wsUrl: string, scopeId: string, texts: ReadonlyArray<string>, accessToken?: string) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.flatMap(
        makeChatClient({ url: wsUrl, accessToken }),
        (chat) => Effect.forEach(texts, (text) => chat.send({ scopeType: 0, scopeId, text }))
      )
    )
  )

const hs256Token = (secret: string, sub: string) =>
  new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setExpirationTime("10m")
    .sign(new TextEncoder().encode(secret))

const dataDirectories: Array<string> = []
const newDataDirectory = () => {
  const directory = mkdtempSync(join(tmpdir(), "chatify-web-"))
  dataDirectories.push(directory)
  return directory
}

let browser: Browser
let main: RunningServer
let build: WebBuild
/** Errors thrown in any page: a test fails on one. */
const pageErrors: Array<string> = []

beforeAll(async () => {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `no Chromium at ${chromiumPath}: ./scripts/test.sh installs Debian's chromium (or set CHATIFY_CHROMIUM)`
    )
  }
  mkdirSync(screenshots, { recursive: true })
  build = await buildWeb()
  console.log(describeBuild(build))
  // as root, Chromium's sandbox cannot start: headless on loopback only, it has nothing to protect
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ["--no-sandbox"] })
  main = await startServer(newDataDirectory())
})

afterAll(async () => {
  await browser.close()
  await main.stop()
  for (const directory of dataDirectories) rmSync(directory, { recursive: true, force: true })
})

const contexts: Array<BrowserContext> = []
const openPage = async (httpUrl: string): Promise<Page> => {
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } })
  contexts.push(context)
  const page = await context.newPage()
  page.on("pageerror", (error) => pageErrors.push(error.message))
  await page.goto(httpUrl, { waitUntil: "domcontentloaded" })
  return page
}

const status = (page: Page, text: string) => page.getByRole("status").filter({ hasText: new RegExp(`^${text}$`, "u") })
const messagesLog = (page: Page) => page.getByRole("log", { name: "Messages" })
const messageTexts = (page: Page) => messagesLog(page).locator(".text").allTextContents()

const joinChannel = async (page: Page, channel: string) => {
  await page.getByLabel("Channel", { exact: true }).fill(channel)
  await page.getByRole("button", { name: "Join" }).click()
  await page.getByRole("heading", { name: `#${channel}` }).waitFor({ timeout: 5_000 })
}

const send = async (page: Page, text: string) => {
  const field = page.getByLabel("Message", { exact: true })
  await field.fill(text)
  await field.press("Enter")
}

const screenshot = (page: Page, name: string) => page.screenshot({ path: join(screenshots, `${name}.png`) })

describe("the chat page in Chromium", () => {
  it("is built within its budget, served at / with its bundles, and leaves /docs and the API as they were", async () => {
    expect(build.gzipBytes).toBeLessThan(PAGE_BUDGET_BYTES)
    const html = await fetch(`${main.server.httpUrl}/`)
    expect(html.status).toBe(200)
    expect(html.headers.get("content-type")).toBe("text/html; charset=utf-8")
    const assets = Array.from((await html.text()).matchAll(/\/assets\/[\w.-]+/gu), ([path]) => path)
    expect(assets).toHaveLength(2)
    for (const asset of assets) {
      const response = await fetch(`${main.server.httpUrl}${asset}`)
      expect(response.status).toBe(200)
      expect(response.headers.get("cache-control")).toBe("public, max-age=31536000, immutable")
    }
    const missing = await fetch(`${main.server.httpUrl}/assets/missing.js`)
    expect(missing.status).toBe(404)
    expect(missing.headers.get("content-type")).toBe("application/problem+json")
    expect(missing.headers.get("x-correlation-id")).not.toBeNull()
    const docs = await fetch(`${main.server.httpUrl}/docs`)
    expect(docs.status).toBe(200)
    expect(await docs.text()).toContain("swagger")
    expect((await fetch(`${main.server.httpUrl}/openapi.json`)).status).toBe(200)
    expect((await fetch(`${main.server.httpUrl}/api/chat/scopes/0/general/history`)).status).toBe(200)
  })

  it("two pages join general: a message sent on one shows on the other within 1 s, with its sender and time", async () => {
    const [alice, bob] = [await openPage(main.server.httpUrl), await openPage(main.server.httpUrl)]
    for (const page of [alice, bob]) {
      await joinChannel(page, "general")
      await status(page, "Connected").waitFor({ timeout: 10_000 })
      await page.getByRole("list", { name: "Channels" }).getByRole("button", { name: "#general" }).waitFor()
    }
    const text = `hello from the first page ${crypto.randomUUID()}`
    await send(alice, text)
    const started = Date.now()
    const arrived = messagesLog(bob).getByRole("listitem").filter({ hasText: text })
    await arrived.waitFor({ timeout: 1_000 })
    const elapsed = Date.now() - started
    expect(elapsed).toBeLessThan(1_000)
    expect(await arrived.locator(".sender").textContent()).toMatch(/^anon_[0-9a-f]{20}$/u)
    expect(await arrived.locator("time").getAttribute("datetime")).toMatch(/^\d{4}-\d\d-\d\dT/u)
    expect(await arrived.locator(".text").textContent()).toBe(text)
    // the sender's own page shows it once: from the send's result and from the subscription
    expect((await messageTexts(alice)).filter((shown) => shown === text)).toHaveLength(1)
    // both are online in general (presence is asked every 3 s)
    await bob.getByRole("list", { name: "Online" }).getByRole("listitem").nth(1).waitFor({ timeout: 5_000 })
    expect(await alice.getByLabel("Message", { exact: true }).inputValue()).toBe("")
    // no authentication on this server: no token to ask for
    expect(await alice.getByLabel("Access token").isVisible()).toBe(false)
    await screenshot(bob, "1-two-pages-received")
    expect(pageErrors).toEqual([])
  })

  it("shows markup in a message as text, never as HTML", async () => {
    const [alice, bob] = [await openPage(main.server.httpUrl), await openPage(main.server.httpUrl)]
    const dialogs: Array<string> = []
    for (const page of [alice, bob]) {
      page.on("dialog", (dialog) => {
        dialogs.push(dialog.message())
        void dialog.dismiss()
      })
      await status(page, "Connected").waitFor({ timeout: 10_000 })
    }
    const markup = "<img src=x onerror=alert(1)>"
    await send(alice, markup)
    for (const page of [alice, bob]) {
      await messagesLog(page).getByText(markup, { exact: true }).last().waitFor({ timeout: 2_000 })
      expect(await messagesLog(page).locator("img").count()).toBe(0)
    }
    await screenshot(bob, "2-markup-as-text")
    expect(dialogs).toEqual([])
    expect(pageErrors).toEqual([])
  })

  it("after a reload shows the last messages from history, and Load older pages further back", async () => {
    const channel = `history-${crypto.randomUUID().slice(0, 8)}`
    await sendFromNode(main.server.wsUrl, channel, Array.from({ length: 70 }, (_, i) => `seed ${i}`))
    const page = await openPage(main.server.httpUrl)
    await joinChannel(page, channel)
    const firstPage = Array.from({ length: 50 }, (_, i) => `seed ${i + 20}`)
    await messagesLog(page).getByText("seed 69", { exact: true }).waitFor({ timeout: 5_000 })
    expect(await messageTexts(page)).toEqual(firstPage)

    await page.reload()
    await status(page, "Connected").waitFor({ timeout: 10_000 })
    await page.getByRole("heading", { name: `#${channel}` }).waitFor({ timeout: 5_000 })
    await messagesLog(page).getByText("seed 69", { exact: true }).waitFor({ timeout: 5_000 })
    expect(await messageTexts(page)).toEqual(firstPage)
    await screenshot(page, "3-history-after-reload")

    const loadOlder = page.getByRole("button", { name: "Load older" })
    await loadOlder.click()
    await messagesLog(page).getByText("seed 0", { exact: true }).waitFor({ timeout: 5_000 })
    expect(await messageTexts(page)).toEqual(Array.from({ length: 70 }, (_, i) => `seed ${i}`))
    // nothing older: the button goes (at most one more page, an empty one, to find that out)
    if (await loadOlder.isVisible()) await loadOlder.click()
    await loadOlder.waitFor({ state: "hidden", timeout: 5_000 })
    expect(await messageTexts(page)).toHaveLength(70)
    await screenshot(page, "4-load-older")
    expect(pageErrors).toEqual([])
  })

  it("shows the channel clicked in the Channels list, sends with the Send button, and says Offline while the browser is", async () => {
    const [first, second] = ["first", "second"].map((name) => `${name}-${crypto.randomUUID().slice(0, 8)}`) as [
      string,
      string
    ]
    await sendFromNode(main.server.wsUrl, first, ["in the first channel"])
    await sendFromNode(main.server.wsUrl, second, ["in the second channel"])
    const page = await openPage(main.server.httpUrl)
    await joinChannel(page, first)
    await joinChannel(page, second)
    await messagesLog(page).getByText("in the second channel", { exact: true }).waitFor({ timeout: 5_000 })
    expect(await messageTexts(page)).toEqual(["in the second channel"])

    const channels = page.getByRole("list", { name: "Channels" })
    const channel = (name: string) => channels.getByRole("button", { name: `#${name}`, exact: true })
    await channel(first).click()
    await page.getByRole("heading", { name: `#${first}` }).waitFor({ timeout: 2_000 })
    await messagesLog(page).getByText("in the first channel", { exact: true }).waitFor({ timeout: 2_000 })
    expect(await messageTexts(page)).toEqual(["in the first channel"])
    expect(await channel(first).getAttribute("aria-current")).toBe("true")
    expect(await channel(second).getAttribute("aria-current")).toBe("false")

    await page.getByLabel("Message", { exact: true }).fill("sent with the button")
    await page.getByRole("button", { name: "Send", exact: true }).click()
    await messagesLog(page).getByText("sent with the button", { exact: true }).waitFor({ timeout: 2_000 })
    expect(await messageTexts(page)).toEqual(["in the first channel", "sent with the button"])
    await channel(second).click()
    await page.getByRole("heading", { name: `#${second}` }).waitFor({ timeout: 2_000 })
    expect(await messageTexts(page)).toEqual(["in the second channel"])

    await status(page, "Connected").waitFor({ timeout: 10_000 })
    await page.context().setOffline(true)
    await status(page, "Offline").waitFor({ timeout: 5_000 })
    await screenshot(page, "5-offline")
    await page.context().setOffline(false)
    await status(page, "Connected").waitFor({ timeout: 15_000 })
    expect(pageErrors).toEqual([])
  })

  it("says Reconnecting… while the server is down and Connected once it is back, with a message sent meanwhile shown once", async () => {
    const dataDirectory = newDataDirectory()
    let first = await startServer(dataDirectory)
    const port = first.server.port
    // on the partition of #general (which the page also joined), so that #general resumes over a
    // stretch of its partition that holds none of its own messages
    const partitions = first.server.config.broker.partitions
    const generalPartition = partitionForScope({ scopeType: 0, scopeId: "general" }, partitions)
    const channel = Array.from({ length: 200 }, () => `restart-${crypto.randomUUID().slice(0, 8)}`).find((name) =>
      partitionForScope({ scopeType: 0, scopeId: name }, partitions) === generalPartition
    )
    if (channel === undefined) throw new Error(`no channel name on partition ${generalPartition} in 200 tries`)
    try {
      const page = await openPage(first.server.httpUrl)
      await joinChannel(page, channel)
      await status(page, "Connected").waitFor({ timeout: 10_000 })
      await send(page, "before the outage")
      await messagesLog(page).getByText("before the outage", { exact: true }).waitFor({ timeout: 2_000 })
      const general = page.getByRole("list", { name: "Channels" }).getByRole("button", { name: "#general" })
      await sendFromNode(first.server.wsUrl, "general", ["general before the outage"])
      await expect.poll(() => general.getAttribute("data-unread"), { timeout: 5_000 }).toBe("true")

      await first.stop()
      await status(page, "Reconnecting…").waitFor({ timeout: 10_000 })
      await screenshot(page, "6-reconnecting")

      // Meanwhile another client sends through a server the page cannot reach (another port, the
      // same log and history), so the message can only reach the page as the gap after it reconnects.
      const elsewhere = await startServer(dataDirectory)
      await sendFromNode(elsewhere.server.wsUrl, channel, ["sent during the outage"])
      await elsewhere.stop()
      expect(await page.getByRole("status").textContent()).toBe("Reconnecting…")

      first = await startServer(dataDirectory, { port })
      await status(page, "Connected").waitFor({ timeout: 15_000 })
      await messagesLog(page).getByText("sent during the outage", { exact: true }).waitFor({ timeout: 5_000 })
      await send(page, "after the outage")
      await messagesLog(page).getByText("after the outage", { exact: true }).waitFor({ timeout: 2_000 })
      expect(await messageTexts(page)).toEqual(["before the outage", "sent during the outage", "after the outage"])
      const ids = await messagesLog(page).getByRole("listitem").evaluateAll((items) =>
        items.map((item) => item.getAttribute("data-message-id"))
      )
      expect(new Set(ids).size).toBe(3)
      await screenshot(page, "7-connected-again")

      // #general, quiet during the outage, is followed again too
      await sendFromNode(first.server.wsUrl, "general", ["general after the outage"])
      await general.click()
      await messagesLog(page).getByText("general after the outage", { exact: true }).waitFor({ timeout: 5_000 })
      expect(await messageTexts(page)).toEqual(["general before the outage", "general after the outage"])
      expect(await page.locator("#join-error").textContent()).toBe("")
      expect(pageErrors).toEqual([])
    } finally {
      await first.stop()
    }
  })

  it("asks for an access token when the server requires one, says why a scope is forbidden, opens a DM by user, and says why a send was refused", async () => {
    const secret = "a-test-secret-of-at-least-32-bytes!!"
    const authenticated = await startServer(newDataDirectory(), {
      auth: Option.some(hs256TestAuth(secret)),
      rateLimit: { limit: 3, windowSeconds: 60, failOpen: true }
    })
    try {
      const [alice, bob] = [await openPage(authenticated.server.httpUrl), await openPage(authenticated.server.httpUrl)]
      // A DM of two others among alice's stored scopes: the page offers no way to open one, so this
      // is how a scope the server refuses to alice (Forbidden) reaches it.
      const othersDm = directMessageScopeId("carol", "dave")
      await alice.evaluate((scopeId) =>
        localStorage.setItem(
          "chatify.scopes:alice",
          JSON.stringify([{ scopeType: 0, scopeId: "general" }, { scopeType: 1, scopeId }])
        ), othersDm)
      for (const [page, user] of [[alice, "alice"], [bob, "bob"]] as const) {
        await status(page, "Offline").waitFor()
        await page.getByLabel("Access token").fill(await hs256Token(secret, user))
        await page.getByRole("button", { name: "Use token" }).click()
        await status(page, "Connected").waitFor({ timeout: 10_000 })
        await page.getByText(`Signed in as ${user}`).waitFor()
      }
      await alice.locator("#join-error").getByText(
        "Cannot join @carol: not allowed (alice may not read in this scope)",
        { exact: true }
      ).waitFor({ timeout: 5_000 })
      expect(await alice.getByLabel("Channel", { exact: true }).getAttribute("aria-describedby")).toBe("join-error")
      expect(await alice.getByRole("list", { name: "Channels" }).getByRole("button").allTextContents()).toEqual([
        "#general"
      ])

      await alice.getByLabel("User", { exact: true }).fill("bob")
      await alice.getByRole("button", { name: "Open DM" }).click()
      await alice.getByRole("list", { name: "Channels" }).getByRole("button", { name: "@bob" }).waitFor({
        timeout: 5_000
      })
      await bob.getByLabel("User", { exact: true }).fill("alice")
      await bob.getByRole("button", { name: "Open DM" }).click()
      await bob.getByRole("heading", { name: "@alice" }).waitFor({ timeout: 5_000 })

      await send(alice, "hello bob, only you can read this")
      const received = messagesLog(bob).getByRole("listitem").filter({ hasText: "hello bob, only you can read this" })
      await received.waitFor({ timeout: 2_000 })
      expect(await received.locator(".sender").textContent()).toBe("alice")

      const error = alice.locator("#send-error")
      await send(alice, "x".repeat(4_097))
      await error.getByText(/^Not sent: text /u).waitFor({ timeout: 5_000 })
      await send(alice, "two")
      await messagesLog(alice).getByText("two", { exact: true }).waitFor({ timeout: 2_000 })
      await send(alice, "three")
      await messagesLog(alice).getByText("three", { exact: true }).waitFor({ timeout: 2_000 })
      await send(alice, "four: over the limit")
      await error.getByText(/^Not sent: too many messages \(at most 3 in 60 s\)\. Try again in \d+ seconds?\.$/u)
        .waitFor({ timeout: 5_000 })
      expect(await alice.getByLabel("Message", { exact: true }).getAttribute("aria-describedby")).toBe("send-error")
      await screenshot(alice, "8-dm-forbidden-and-rate-limit")
      expect(pageErrors).toEqual([])
    } finally {
      await authenticated.stop()
    }
  })
})
