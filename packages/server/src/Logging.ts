/**
 * Who and what a log line is about, taken from the fiber's context when the line is written: the
 * caller (CurrentUser: user and connection), the correlation id, and `LogFields` (e.g. the hub
 * method). A call provides these once, with the services it needs anyway; annotating every call's
 * logs instead (a fiber-ref update per call that compares whole annotation maps) cost a send more
 * than anything it logged.
 */
import { Context, FiberRef, FiberRefs, HashMap, Logger, Option } from "effect"
import { CorrelationId, CurrentUser } from "@chatify/core"

/** More fields for the log lines of a call (string values), provided with its context. */
export class LogFields extends Context.Reference<LogFields>()("chatify/LogFields", {
  defaultValue: (): Readonly<Record<string, string>> => ({})
}) {}

/** `logger`, with the caller's fields from each line's fiber context added to its annotations. */
export const withCallerFields = <Message, Output>(
  logger: Logger.Logger<Message, Output>
): Logger.Logger<Message, Output> =>
  Logger.mapInputOptions(logger, (options) => {
    const context = FiberRefs.getOrDefault(options.context, FiberRef.currentContext)
    let annotations = options.annotations
    const add = (key: string, value: string) => {
      if (!HashMap.has(annotations, key)) annotations = HashMap.set(annotations, key, value)
    }
    const correlationId = Context.get(context, CorrelationId)
    if (correlationId !== undefined) add("correlationId", correlationId)
    const caller = Context.getOption(context, CurrentUser)
    if (Option.isSome(caller)) {
      add("userId", caller.value.userId)
      add("connectionId", caller.value.connectionId)
    }
    for (const [key, value] of Object.entries(Context.get(context, LogFields))) add(key, value)
    return annotations === options.annotations ? options : { ...options, annotations }
  })
