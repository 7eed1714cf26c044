package com.chatify.flink;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;

/**
 * The JSON of the job's two output topics (the wire contract with the API, camelCase, UTF-8).
 * Times are written like JavaScript's Date.toISOString(): UTC, always with milliseconds.
 */
public final class AnalyticsJson {
  private static final ObjectMapper MAPPER = new ObjectMapper();
  private static final DateTimeFormatter ISO_MILLIS =
      DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);

  private AnalyticsJson() {}

  public static String isoMillis(long epochMillis) {
    return ISO_MILLIS.format(Instant.ofEpochMilli(epochMillis));
  }

  /** A chat-analytics value: one scope's statistics in one tumbling window. */
  public static byte[] scopeStats(ScopeStats stats) {
    ObjectNode node = MAPPER.createObjectNode();
    node.put("scopeType", stats.scopeType);
    node.put("scopeId", stats.scopeId);
    node.put("windowStartUtc", isoMillis(stats.windowStartMillis));
    node.put("windowEndUtc", isoMillis(stats.windowEndMillis));
    node.put("messageCount", stats.messageCount);
    node.put("distinctSenders", stats.distinctSenders);
    node.put("characterCount", stats.characterCount);
    node.put("firstEventAtUtc", isoMillis(stats.firstEventAtMillis));
    node.put("lastEventAtUtc", isoMillis(stats.lastEventAtMillis));
    return write(node);
  }

  /** A chat-rate-limit-events value: one burst of one sender in one scope. */
  public static byte[] rateLimitViolation(RateLimitViolation violation) {
    ObjectNode node = MAPPER.createObjectNode();
    node.put("senderId", violation.senderId);
    node.put("scopeType", violation.scopeType);
    node.put("scopeId", violation.scopeId);
    node.put("messageCount", violation.messageCount);
    node.put("threshold", violation.threshold);
    node.put("windowStartUtc", isoMillis(violation.windowStartMillis));
    node.put("windowEndUtc", isoMillis(violation.windowEndMillis));
    node.put("detectedAtUtc", isoMillis(violation.detectedAtMillis));
    return write(node);
  }

  public static byte[] utf8(String text) {
    return text.getBytes(StandardCharsets.UTF_8);
  }

  private static byte[] write(ObjectNode node) {
    try {
      return MAPPER.writeValueAsBytes(node);
    } catch (JsonProcessingException e) {
      // a tree of strings and numbers always serializes
      throw new IllegalStateException(e);
    }
  }
}
