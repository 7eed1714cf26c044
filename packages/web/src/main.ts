/**
 * The chat page: DOM wiring around `@chatify/sdk/browser`. The SDK speaks the protocol (reconnect,
 * resume after the last position, de-duplication); this file only turns its results into elements.
 * No view library: the page is a handful of static elements (index.html) and one list that grows,
 * which the DOM's own API updates in fewer bytes than any library would add to the bundle, and
 * `textContent` renders every message as text by construction.
 */
import { type ChatClientService, makeChatClient, type SubscriptionUpdate } from "@chatify/sdk/browser"
import {
  directMessageScopeId,
  type EnrichedChatEvent,
  positionOf,
  type ScopeRef,
  scopeKey,
  ScopeTypes
} from "@chatify/domain"
import { Cause, Effect, Exit, Option, Schedule, Scope, Stream } from "effect"
import {
  emptyTimeline,
  HISTORY_PAGE_SIZE,
  joinErrorText,
  mergeEvents,
  messageTime,
  PRESENCE_REFRESH,
  readStoredScopes,
  scopeTitle,
  sendErrorText,
  type Timeline,
  tokenUser,
  writeStoredScopes
} from "./Model.js"

type ConnectionState = "joining" | "live" | "reconnecting" | "failed"

interface ScopeView {
  readonly ref: ScopeRef
  readonly key: string
  readonly title: string
  timeline: Timeline
  /** Where "Load older" goes on from; none once the oldest message is shown. */
  olderCursor: Option.Option<string>
  state: ConnectionState
  unread: boolean
  /** The message elements, built once per message. */
  readonly elements: Map<string, HTMLElement>
}

const element = <T extends HTMLElement>(id: string, type: new() => T): T => {
  const found = document.getElementById(id)
  if (!(found instanceof type)) throw new Error(`the page has no #${id}`)
  return found
}

const page = {
  status: element("status", HTMLElement),
  tokenForm: element("token-form", HTMLFormElement),
  token: element("token", HTMLInputElement),
  tokenInfo: element("token-info", HTMLElement),
  joinForm: element("join-form", HTMLFormElement),
  channel: element("channel", HTMLInputElement),
  joinError: element("join-error", HTMLElement),
  dmForm: element("dm-form", HTMLFormElement),
  dmUser: element("dm-user", HTMLInputElement),
  dmError: element("dm-error", HTMLElement),
  channels: element("channels", HTMLUListElement),
  scopeTitle: element("scope-title", HTMLElement),
  loadOlder: element("load-older", HTMLButtonElement),
  messages: element("messages", HTMLElement),
  messageList: element("message-list", HTMLOListElement),
  sendForm: element("send-form", HTMLFormElement),
  message: element("message", HTMLInputElement),
  sendError: element("send-error", HTMLElement),
  online: element("online", HTMLUListElement)
}

const TOKEN_KEY = "chatify.accessToken"
const scopesKey = (me: string | undefined) => `chatify.scopes:${me ?? ""}`
const currentKey = (me: string | undefined) => `chatify.current:${me ?? ""}`
const GENERAL: ScopeRef = { scopeType: ScopeTypes.Channel, scopeId: "general" }
/**
 * The SDK's backoff (from 50 ms, doubling, jittered) with a lower cap than its 5 s: a person looking
 * at "Reconnecting…" is back within 2 s of the server.
 */
const RECONNECT = Schedule.exponential("50 millis", 2).pipe(
  Schedule.union(Schedule.spaced("2 seconds")),
  Schedule.jittered
)
const rpcUrl = (): string => {
  const url = new URL("/rpc", location.href)
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
  return url.toString()
}

const accessProbe = (token: string | undefined) =>
  fetch("/api/chat/scopes/0/general/presence", {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` }
  })

/** Whether the server wants a token, and why it refuses this one (REST answers before any socket opens). */
const checkAccess = async (
  token: string | undefined
): Promise<{ readonly required: boolean; readonly refusal?: string | undefined }> => {
  if ((await accessProbe(undefined)).status !== 401) return { required: false }
  if (token === undefined) return { required: true }
  const response = await accessProbe(token)
  if (response.status !== 401) return { required: true }
  const problem: unknown = await response.json().catch(() => undefined)
  const detail = typeof problem === "object" && problem !== null && "detail" in problem ? problem.detail : undefined
  return { required: true, refusal: typeof detail === "string" ? detail : "refused" }
}

/**
 * One connection to the server with its joined scopes; replaced whole when the access token changes.
 * Everything it starts runs in its scope, so closing the scope ends it all, the socket last.
 */
const startSession = async (token: string | undefined, me: string | undefined) => {
  const scope = Effect.runSync(Scope.make())
  const chat: ChatClientService = await Effect.runPromise(
    Scope.extend(makeChatClient({ url: rpcUrl(), accessToken: token, reconnect: RECONNECT }), scope)
  )
  const fork = (effect: Effect.Effect<void>) => Effect.runSync(Effect.forkIn(effect, scope))
  const views = new Map<string, ScopeView>()
  let closed = false
  let current: ScopeView | undefined
  let rendered: ReadonlyArray<string> = []

  const storeScopes = () =>
    localStorage.setItem(scopesKey(me), writeStoredScopes(Array.from(views.values(), (view) => view.ref)))

  const showStatus = () => {
    const states = Array.from(views.values(), (view) => view.state)
    const [label, state] = !navigator.onLine
      ? ["Offline", "offline"]
      : states.includes("reconnecting")
      ? ["Reconnecting…", "reconnecting"]
      : states.includes("live")
      ? ["Connected", "connected"]
      : ["Offline", "offline"]
    if (page.status.textContent !== label) page.status.textContent = label
    page.status.dataset["state"] = state
  }

  const renderChannels = () => {
    page.channels.replaceChildren(
      ...Array.from(views.values(), (view) => {
        const item = document.createElement("li")
        const button = document.createElement("button")
        button.type = "button"
        button.textContent = view.title
        button.setAttribute("aria-current", String(view === current))
        button.dataset["unread"] = String(view.unread)
        button.addEventListener("click", () => select(view))
        item.append(button)
        return item
      })
    )
  }

  const messageElement = (view: ScopeView, event: EnrichedChatEvent): HTMLElement => {
    const known = view.elements.get(event.chatEvent.messageId)
    if (known !== undefined) return known
    const item = document.createElement("li")
    item.className = "message"
    item.dataset["messageId"] = event.chatEvent.messageId
    const sender = document.createElement("span")
    sender.className = "sender"
    sender.textContent = event.chatEvent.senderId === me
      ? `${event.chatEvent.senderId} (you)`
      : event.chatEvent.senderId
    const time = document.createElement("time")
    const { full, short } = messageTime(event.chatEvent.createdAtUtc)
    time.dateTime = event.chatEvent.createdAtUtc.toISOString()
    time.textContent = short
    time.title = full
    const text = document.createElement("p")
    text.className = "text"
    text.textContent = event.chatEvent.text // as text, never as HTML
    item.append(sender, time, text)
    view.elements.set(event.chatEvent.messageId, item)
    return item
  }

  /** Shows the current scope's timeline: appends what is new at the end, rebuilds when older messages came in. */
  const renderMessages = () => {
    const view = current
    if (view === undefined) {
      page.messageList.replaceChildren()
      rendered = []
      return
    }
    const order = view.timeline.order
    const box = page.messages
    const fromBottom = box.scrollHeight - box.scrollTop
    const atBottom = fromBottom - box.clientHeight < 48
    const appendOnly = rendered.length > 0 && rendered.length <= order.length &&
      order[0] === rendered[0] && order[rendered.length - 1] === rendered[rendered.length - 1]
    const event = (id: string) => view.timeline.byId.get(id)!
    if (appendOnly) {
      page.messageList.append(...order.slice(rendered.length).map((id) => messageElement(view, event(id))))
    } else {
      page.messageList.replaceChildren(...order.map((id) => messageElement(view, event(id))))
    }
    rendered = order
    // keep the reader where they were: at the end when they were there, else on the same message
    box.scrollTop = atBottom ? box.scrollHeight : box.scrollHeight - fromBottom
    page.loadOlder.hidden = Option.isNone(view.olderCursor)
  }

  const renderOnline = (users: ReadonlyArray<string>) => {
    page.online.replaceChildren(...users.map((user) => {
      const item = document.createElement("li")
      item.textContent = user === me ? `${user} (you)` : user
      return item
    }))
  }

  const refreshPresence = Effect.suspend(() => {
    const view = current
    if (view === undefined) return Effect.sync(() => renderOnline([]))
    return chat.presence(view.ref).pipe(
      Effect.tap((presence) =>
        Effect.sync(() => {
          if (view === current) renderOnline(presence.users.map(({ userId }) => userId))
        })
      ),
      Effect.ignore
    )
  })

  const merge = (view: ScopeView, events: Iterable<EnrichedChatEvent>) => {
    const before = view.timeline
    view.timeline = mergeEvents(view.timeline, events)
    if (view.timeline === before) return
    if (view === current) renderMessages()
    else if (!view.unread) {
      view.unread = true
      renderChannels()
    }
  }

  function select(view: ScopeView) {
    current = view
    localStorage.setItem(currentKey(me), view.key)
    view.unread = false
    rendered = []
    page.scopeTitle.textContent = view.title
    page.messageList.replaceChildren()
    renderChannels()
    renderMessages()
    page.messages.scrollTop = page.messages.scrollHeight
    page.sendError.textContent = ""
    renderOnline([])
    fork(refreshPresence)
  }

  /** The newest page of history, merged in: what a subscription that started with no position might have missed. */
  const refreshLatest = (view: ScopeView) =>
    chat.history({ ...view.ref, limit: HISTORY_PAGE_SIZE }).pipe(
      Effect.tap((latest) => Effect.sync(() => merge(view, latest.items))),
      Effect.ignore
    )

  const onUpdate = (view: ScopeView) => (update: SubscriptionUpdate): Effect.Effect<void> => {
    switch (update._tag) {
      case "Event":
        return Effect.sync(() => merge(view, [update.event]))
      case "Live":
        return Effect.sync(() => {
          view.state = "live"
          showStatus()
        }).pipe(
          Effect.zipRight(Option.isNone(update.resumedAfter) ? refreshLatest(view) : Effect.void),
          Effect.zipRight(view === current ? refreshPresence : Effect.void)
        )
      case "Reconnecting":
        return Effect.sync(() => {
          view.state = "reconnecting"
          showStatus()
        })
      case "PositionLost":
        return refreshLatest(view)
    }
  }

  /** Live events of a scope after the newest message its history showed, resumed across reconnects by the SDK. */
  const follow = (view: ScopeView, after: EnrichedChatEvent | undefined) =>
    chat.subscribeWithStatus(view.ref, { after: after === undefined ? undefined : positionOf(after) }).pipe(
      Stream.runForEach(onUpdate(view)),
      Effect.catchAll((error) =>
        Effect.sync(() => {
          view.state = "failed"
          page.joinError.textContent = joinErrorText(error, view.title)
          showStatus()
        })
      )
    )

  /** Reads a scope's newest page, then follows it; a scope the server refuses is not added. */
  const join = async (ref: ScopeRef, options: { readonly select: boolean; readonly errorAt: HTMLElement }) => {
    const key = scopeKey(ref)
    const known = views.get(key)
    if (known !== undefined) {
      if (options.select) select(known)
      return true
    }
    const title = scopeTitle(ref, me)
    const first = await Effect.runPromiseExit(chat.history({ ...ref, limit: HISTORY_PAGE_SIZE }))
    if (closed) return false
    if (Exit.isFailure(first)) {
      const failure = Cause.failureOption(first.cause)
      options.errorAt.textContent = Option.isSome(failure)
        ? joinErrorText(failure.value, title)
        : `Cannot join ${title}: the page failed (${Cause.pretty(first.cause)})`
      return false
    }
    if (views.has(key)) return true // joined twice at once: the first one won
    const view: ScopeView = {
      ref,
      key,
      title,
      timeline: mergeEvents(emptyTimeline, first.value.items),
      olderCursor: Option.fromNullable(first.value.nextCursor),
      state: "joining",
      unread: false,
      elements: new Map()
    }
    views.set(key, view)
    storeScopes()
    if (options.select || current === undefined) select(view)
    else renderChannels()
    fork(follow(view, first.value.items[0]))
    return true
  }

  const loadOlder = async () => {
    const view = current
    const before = view?.olderCursor
    if (view === undefined || before === undefined || Option.isNone(before)) return
    page.loadOlder.disabled = true
    const older = await Effect.runPromiseExit(
      chat.history({ ...view.ref, limit: HISTORY_PAGE_SIZE, before: before.value })
    )
    page.loadOlder.disabled = false
    if (Exit.isFailure(older)) {
      const failure = Cause.failureOption(older.cause)
      page.sendError.textContent = Option.isSome(failure)
        ? joinErrorText(failure.value, view.title).replace("Cannot join", "Cannot load older messages of")
        : "Cannot load older messages."
      return
    }
    view.olderCursor = Option.fromNullable(older.value.nextCursor)
    view.timeline = mergeEvents(view.timeline, older.value.items)
    if (view === current) renderMessages()
  }

  const send = async () => {
    const view = current
    const text = page.message.value
    if (text.length === 0) return
    if (view === undefined) {
      page.sendError.textContent = "Not sent: join a channel first."
      return
    }
    page.sendForm.setAttribute("aria-busy", "true")
    const sent = await Effect.runPromiseExit(chat.send({ ...view.ref, text }))
    page.sendForm.removeAttribute("aria-busy")
    if (Exit.isSuccess(sent)) {
      if (page.message.value === text) page.message.value = ""
      page.sendError.textContent = ""
      merge(view, [sent.value])
      return
    }
    const failure = Cause.failureOption(sent.cause)
    page.sendError.textContent = Option.isSome(failure) ? sendErrorText(failure.value) : "Not sent: the page failed."
  }

  const onJoin = (event: SubmitEvent) => {
    event.preventDefault()
    const scopeId = page.channel.value.trim()
    if (scopeId.length === 0) return
    page.joinError.textContent = ""
    void join({ scopeType: ScopeTypes.Channel, scopeId }, { select: true, errorAt: page.joinError }).then((joined) => {
      if (joined && page.channel.value.trim() === scopeId) page.channel.value = ""
    })
  }

  const onOpenDm = (event: SubmitEvent) => {
    event.preventDefault()
    const user = page.dmUser.value.trim()
    if (user.length === 0) return
    if (me === undefined) {
      page.dmError.textContent =
        "Direct messages need an access token: without authentication nobody has a lasting name."
      return
    }
    page.dmError.textContent = ""
    const ref: ScopeRef = { scopeType: ScopeTypes.DirectMessage, scopeId: directMessageScopeId(me, user) }
    void join(ref, { select: true, errorAt: page.dmError }).then((joined) => {
      if (joined && page.dmUser.value.trim() === user) page.dmUser.value = ""
    })
  }

  const onSend = (event: SubmitEvent) => {
    event.preventDefault()
    void send()
  }
  const onLoadOlder = () => void loadOlder()
  page.joinForm.addEventListener("submit", onJoin)
  page.dmForm.addEventListener("submit", onOpenDm)
  page.sendForm.addEventListener("submit", onSend)
  page.loadOlder.addEventListener("click", onLoadOlder)
  window.addEventListener("online", showStatus)
  window.addEventListener("offline", showStatus)

  fork(Effect.repeat(refreshPresence, Schedule.spaced(PRESENCE_REFRESH)))
  const stored = readStoredScopes(localStorage.getItem(scopesKey(me)))
  const shownLast = localStorage.getItem(currentKey(me))
  for (const ref of stored.length === 0 ? [GENERAL] : stored) {
    void join(ref, { select: scopeKey(ref) === shownLast, errorAt: page.joinError })
  }
  showStatus()

  return {
    /** Closes the connection and takes the page back to its empty state. */
    close: async () => {
      page.joinForm.removeEventListener("submit", onJoin)
      page.dmForm.removeEventListener("submit", onOpenDm)
      page.sendForm.removeEventListener("submit", onSend)
      page.loadOlder.removeEventListener("click", onLoadOlder)
      window.removeEventListener("online", showStatus)
      window.removeEventListener("offline", showStatus)
      closed = true
      await Effect.runPromise(Scope.close(scope, Exit.void))
      views.clear()
      current = undefined
      renderChannels()
      renderMessages()
      renderOnline([])
      page.scopeTitle.textContent = "No channel yet"
      page.status.textContent = "Offline"
      page.status.dataset["state"] = "offline"
    }
  }
}

const main = async () => {
  let session: { readonly close: () => Promise<void> } | undefined
  const open = async (token: string | undefined) => {
    await session?.close()
    session = undefined
    const access = await checkAccess(token)
    page.tokenForm.hidden = !access.required
    if (access.required && (token === undefined || access.refusal !== undefined)) {
      page.tokenInfo.textContent = access.refusal === undefined
        ? "This server requires an access token (./scripts/mint-token.sh makes one)."
        : `The access token was refused: ${access.refusal}`
      return
    }
    // without authentication a token would only be ignored
    const used = access.required ? token : undefined
    const me = used === undefined ? undefined : Option.getOrUndefined(tokenUser(used))
    page.tokenInfo.textContent = me === undefined ? "" : `Signed in as ${me}`
    session = await startSession(used, me)
  }
  page.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault()
    const token = page.token.value.trim()
    if (token.length === 0) return
    sessionStorage.setItem(TOKEN_KEY, token)
    page.token.value = ""
    void open(token)
  })
  await open(sessionStorage.getItem(TOKEN_KEY) ?? undefined)
}

void main()
