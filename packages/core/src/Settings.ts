import { Context, Duration, Layer } from "effect"

export const HISTORY_WRITER_GROUP = "chatify-chat-history-writer"

/** Tunables of the use cases and consumers; the server fills them from configuration. */
export interface CoreSettingsShape {
  /** Events a live subscriber may have unread before it is ended as lagged (it then resumes). */
  readonly subscriberBufferSize: number
  /** How long a resuming subscriber waits for the history writer to catch up with the log. */
  readonly historyCatchUpTimeout: Duration.Duration
  readonly broadcastGroupPrefix: string
  readonly historyWriterGroup: string
  readonly historyBatchSize: number
  /**
   * After a batch smaller than historyBatchSize, how long the writer lets pass before it asks
   * again: longer windows store more messages per transaction (and per written page).
   */
  readonly historyBatchWindow: Duration.Duration
  /**
   * The longest the writer waits under load: after a batch of n records it waits n × 20 ms, at least
   * historyBatchWindow and at most this. Above ~50 messages/s the batches grow up to this window,
   * so a busy store gets few large writes; below, a message is stored within historyBatchWindow.
   */
  readonly historyBatchMaxWindow: Duration.Duration
  /**
   * How long a running consumer retries one failing step (a history append, a dead-letter, an offset
   * commit) before it gives up and is restarted whole: a new log consumer, from the committed offsets.
   */
  readonly consumerRetryBudget: Duration.Duration
}

export class CoreSettings extends Context.Tag("chatify/CoreSettings")<CoreSettings, CoreSettingsShape>() {
  static readonly defaults: CoreSettingsShape = {
    subscriberBufferSize: 8192,
    historyCatchUpTimeout: Duration.seconds(10),
    broadcastGroupPrefix: "chatify-broadcast",
    historyWriterGroup: HISTORY_WRITER_GROUP,
    historyBatchSize: 500,
    historyBatchWindow: Duration.millis(200),
    historyBatchMaxWindow: Duration.millis(200),
    consumerRetryBudget: Duration.seconds(10)
  }
  static readonly layer = (overrides: Partial<CoreSettingsShape> = {}) =>
    Layer.succeed(CoreSettings, { ...CoreSettings.defaults, ...overrides })
}
