import type { types } from "cassandra-driver"
import { Option } from "effect"

// the driver's enum is only a type here (importing its value loads the driver); a test checks the codes
// eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment
const level = (code: number) => code as types.consistencies

/**
 * The consistency levels by their codes in the native protocol (the values of the driver's
 * `types.consistencies`), here so that reading the configuration does not load the driver.
 */
export const Consistency = {
  any: level(0x00),
  one: level(0x01),
  two: level(0x02),
  three: level(0x03),
  quorum: level(0x04),
  all: level(0x05),
  localQuorum: level(0x06),
  eachQuorum: level(0x07),
  serial: level(0x08),
  localSerial: level(0x09),
  localOne: level(0x0a)
} as const satisfies Record<keyof typeof types.consistencies, types.consistencies>

// By CQL name ("localQuorum" → "LOCAL_QUORUM"); lookups normalise case, "_" and "-", so the driver's
// names match too.
export const CONSISTENCIES: ReadonlyArray<readonly [string, types.consistencies]> = Object.entries(Consistency).map((
  [name, level]
) => [name.replace(/[A-Z]/gu, (upper) => `_${upper}`).toUpperCase(), level])

const normalise = (name: string) => name.trim().toLowerCase().replaceAll("_", "").replaceAll("-", "")

/** A consistency level from its CQL name ("LOCAL_QUORUM") or the driver's ("localQuorum"), any case. */
export const parseConsistency = (name: string): Option.Option<types.consistencies> =>
  Option.fromNullable(CONSISTENCIES.find(([cqlName]) => normalise(cqlName) === normalise(name))?.[1])

/** The CQL name of a consistency level, for messages. */
export const consistencyName = (level: types.consistencies): string =>
  CONSISTENCIES.find(([, value]) => value === level)?.[0] ?? String(level)
