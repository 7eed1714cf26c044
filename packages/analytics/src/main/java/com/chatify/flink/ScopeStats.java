package com.chatify.flink;

/** One scope's statistics in one tumbling window (a chat-analytics record). A Flink POJO. */
public class ScopeStats {
  public int scopeType;
  public String scopeId;
  public long windowStartMillis;
  /** Exclusive. */
  public long windowEndMillis;
  public long messageCount;
  public int distinctSenders;
  /** Sum of the texts' lengths in UTF-16 code units (JavaScript's text.length). */
  public long characterCount;
  public long firstEventAtMillis;
  public long lastEventAtMillis;

  public ScopeStats() {}

  public String scopeKey() {
    return ChatEvent.scopeKey(scopeType, scopeId);
  }
}
