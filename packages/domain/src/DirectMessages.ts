import { Option } from "effect"

const PREFIX = "dm:"

/** The prefix of every direct-message scope id; reserved: no channel id starts with it, in any case. */
export const DIRECT_MESSAGE_PREFIX = PREFIX

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
  return Option.flatMap(
    decoded,
    ([a, b]) =>
      a !== undefined && b !== undefined && directMessageScopeId(a, b) === scopeId
        ? Option.some([a, b] as const)
        : Option.none()
  )
}

/** Whether a scope id starts like a direct-message id (`dm:`, in any letter case). */
export const looksLikeDirectMessageScopeId = (scopeId: string): boolean => /^dm:/iu.test(scopeId)

/**
 * The canonical form of a `dm:{a}:{b}` id that names its two members in another order or encoding
 * (`dm:bob:alice` → `dm:alice:bob`); none when the id does not name two members.
 */
export const canonicalDirectMessageScopeId = (scopeId: string): Option.Option<string> => {
  if (!scopeId.startsWith(PREFIX)) return Option.none()
  const parts = scopeId.slice(PREFIX.length).split(":")
  if (parts.length !== 2) return Option.none()
  return Option.map(
    Option.all(parts.map((part) => Option.liftThrowable(decodeURIComponent)(part))),
    ([a = "", b = ""]) => directMessageScopeId(a, b)
  )
}
