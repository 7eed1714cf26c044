import type { Flusher } from "../../src/realtime/Outbox.js"
import { Outbox } from "../../src/realtime/Outbox.js"
import type { HubClient } from "../../src/signalr/Connection.js"

/** A hub client whose frames go nowhere: a hub's methods driven without a socket. */
export const discardingHubClient = (
  connectionId: string,
  flusher: Flusher["Type"] = { schedule: () => undefined }
): HubClient => ({
  connectionId,
  outbox: new Outbox({ write: () => undefined, bufferedAmount: () => 0, isOpen: () => true }, flusher, 1 << 20),
  send: () => undefined,
  close: () => undefined
})
