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

/** The last event's JSON, remembered: a fan-out hands one event to every subscriber before the next. */
export const makeEnrichedChatEventJsonCache = () => {
  let lastEvent: EnrichedChatEvent | undefined
  let lastJson: string | undefined
  return (event: EnrichedChatEvent): string | undefined => {
    if (event !== lastEvent) {
      lastEvent = event
      lastJson = Either.getOrUndefined(enrichedChatEventJson(event))
    }
    return lastJson
  }
}
