/**
 * The wire JSON of an EnrichedChatEvent (`{"chatEvent":…,"partition":…,"offset":…}`), spliced from
 * the event's own JSON: what Schema.encode would give, at a fraction of the cost. The interfaces
 * write it once per event for every subscriber, and once per send as its result.
 */
import { Either, type ParseResult } from "effect"
import { encodeChatEventJson, type EnrichedChatEvent } from "@chatify/domain"

export const enrichedChatEventJson = (event: EnrichedChatEvent): Either.Either<string, ParseResult.ParseError> =>
  Either.map(
    encodeChatEventJson(event.chatEvent),
    (chatEvent) => `{"chatEvent":${chatEvent},"partition":${event.partition},"offset":${event.offset}}`
  )

/**
 * `encode`, remembering its last event: a fan-out hands one event to every subscriber of its scope
 * before the next, so each event is encoded once however many connections receive it.
 */
export const encodedOnce = <A>(encode: (event: EnrichedChatEvent) => A): (event: EnrichedChatEvent) => A => {
  let lastEvent: EnrichedChatEvent | undefined
  let lastEncoded: A
  return (event) => {
    if (event !== lastEvent) {
      lastEncoded = encode(event)
      lastEvent = event
    }
    return lastEncoded
  }
}
