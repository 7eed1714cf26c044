package com.chatify.flink;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.regex.Pattern;

/**
 * Reads the JSON of a chat-events record exactly as the API writes it (packages/domain ChatEvent):
 * {@code {"messageId","scopeType":0|1,"scopeId","senderId","text","createdAtUtc","originPodId"}}.
 * Every field is required with the type the API's schema wants; extra fields are ignored, as there.
 */
public final class ChatEventJson {
  private static final ObjectMapper MAPPER = new ObjectMapper();
  // Schema.UUID's pattern in the API
  private static final Pattern UUID =
      Pattern.compile("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$");

  private ChatEventJson() {}

  /** Why a record is not a chat event; the message names the field. */
  public static final class MalformedChatEventException extends Exception {
    public MalformedChatEventException(String message) {
      super(message);
    }
  }

  public static ChatEvent parse(String json) throws MalformedChatEventException {
    JsonNode root;
    try {
      root = MAPPER.readTree(json);
    } catch (JsonProcessingException e) {
      throw new MalformedChatEventException("not JSON: " + e.getOriginalMessage());
    }
    if (root == null || !root.isObject()) {
      throw new MalformedChatEventException("not a JSON object");
    }
    String messageId = string(root, "messageId");
    if (!UUID.matcher(messageId).matches()) {
      throw new MalformedChatEventException("messageId: not a UUID");
    }
    return new ChatEvent(
        messageId,
        scopeType(root),
        string(root, "scopeId"),
        string(root, "senderId"),
        string(root, "text"),
        instant(root, "createdAtUtc").toEpochMilli(),
        string(root, "originPodId"));
  }

  private static String string(JsonNode root, String field) throws MalformedChatEventException {
    JsonNode node = root.get(field);
    if (node == null || !node.isTextual()) {
      throw new MalformedChatEventException(field + ": a string is required");
    }
    return node.textValue();
  }

  private static int scopeType(JsonNode root) throws MalformedChatEventException {
    JsonNode node = root.get("scopeType");
    // a number, as the API writes it; 0.0 is the same JSON number as 0 for the API's JSON.parse
    if (node != null && node.isNumber()) {
      double value = node.doubleValue();
      if (value == 0 || value == 1) return (int) value;
    }
    throw new MalformedChatEventException("scopeType: must be 0 (channel) or 1 (direct message)");
  }

  private static Instant instant(JsonNode root, String field) throws MalformedChatEventException {
    String text = string(root, field);
    try {
      // the API writes Date.toISOString() ("2026-11-30T10:00:00.000Z"); any ISO-8601 offset is read
      return OffsetDateTime.parse(text, DateTimeFormatter.ISO_OFFSET_DATE_TIME).toInstant();
    } catch (DateTimeParseException e) {
      throw new MalformedChatEventException(field + ": not an ISO-8601 date-time");
    }
  }
}
