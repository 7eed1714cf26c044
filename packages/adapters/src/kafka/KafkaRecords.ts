import type { KafkaMessage } from "kafkajs"
import type { LogRecord, RecordContext } from "@chatify/core"

/** W3C Trace Context's header: the producing span, so consumers continue the send's trace. */
export const TRACEPARENT_HEADER = "traceparent"
/** The sender's correlation id, restored on the consumer side for its spans and log lines. */
export const CORRELATION_ID_HEADER = "x-correlation-id"

export type RecordHeaders = Readonly<Record<string, string>>

/** The headers a produced record carries for its context; none when there is nothing to carry. */
export const recordHeaders = ({ correlationId, traceParent }: RecordContext): RecordHeaders | undefined => {
  if (traceParent === undefined) {
    return correlationId === undefined
      ? undefined
      : { [CORRELATION_ID_HEADER]: correlationId }
  }
  return correlationId === undefined
    ? { [TRACEPARENT_HEADER]: traceParent }
    : { [TRACEPARENT_HEADER]: traceParent, [CORRELATION_ID_HEADER]: correlationId }
}

/** A header's value as text (kafkajs hands a Buffer, a string or a list of them); the first of a list. */
const headerText = (value: Buffer | string | ReadonlyArray<Buffer | string> | undefined): string | undefined => {
  const first = Array.isArray(value) ? (value as ReadonlyArray<Buffer | string>)[0] : value
  return first === undefined ? undefined : typeof first === "string" ? first : first.toString("utf8")
}

/**
 * Original bytes of values that did not decode as UTF-8 (LogRecord carries text): dead-lettering
 * publishes these instead of the lossy text. Weak, so a record's bytes go when the record goes.
 */
const rawValues = new WeakMap<LogRecord, Buffer>()

export const rawValueOf = (record: LogRecord): Buffer | string => rawValues.get(record) ?? record.value

export const toLogRecord = (partition: number, message: KafkaMessage): LogRecord => {
  const value = message.value === null ? "" : message.value.toString("utf8")
  const record: LogRecord = {
    partition,
    offset: Number(message.offset),
    key: message.key === null ? null : message.key.toString("utf8"),
    value,
    timestampMs: Number(message.timestamp),
    ...(message.headers === undefined ? {} : {
      traceParent: headerText(message.headers[TRACEPARENT_HEADER]),
      correlationId: headerText(message.headers[CORRELATION_ID_HEADER])
    })
  }
  // U+FFFD marks a byte sequence UTF-8 could not decode (or a literal one: keeping bytes is harmless)
  if (message.value !== null && value.includes("\uFFFD")) rawValues.set(record, message.value)
  return record
}
