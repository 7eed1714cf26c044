import { Effect, Exit, Layer, Mailbox } from "effect"
import { LocalFanout } from "@chatify/core"
import { type EnrichedChatEvent, scopeKey, SubscriptionLagged } from "@chatify/domain"

/**
 * This pod's subscribers, indexed by scope: publishing an event is one map lookup and one
 * non-blocking offer per subscriber of that scope. A subscriber whose buffer is full is ended
 * with SubscriptionLagged (it resumes from its last position) instead of slowing everyone down.
 */
export const MemoryFanout = Layer.sync(LocalFanout, () => {
  interface Subscriber {
    readonly mailbox: Mailbox.Mailbox<EnrichedChatEvent, SubscriptionLagged>
    readonly bufferSize: number
  }
  const scopes = new Map<string, Set<Subscriber>>()
  let subscribers = 0
  const remove = (scopeKey: string, subscriber: Subscriber) => {
    const set = scopes.get(scopeKey)
    if (set?.delete(subscriber) === true) subscribers--
    if (set?.size === 0) scopes.delete(scopeKey)
  }
  return {
    register: (scopeKey, bufferSize) =>
      Effect.acquireRelease(
        Effect.map(Mailbox.make<EnrichedChatEvent, SubscriptionLagged>({ capacity: bufferSize, strategy: "dropping" }), (mailbox) => {
          const subscriber: Subscriber = { mailbox, bufferSize }
          let set = scopes.get(scopeKey)
          if (set === undefined) {
            set = new Set()
            scopes.set(scopeKey, set)
          }
          set.add(subscriber)
          subscribers++
          return subscriber
        }),
        (subscriber) => Effect.zipRight(Effect.sync(() => remove(scopeKey, subscriber)), subscriber.mailbox.shutdown)
      ).pipe(Effect.map((subscriber) => subscriber.mailbox)),
    publish: (event) =>
      Effect.sync(() => {
        const key = scopeKey(event.chatEvent)
        const set = scopes.get(key)
        if (set === undefined) return 0
        let delivered = 0
        for (const subscriber of set) {
          if (subscriber.mailbox.unsafeOffer(event)) {
            delivered++
          } else {
            remove(key, subscriber)
            subscriber.mailbox.unsafeDone(
              Exit.fail(new SubscriptionLagged({ scopeId: event.chatEvent.scopeId, bufferSize: subscriber.bufferSize }))
            )
          }
        }
        return delivered
      }),
    subscriberCount: Effect.sync(() => subscribers)
  }
})
