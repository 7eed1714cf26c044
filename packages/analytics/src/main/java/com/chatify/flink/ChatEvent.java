package com.chatify.flink;

import java.util.Objects;

/**
 * A chat message as the API produces it to {@code chat-events} (packages/domain/src/ChatEvent.ts).
 * A Flink POJO (public fields, no-argument constructor) so Flink serializes it without Kryo.
 */
public class ChatEvent {
  public String messageId;
  /** 0 = Channel, 1 = DirectMessage. */
  public int scopeType;
  public String scopeId;
  public String senderId;
  public String text;
  /** createdAtUtc in epoch milliseconds: the event time. */
  public long createdAtMillis;
  public String originPodId;

  public ChatEvent() {}

  public ChatEvent(
      String messageId,
      int scopeType,
      String scopeId,
      String senderId,
      String text,
      long createdAtMillis,
      String originPodId) {
    this.messageId = messageId;
    this.scopeType = scopeType;
    this.scopeId = scopeId;
    this.senderId = senderId;
    this.text = text;
    this.createdAtMillis = createdAtMillis;
    this.originPodId = originPodId;
  }

  /** The broker key of the scope, {@code {scopeType}:{scopeId}}, as the API keys chat-events. */
  public String scopeKey() {
    return scopeKey(scopeType, scopeId);
  }

  public static String scopeKey(int scopeType, String scopeId) {
    return scopeType + ":" + scopeId;
  }

  @Override
  public boolean equals(Object other) {
    if (!(other instanceof ChatEvent)) return false;
    ChatEvent that = (ChatEvent) other;
    return scopeType == that.scopeType
        && createdAtMillis == that.createdAtMillis
        && Objects.equals(messageId, that.messageId)
        && Objects.equals(scopeId, that.scopeId)
        && Objects.equals(senderId, that.senderId)
        && Objects.equals(text, that.text)
        && Objects.equals(originPodId, that.originPodId);
  }

  @Override
  public int hashCode() {
    return Objects.hash(messageId, scopeType, scopeId, senderId, text, createdAtMillis, originPodId);
  }

  @Override
  public String toString() {
    return "ChatEvent{" + messageId + " " + scopeKey() + " from " + senderId + " at " + createdAtMillis + "}";
  }
}
