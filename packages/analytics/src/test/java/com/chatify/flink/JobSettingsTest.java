package com.chatify.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

class JobSettingsTest {
  @Test
  void defaultsMatchTheApiAndTheIssue() {
    JobSettings settings = JobSettings.defaults();
    assertEquals("127.0.0.1:9092", settings.bootstrapServers);
    assertEquals("chat-events", settings.inputTopic);
    assertEquals("chat-analytics", settings.scopeStatsTopic);
    assertEquals("chat-rate-limit-events", settings.rateLimitTopic);
    assertEquals(Duration.ofMinutes(1), settings.window);
    assertEquals(Duration.ofSeconds(5), settings.outOfOrderness);
    assertEquals(30, settings.abuseThreshold);
    assertEquals(Duration.ofSeconds(10), settings.abuseWindow);
    assertEquals(3, settings.partitions);
    assertFalse(settings.createTopics);
  }

  @Test
  void argumentsWinOverTheEnvironmentWhichWinsOverDefaults() {
    Map<String, String> env = Map.of(
        "CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS", "kafka:9092",
        "CHATIFY__MESSAGEBROKER__TOPICNAME", "events-from-env",
        "CHATIFY__ANALYTICS__WINDOW", "5m");
    JobSettings settings = JobSettings.from(new String[] {"--input-topic", "events-from-args", "--abuse-threshold=7"}, env);
    assertEquals("kafka:9092", settings.bootstrapServers);
    assertEquals("events-from-args", settings.inputTopic);
    assertEquals(Duration.ofMinutes(5), settings.window);
    assertEquals(7, settings.abuseThreshold);
    assertEquals(Duration.ofSeconds(10), settings.abuseWindow);
  }

  @Test
  void aBadValueNamesItsArgumentAndVariable() {
    IllegalArgumentException error = assertThrows(IllegalArgumentException.class,
        () -> JobSettings.from(new String[0], Map.of("CHATIFY__ANALYTICS__ABUSETHRESHOLD", "0")));
    assertTrue(error.getMessage().contains("--abuse-threshold / CHATIFY__ANALYTICS__ABUSETHRESHOLD"), error.getMessage());
    error = assertThrows(IllegalArgumentException.class,
        () -> JobSettings.from(new String[] {"--window", "60"}, Map.of()));
    assertTrue(error.getMessage().contains("CHATIFY__ANALYTICS__WINDOW"), error.getMessage());
    error = assertThrows(IllegalArgumentException.class, () -> JobSettings.from(new String[] {"--windw", "1m"}, Map.of()));
    assertTrue(error.getMessage().contains("--windw"), error.getMessage());
    assertThrows(IllegalArgumentException.class, () -> JobSettings.from(new String[] {"--window"}, Map.of()));
    assertThrows(IllegalArgumentException.class,
        () -> JobSettings.from(new String[0], Map.of("CHATIFY__MESSAGEBROKER__CREATETOPICS", "yes")));
  }

  /** Property: every duration in each unit, and its ISO-8601 form, parses to itself (seeded). */
  @Test
  void durationsParse() {
    Random random = new Random(11L);
    for (int i = 0; i < 1_000; i++) {
      long amount = random.nextInt(100_000);
      assertEquals(Duration.ofMillis(amount), JobSettings.parseDuration(amount + "ms"));
      assertEquals(Duration.ofSeconds(amount), JobSettings.parseDuration(amount + "s"));
      assertEquals(Duration.ofMinutes(amount), JobSettings.parseDuration(amount + "m"));
      assertEquals(Duration.ofHours(amount), JobSettings.parseDuration(amount + "h"));
      assertEquals(Duration.ofMillis(amount), JobSettings.parseDuration(Duration.ofMillis(amount).toString()));
    }
    for (String bad : new String[] {"", "5", "-5s", "5 sec", "1.5s", "PT"}) {
      assertThrows(IllegalArgumentException.class, () -> JobSettings.parseDuration(bad), bad);
    }
  }

  @Test
  void withReplacesOnlyWhatItNames() {
    JobSettings settings = JobSettings.defaults().with(Map.of(JobSettings.Key.WINDOW, "250ms"));
    assertEquals(Duration.ofMillis(250), settings.window);
    assertEquals(JobSettings.defaults().toString().replace("window=60000ms", "window=250ms"), settings.toString());
  }
}
