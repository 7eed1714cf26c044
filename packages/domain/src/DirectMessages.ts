import { Option } from "effect"

const PREFIX = "dm:"

/**
 * The scope id of the direct-message conversation between two users: the same whoever asks, and
 * unambiguous whatever the ids contain (each is percent-encoded, so ':' only separates).
 */
export const directMessageScopeId = (userA: string, userB: string): string =>
  PREFIX + [userA, userB].sort().map(encodeURIComponent).join(":")

/** The two members of a direct-message scope id, if it is one in canonical form. */
export const directMessageMembers = (scopeId: string): Option.Option<readonly [string, string]> => {
  if (!scopeId.startsWith(PREFIX)) return Option.none()
  const parts = scopeId.slice(PREFIX.length).split(":")
  if (parts.length !== 2) return Option.none()
  const decoded = Option.all(parts.map((part) => Option.liftThrowable(decodeURIComponent)(part)))
  return Option.flatMap(decoded, ([a, b]) =>
    a !== undefined && b !== undefined && directMessageScopeId(a, b) === scopeId ? Option.some([a, b] as const) : Option.none())
}
