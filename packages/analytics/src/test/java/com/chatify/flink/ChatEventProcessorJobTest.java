package com.chatify.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.flink.api.common.JobID;
import org.apache.flink.api.common.JobStatus;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.RestartStrategyOptions;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Metric;
import org.apache.flink.runtime.jobgraph.SavepointRestoreSettings;
import org.apache.flink.runtime.minicluster.MiniCluster;
import org.apache.flink.runtime.minicluster.MiniClusterConfiguration;
import org.apache.flink.runtime.testutils.InMemoryReporter;
import org.apache.flink.streaming.api.graph.StreamGraph;
import org.apache.flink.streaming.util.TestStreamEnvironment;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The job on a Flink MiniCluster against the real Kafka: windows, abuse detection, malformed
 * records, and exactly-once output across a restart from a checkpoint. Each test has topics of its
 * own; the events are produced before the job starts, to partition 0 of a 3-partition topic, so
 * their order of arrival is the test's and the two empty partitions must go idle for any window to
 * close.
 */
class ChatEventProcessorJobTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(90);
  private static final int PARALLELISM = 2;

  @TempDir static Path checkpoints;
  private static KafkaFixture kafka;
  private static InMemoryReporter metrics;
  private static MiniCluster cluster;
  private final List<JobClient> jobs = new ArrayList<>();

  @BeforeAll
  static void start() throws Exception {
    kafka = KafkaFixture.start();
    metrics = InMemoryReporter.create();
    Configuration config = new Configuration();
    metrics.addToConfiguration(config);
    config.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
    config.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, checkpoints.toUri().toString());
    // a failure must fail the test, not be hidden by a restart
    config.set(RestartStrategyOptions.RESTART_STRATEGY, "none");
    cluster = new MiniCluster(new MiniClusterConfiguration.Builder()
        .setConfiguration(config).setNumTaskManagers(1).setNumSlotsPerTaskManager(PARALLELISM).build());
    cluster.start();
  }

  @AfterEach
  void cancelJobs() throws Exception {
    for (JobClient job : jobs) {
      if (!job.getJobStatus().get().isGloballyTerminalState()) job.cancel().get(30, TimeUnit.SECONDS);
      awaitStatus(job, JobStatus.CANCELED, JobStatus.FAILED, JobStatus.FINISHED);
    }
  }

  @AfterAll
  static void stop() throws Exception {
    if (cluster != null) cluster.close();
    if (kafka != null) kafka.close();
  }

  @Test
  void countsEachScopesWindowWithOutOfOrderEventsInAndLateEventsOut() throws Exception {
    JobSettings settings = kafka.freshTopics("windows", Map.of());
    kafka.produce(settings.inputTopic, Stream.of(
        event(0, "general", "alice", "hello", "10:00:05.000"),
        event(0, "general", "bob", "hi", "10:00:30.000"),
        event(1, "alice~bob", "alice", "psst", "10:00:10.000"),
        event(0, "general", "alice", "😀", "10:00:59.999"),
        // out of order, within the 5 s bound of the newest (10:00:59.999)
        event(0, "general", "carol", "out of order", "10:00:20.000"),
        event(0, "general", "dave", "next", "10:01:03.000"))
        .map(KafkaFixture::json).collect(Collectors.toList()));
    JobClient job = submit(settings, null);
    // Watermarks are emitted periodically: once a checkpoint has covered these records, the
    // watermark has moved to 10:01:03 minus the bound, with no window closed yet.
    awaitInputCommitted(settings);
    kafka.produce(settings.inputTopic, List.of(
        // 5 s behind the newest: inside the bound, so its window has not closed and it counts
        KafkaFixture.json(event(0, "general", "erin", "just in time", "10:00:58.000")),
        // moves the watermark past 10:01:00: [10:00, 10:01) closes
        KafkaFixture.json(event(0, "general", "alice", "tick", "10:01:10.000"))));
    KafkaFixture.readUntil(settings.scopeStatsTopic, "read_uncommitted", TIMEOUT, atLeast(2));
    kafka.produce(settings.inputTopic, List.of(
        // late: its window has closed; counted as late, in no window
        KafkaFixture.json(event(0, "general", "frank", "too late", "10:00:40.000")),
        // closes [10:01, 10:02); its own window stays open
        KafkaFixture.json(event(0, "general", "bob", "flush", "10:02:30.000"))));

    awaitInputCommitted(settings);
    List<ConsumerRecord<String, String>> results =
        KafkaFixture.readUntil(settings.scopeStatsTopic, "read_committed", TIMEOUT, atLeast(3));
    assertEquals(List.of(
            "0:general {\"scopeType\":0,\"scopeId\":\"general\",\"windowStartUtc\":\"2026-11-30T10:00:00.000Z\","
                + "\"windowEndUtc\":\"2026-11-30T10:01:00.000Z\",\"messageCount\":5,\"distinctSenders\":4,"
                + "\"characterCount\":33,\"firstEventAtUtc\":\"2026-11-30T10:00:05.000Z\","
                + "\"lastEventAtUtc\":\"2026-11-30T10:00:59.999Z\"}",
            "0:general {\"scopeType\":0,\"scopeId\":\"general\",\"windowStartUtc\":\"2026-11-30T10:01:00.000Z\","
                + "\"windowEndUtc\":\"2026-11-30T10:02:00.000Z\",\"messageCount\":2,\"distinctSenders\":2,"
                + "\"characterCount\":8,\"firstEventAtUtc\":\"2026-11-30T10:01:03.000Z\","
                + "\"lastEventAtUtc\":\"2026-11-30T10:01:10.000Z\"}",
            "1:alice~bob {\"scopeType\":1,\"scopeId\":\"alice~bob\",\"windowStartUtc\":\"2026-11-30T10:00:00.000Z\","
                + "\"windowEndUtc\":\"2026-11-30T10:01:00.000Z\",\"messageCount\":1,\"distinctSenders\":1,"
                + "\"characterCount\":4,\"firstEventAtUtc\":\"2026-11-30T10:00:10.000Z\","
                + "\"lastEventAtUtc\":\"2026-11-30T10:00:10.000Z\"}"),
        sorted(results));
    assertEquals(1, counter(job.getJobID(), ScopeWindowAggregate.CountLate.LATE_COUNTER));
    assertEquals(JobStatus.RUNNING, job.getJobStatus().get());
  }

  @Test
  void aBurstGivesOneAbuseEventAndANewOneOnlyAfterDroppingBelowTheThreshold() throws Exception {
    JobSettings settings = kafka.freshTopics("burst",
        Map.of(JobSettings.Key.ABUSE_THRESHOLD, "5", JobSettings.Key.ABUSE_WINDOW, "10s"));
    List<ChatEvent> events = new ArrayList<>();
    // alice: 8 messages a second apart in general, two of them out of order: over 5 in 10 s from the 6th on
    for (int second : new int[] {0, 1, 2, 4, 3, 5, 7, 6}) {
      events.add(event(0, "general", "alice", "spam " + second, String.format("10:00:%02d.000", second)));
    }
    // bob keeps to 5 in 10 s; alice's 3 messages in another scope are her own count there
    for (int second = 0; second < 5; second++) events.add(event(0, "general", "bob", "ok", String.format("10:00:%02d.500", second)));
    for (int second = 0; second < 3; second++) events.add(event(0, "random", "alice", "x", String.format("10:00:%02d.250", second)));
    // alice back under the threshold (1 and 2 in the window), then a second burst of 6
    events.add(event(0, "general", "alice", "calm", "10:00:30.000"));
    events.add(event(0, "general", "alice", "calm", "10:00:31.000"));
    for (int second = 40; second <= 45; second++) events.add(event(0, "general", "alice", "again", String.format("10:00:%02d.000", second)));
    events.add(event(0, "general", "bob", "flush", "10:01:30.000"));
    kafka.produce(settings.inputTopic, events.stream().map(KafkaFixture::json).collect(Collectors.toList()));
    submit(settings, null);

    awaitInputCommitted(settings);
    List<ConsumerRecord<String, String>> results =
        KafkaFixture.readUntil(settings.rateLimitTopic, "read_committed", TIMEOUT, atLeast(2));
    assertEquals(List.of(
            "alice {\"senderId\":\"alice\",\"scopeType\":0,\"scopeId\":\"general\",\"messageCount\":6,\"threshold\":5,"
                + "\"windowStartUtc\":\"2026-11-30T09:59:55.001Z\",\"windowEndUtc\":\"2026-11-30T10:00:05.001Z\"}",
            "alice {\"senderId\":\"alice\",\"scopeType\":0,\"scopeId\":\"general\",\"messageCount\":6,\"threshold\":5,"
                + "\"windowStartUtc\":\"2026-11-30T10:00:35.001Z\",\"windowEndUtc\":\"2026-11-30T10:00:45.001Z\"}"),
        sorted(results).stream().map(ChatEventProcessorJobTest::withoutDetectedAt).collect(Collectors.toList()));
    for (ConsumerRecord<String, String> record : results) {
      // detectedAtUtc: the wall clock of the detection, so just now
      String detectedAt = record.value().replaceAll(".*\"detectedAtUtc\":\"([^\"]+)\".*", "$1");
      Duration age = Duration.between(Instant.parse(detectedAt), Instant.now());
      assertEquals(true, !age.isNegative() && age.compareTo(Duration.ofMinutes(5)) < 0, detectedAt);
    }
  }

  @Test
  void aMalformedRecordIsCountedAndSkipped() throws Exception {
    JobSettings settings = kafka.freshTopics("malformed", Map.of());
    List<byte[]> values = new ArrayList<>();
    values.add(KafkaFixture.json(event(0, "general", "alice", "before", "10:00:01.000")));
    values.add("not json".getBytes(StandardCharsets.UTF_8));
    values.add(KafkaFixture.json(event(0, "general", "bob", "x", "10:00:02.000")).clone());
    values.set(2, new String(values.get(2), StandardCharsets.UTF_8).replace("\"scopeType\":0", "\"scopeType\":2")
        .getBytes(StandardCharsets.UTF_8));
    values.add(null);
    values.add("{\"messageId\":\"0193f1c2-7a4b-7c3d-9e8f-0a1b2c3d4e5f\",\"scopeType\":0}".getBytes(StandardCharsets.UTF_8));
    values.add(new byte[] {(byte) 0xff, (byte) 0xfe, 0x00});
    values.add(KafkaFixture.json(event(0, "general", "carol", "after", "10:00:03.000")));
    values.add(KafkaFixture.json(event(0, "general", "bob", "flush", "10:01:30.000")));
    kafka.produce(settings.inputTopic, values);
    JobClient job = submit(settings, null);

    awaitInputCommitted(settings);
    List<ConsumerRecord<String, String>> results =
        KafkaFixture.readUntil(settings.scopeStatsTopic, "read_committed", TIMEOUT, atLeast(1));
    assertEquals(List.of(
            "0:general {\"scopeType\":0,\"scopeId\":\"general\",\"windowStartUtc\":\"2026-11-30T10:00:00.000Z\","
                + "\"windowEndUtc\":\"2026-11-30T10:01:00.000Z\",\"messageCount\":2,\"distinctSenders\":2,"
                + "\"characterCount\":11,\"firstEventAtUtc\":\"2026-11-30T10:00:01.000Z\","
                + "\"lastEventAtUtc\":\"2026-11-30T10:00:03.000Z\"}"),
        sorted(results));
    assertEquals(5, counter(job.getJobID(), SplitMalformed.MALFORMED_COUNTER));
    // never failed (the cluster has no restart strategy: a failure would show here)
    assertEquals(JobStatus.RUNNING, job.getJobStatus().get());
  }

  @Test
  void aRestartFromACheckpointWritesNoDuplicateWindows() throws Exception {
    // checkpoints only when the test asks for them
    JobSettings settings = kafka.freshTopics("restart", Map.of(JobSettings.Key.CHECKPOINT_INTERVAL, "1h"));
    kafka.produce(settings.inputTopic, List.of(
        KafkaFixture.json(event(0, "general", "alice", "one", "10:00:01.000")),
        KafkaFixture.json(event(0, "general", "bob", "two", "10:00:02.000")),
        KafkaFixture.json(event(0, "general", "alice", "closes the first window", "10:01:10.000"))));
    JobClient first = submit(settings, null);
    String firstWindow = "2026-11-30T10:00:00.000Z";
    String secondWindow = "2026-11-30T10:01:00.000Z";
    // the first window is written (in an open transaction) before the checkpoint is taken
    KafkaFixture.readUntil(settings.scopeStatsTopic, "read_uncommitted", TIMEOUT, hasWindows(firstWindow));
    String checkpoint = cluster.triggerCheckpoint(first.getJobID()).get(60, TimeUnit.SECONDS);
    KafkaFixture.readUntil(settings.scopeStatsTopic, "read_committed", TIMEOUT, hasWindows(firstWindow));

    // after the checkpoint: the second window is written, then the job dies before the next one
    kafka.produce(settings.inputTopic, List.of(
        KafkaFixture.json(event(0, "general", "carol", "three", "10:01:20.000")),
        KafkaFixture.json(event(0, "general", "bob", "closes the second window", "10:02:30.000"))));
    KafkaFixture.readUntil(settings.scopeStatsTopic, "read_uncommitted", TIMEOUT, hasWindows(firstWindow, secondWindow));
    first.cancel().get(30, TimeUnit.SECONDS);
    awaitStatus(first, JobStatus.CANCELED);

    // the same job again from the checkpoint: it reads the second part again and writes its window again
    JobClient second = submit(settings, checkpoint);
    KafkaFixture.readUntil(settings.scopeStatsTopic, "read_uncommitted", TIMEOUT,
        records -> windowStarts(records).stream().filter(secondWindow::equals).count() >= 2);
    cluster.triggerCheckpoint(second.getJobID()).get(60, TimeUnit.SECONDS);
    List<ConsumerRecord<String, String>> committed =
        KafkaFixture.readUntil(settings.scopeStatsTopic, "read_committed", TIMEOUT, hasWindows(firstWindow, secondWindow));
    assertEquals(List.of(firstWindow, secondWindow), windowStarts(committed), KafkaFixture.values(committed).toString());
  }

  private JobClient submit(JobSettings settings, String restoreFrom) throws Exception {
    TestStreamEnvironment env = new TestStreamEnvironment(cluster, new Configuration(), PARALLELISM, List.of(), List.of());
    ChatEventProcessorJob.build(env, settings);
    StreamGraph graph = env.getStreamGraph();
    if (restoreFrom != null) graph.setSavepointRestoreSettings(SavepointRestoreSettings.forPath(restoreFrom, false));
    JobClient job = env.executeAsync(graph);
    jobs.add(job);
    return job;
  }

  private static void awaitStatus(JobClient job, JobStatus... wanted) throws Exception {
    List<JobStatus> accepted = List.of(wanted);
    long deadline = System.nanoTime() + TIMEOUT.toNanos();
    JobStatus status;
    while (!accepted.contains(status = job.getJobStatus().get())) {
      if (System.nanoTime() > deadline) throw new AssertionError("job " + job.getJobID() + " is " + status + ", wanted " + accepted);
      Thread.sleep(50);
    }
  }

  /**
   * Waits until the job's consumer group has committed every input record: the source commits on
   * a completed checkpoint, so everything the input caused has been written in a transaction that
   * checkpoint commits.
   */
  private static void awaitInputCommitted(JobSettings settings) throws Exception {
    long deadline = System.nanoTime() + TIMEOUT.toNanos();
    while (true) {
      Map<TopicPartition, OffsetAndMetadata> committed =
          kafka.admin.listConsumerGroupOffsets(settings.consumerGroup).partitionsToOffsetAndMetadata().get();
      TopicPartition first = new TopicPartition(settings.inputTopic, 0);
      long end = kafka.admin.listOffsets(Map.of(first, OffsetSpec.latest())).partitionResult(first).get().offset();
      OffsetAndMetadata at = committed.get(first);
      if (at != null && at.offset() >= end) return;
      if (System.nanoTime() > deadline) throw new AssertionError("the job did not commit its input: " + committed + ", end " + end);
      Thread.sleep(100);
    }
  }

  private static long counter(JobID job, String name) {
    long total = 0;
    for (Map.Entry<String, Metric> metric : metrics.findMetrics(job, name).entrySet()) {
      if (metric.getKey().endsWith("." + name)) total += ((Counter) metric.getValue()).getCount();
    }
    return total;
  }

  private static Predicate<List<ConsumerRecord<String, String>>> atLeast(int count) {
    return records -> records.size() >= count;
  }

  private static Predicate<List<ConsumerRecord<String, String>>> hasWindows(String... starts) {
    return records -> windowStarts(records).containsAll(List.of(starts));
  }

  private static List<String> windowStarts(List<ConsumerRecord<String, String>> records) {
    return records.stream()
        .map(r -> r.value().replaceAll(".*\"windowStartUtc\":\"([^\"]+)\".*", "$1"))
        .sorted()
        .collect(Collectors.toList());
  }

  private static List<String> sorted(List<ConsumerRecord<String, String>> records) {
    return KafkaFixture.values(records).stream().sorted().collect(Collectors.toList());
  }

  private static String withoutDetectedAt(String value) {
    return value.replaceAll(",\"detectedAtUtc\":\"[^\"]+\"", "");
  }

  private static ChatEvent event(int scopeType, String scopeId, String sender, String text, String timeOfDay) {
    return new ChatEvent(UUID.randomUUID().toString(), scopeType, scopeId, sender, text,
        Instant.parse("2026-11-30T" + timeOfDay + "Z").toEpochMilli(), "test-pod");
  }
}
