import { Effect, Layer } from "effect"
import { acquirePlainRelease, type FanoutSubscriber, LocalFanout } from "@chatify/core"
import { type EnrichedChatEvent, scopeKey } from "@chatify/domain"

/**
 * This pod's subscribers, indexed by scope: publishing an event is one map lookup and one
 * synchronous `deliver` per subscriber of that scope, with no per-subscriber fiber or encoding.
 */
export const MemoryFanout = Layer.sync(LocalFanout, () => {
  const scopes = new Map<string, Set<FanoutSubscriber>>()
  let subscribers = 0
  const remove = (key: string, subscriber: FanoutSubscriber) => {
    const set = scopes.get(key)
    if (set?.delete(subscriber) === true) subscribers--
    if (set?.size === 0) scopes.delete(key)
  }
  const publish = (event: EnrichedChatEvent): number => {
    const key = scopeKey(event.chatEvent)
    const set = scopes.get(key)
    if (set === undefined) return 0
    let delivered = 0
    for (const subscriber of set) {
      if (subscriber.deliver(event)) delivered++
      else remove(key, subscriber)
    }
    return delivered
  }
  return {
    register: (key, subscriber) =>
      acquirePlainRelease(
        Effect.sync(() => {
          let set = scopes.get(key)
          if (set === undefined) {
            set = new Set()
            scopes.set(key, set)
          }
          set.add(subscriber)
          subscribers++
        }),
        () => Effect.sync(() => remove(key, subscriber))
      ),
    publish: (event) => Effect.sync(() => publish(event)),
    publishAll: (events) =>
      Effect.sync(() => {
        let delivered = 0
        for (const event of events) delivered += publish(event)
        return delivered
      }),
    subscriberCount: Effect.sync(() => subscribers)
  }
})
