import type { KafkaMessage } from "kafkajs"
import type { LogRecord } from "@chatify/core"

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
    timestampMs: Number(message.timestamp)
  }
  // U+FFFD marks a byte sequence UTF-8 could not decode (or a literal one: keeping bytes is harmless)
  if (message.value !== null && value.includes("\uFFFD")) rawValues.set(record, message.value)
  return record
}
