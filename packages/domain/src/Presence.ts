import { Schema } from "effect"
import { ChatScopeType } from "./ChatEvent.js"

export const PresentUser = Schema.Struct({
  userId: Schema.String,
  connections: Schema.Int.pipe(Schema.positive())
}).annotations({ identifier: "PresentUser" })
export type PresentUser = typeof PresentUser.Type

/** Who is online in a scope right now, with how many connections each. */
export class ScopePresence extends Schema.Class<ScopePresence>("ScopePresence")({
  scopeType: ChatScopeType,
  scopeId: Schema.String,
  users: Schema.Array(PresentUser)
}) {}
