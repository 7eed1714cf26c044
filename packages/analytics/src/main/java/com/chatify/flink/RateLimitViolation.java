package com.chatify.flink;

/** A sender's burst over the threshold in one scope (a chat-rate-limit-events record). A Flink POJO. */
public class RateLimitViolation {
  public String senderId;
  public int scopeType;
  public String scopeId;
  /** Messages in the sliding window when the threshold was crossed. */
  public int messageCount;
  public int threshold;
  public long windowStartMillis;
  /** Exclusive: the window holds the messages with windowStart <= createdAt < windowEnd. */
  public long windowEndMillis;
  /** Wall-clock time of the detection. */
  public long detectedAtMillis;

  public RateLimitViolation() {}
}
