package com.chatify.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.List;
import java.util.Random;
import java.util.UUID;
import org.junit.jupiter.api.Test;

/** The chat-events codec and the output JSON, against the wire contract. */
class ChatEventJsonTest {
  private static final ObjectMapper MAPPER = new ObjectMapper();

  @Test
  void readsTheRecordExactlyAsTheApiWritesIt() throws Exception {
    // the text of packages/domain encodeChatEventJson for one event
    String api = "{\"messageId\":\"0193f1c2-7a4b-7c3d-9e8f-0a1b2c3d4e5f\",\"scopeType\":1,"
        + "\"scopeId\":\"alice~bob\",\"senderId\":\"alice\",\"text\":\"h\\u00e9\\\"llo \\ud83d\\ude00\","
        + "\"createdAtUtc\":\"2026-11-30T10:00:05.123Z\",\"originPodId\":\"chat-api-0\"}";
    ChatEvent event = ChatEventJson.parse(api);
    assertEquals(
        new ChatEvent("0193f1c2-7a4b-7c3d-9e8f-0a1b2c3d4e5f", 1, "alice~bob", "alice", "hé\"llo 😀",
            Instant.parse("2026-11-30T10:00:05.123Z").toEpochMilli(), "chat-api-0"),
        event);
    assertEquals("1:alice~bob", event.scopeKey());
    // JavaScript's "hé\"llo 😀".length: the emoji is two UTF-16 code units
    assertEquals(9, event.text.length());
  }

  /** Property: any event the API can write reads back as the same event (seeded, 2,000 cases). */
  @Test
  void everyEncodableEventRoundTrips() throws Exception {
    Random random = new Random(20261130L);
    for (int i = 0; i < 2_000; i++) {
      ChatEvent event = new ChatEvent(UUID.randomUUID().toString(), random.nextInt(2), text(random),
          text(random), text(random), random.nextLong() % 253_402_300_799_999L, text(random));
      event.createdAtMillis = Math.abs(event.createdAtMillis);
      assertEquals(event, ChatEventJson.parse(MAPPER.writeValueAsString(encode(event))), "case " + i);
    }
  }

  @Test
  void refusesWhatTheApiWouldNotHaveWritten() {
    ObjectNode valid = encode(new ChatEvent(UUID.randomUUID().toString(), 0, "general", "alice", "hi", 0L, "pod"));
    List<String> fields = List.of("messageId", "scopeType", "scopeId", "senderId", "text", "createdAtUtc", "originPodId");
    for (String field : fields) {
      ObjectNode missing = valid.deepCopy();
      missing.remove(field);
      assertMalformed(missing.toString(), field);
      ObjectNode wrongType = valid.deepCopy();
      wrongType.put(field, true);
      assertMalformed(wrongType.toString(), field);
    }
    assertMalformed(valid.deepCopy().put("scopeType", 2).toString(), "scopeType");
    assertMalformed(valid.deepCopy().put("scopeType", "0").toString(), "scopeType");
    assertMalformed(valid.deepCopy().put("messageId", "not-a-uuid").toString(), "messageId");
    assertMalformed(valid.deepCopy().put("createdAtUtc", "yesterday").toString(), "createdAtUtc");
    assertMalformed("not json", "not JSON");
    assertMalformed("[1,2]", "not a JSON object");
    assertMalformed("", "not a JSON object");
    assertMalformed("{\"messageId\":", "not JSON");
  }

  @Test
  void writesTheContractsJson() throws Exception {
    ScopeStats stats = new ScopeStats();
    stats.scopeType = 0;
    stats.scopeId = "gen\"eral";
    stats.windowStartMillis = Instant.parse("2026-11-30T10:00:00Z").toEpochMilli();
    stats.windowEndMillis = Instant.parse("2026-11-30T10:01:00Z").toEpochMilli();
    stats.messageCount = 12;
    stats.distinctSenders = 3;
    stats.characterCount = 345;
    stats.firstEventAtMillis = Instant.parse("2026-11-30T10:00:01.5Z").toEpochMilli();
    stats.lastEventAtMillis = Instant.parse("2026-11-30T10:00:59.999Z").toEpochMilli();
    assertEquals(
        "{\"scopeType\":0,\"scopeId\":\"gen\\\"eral\",\"windowStartUtc\":\"2026-11-30T10:00:00.000Z\","
            + "\"windowEndUtc\":\"2026-11-30T10:01:00.000Z\",\"messageCount\":12,\"distinctSenders\":3,"
            + "\"characterCount\":345,\"firstEventAtUtc\":\"2026-11-30T10:00:01.500Z\","
            + "\"lastEventAtUtc\":\"2026-11-30T10:00:59.999Z\"}",
        new String(AnalyticsJson.scopeStats(stats), StandardCharsets.UTF_8));

    RateLimitViolation violation = new RateLimitViolation();
    violation.senderId = "alice";
    violation.scopeType = 1;
    violation.scopeId = "alice~bob";
    violation.messageCount = 31;
    violation.threshold = 30;
    violation.windowStartMillis = Instant.parse("2026-11-30T10:00:00.001Z").toEpochMilli();
    violation.windowEndMillis = Instant.parse("2026-11-30T10:00:10.001Z").toEpochMilli();
    violation.detectedAtMillis = Instant.parse("2026-11-30T10:00:15Z").toEpochMilli();
    assertEquals(
        "{\"senderId\":\"alice\",\"scopeType\":1,\"scopeId\":\"alice~bob\",\"messageCount\":31,\"threshold\":30,"
            + "\"windowStartUtc\":\"2026-11-30T10:00:00.001Z\",\"windowEndUtc\":\"2026-11-30T10:00:10.001Z\","
            + "\"detectedAtUtc\":\"2026-11-30T10:00:15.000Z\"}",
        new String(AnalyticsJson.rateLimitViolation(violation), StandardCharsets.UTF_8));
  }

  /** Property: the times read like JavaScript's toISOString() and parse back to the same instant. */
  @Test
  void timesAreWrittenLikeToIsoString() {
    Random random = new Random(7L);
    for (int i = 0; i < 2_000; i++) {
      long millis = Math.floorMod(random.nextLong(), 253_402_300_799_999L);
      String text = AnalyticsJson.isoMillis(millis);
      assertTrue(text.matches("\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z"), text);
      assertEquals(millis, Instant.parse(text).toEpochMilli());
    }
  }

  private static void assertMalformed(String json, String expectedInMessage) {
    ChatEventJson.MalformedChatEventException error =
        assertThrows(ChatEventJson.MalformedChatEventException.class, () -> ChatEventJson.parse(json), json);
    assertTrue(error.getMessage().contains(expectedInMessage), error.getMessage() + " should name " + expectedInMessage);
  }

  /** What the API writes: the fields in its order, createdAtUtc as toISOString(). */
  static ObjectNode encode(ChatEvent event) {
    ObjectNode node = MAPPER.createObjectNode();
    node.put("messageId", event.messageId);
    node.put("scopeType", event.scopeType);
    node.put("scopeId", event.scopeId);
    node.put("senderId", event.senderId);
    node.put("text", event.text);
    node.put("createdAtUtc", AnalyticsJson.isoMillis(event.createdAtMillis));
    node.put("originPodId", event.originPodId);
    return node;
  }

  /** Random text with what JSON must escape: quotes, backslashes, control characters, surrogate pairs. */
  private static String text(Random random) {
    String[] pieces = {"a", "Z", "\"", "\\", "\n", "\u0000", "é", "😀", "~", ":", " ", "\u2028", "日本"};
    StringBuilder text = new StringBuilder();
    int length = random.nextInt(12);
    for (int i = 0; i < length; i++) text.append(pieces[random.nextInt(pieces.length)]);
    return text.toString();
  }
}
