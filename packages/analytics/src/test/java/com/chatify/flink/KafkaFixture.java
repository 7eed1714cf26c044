package com.chatify.flink;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * The real Kafka of scripts/services/kafka.sh (started here when it is not running, like the
 * TypeScript tests do), with topics of their own for each test so tests never see each other's
 * records.
 */
final class KafkaFixture implements AutoCloseable {
  static final String BOOTSTRAP = "127.0.0.1:" + System.getenv().getOrDefault("CHATIFY_KAFKA_PORT", "9092");

  final Admin admin;
  private final KafkaProducer<byte[], byte[]> producer;
  private final List<String> createdTopics = new ArrayList<>();

  private KafkaFixture() {
    Properties admin = new Properties();
    admin.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
    this.admin = Admin.create(admin);
    Properties producer = new Properties();
    producer.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
    producer.put(ProducerConfig.ACKS_CONFIG, "all");
    // one request at a time: a retried first batch (a fresh topic's leader still moving) cannot
    // leave later ones out of sequence, so the input arrives whole and in the order produced
    producer.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 1);
    producer.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    producer.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    this.producer = new KafkaProducer<>(producer);
  }

  /** Starts the project's Kafka (idempotent: a running one is reused and left running). */
  static KafkaFixture start() throws IOException, InterruptedException {
    Path script = repositoryRoot().resolve("scripts/services/kafka.sh");
    Process process = new ProcessBuilder("bash", script.toString(), "start").inheritIO().start();
    if (!process.waitFor(10, TimeUnit.MINUTES) || process.exitValue() != 0) {
      process.destroyForcibly();
      throw new IllegalStateException(script + " start failed");
    }
    return new KafkaFixture();
  }

  private static Path repositoryRoot() {
    Path dir = Path.of("").toAbsolutePath();
    while (dir != null && !Files.exists(dir.resolve("scripts/services/kafka.sh"))) dir = dir.getParent();
    if (dir == null) throw new IllegalStateException("scripts/services/kafka.sh not found above " + Path.of("").toAbsolutePath());
    return dir;
  }

  /** Fresh topics (input with 3 partitions, outputs) and settings that point the job at them. */
  JobSettings freshTopics(String test, Map<JobSettings.Key, String> overrides) throws Exception {
    String run = test + "-" + UUID.randomUUID().toString().substring(0, 8);
    String input = "analytics-test-" + run + "-chat-events";
    String stats = "analytics-test-" + run + "-chat-analytics";
    String violations = "analytics-test-" + run + "-chat-rate-limit-events";
    admin.createTopics(List.of(new NewTopic(input, 3, (short) 1), new NewTopic(stats, 2, (short) 1),
        new NewTopic(violations, 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
    createdTopics.addAll(List.of(input, stats, violations));
    awaitLeaders(List.of(input, stats, violations));
    Map<JobSettings.Key, String> settings = new java.util.HashMap<>(Map.of(
        JobSettings.Key.BOOTSTRAP_SERVERS, BOOTSTRAP,
        JobSettings.Key.INPUT_TOPIC, input,
        JobSettings.Key.SCOPE_STATS_TOPIC, stats,
        JobSettings.Key.RATE_LIMIT_TOPIC, violations,
        JobSettings.Key.CONSUMER_GROUP, "analytics-test-" + run,
        JobSettings.Key.TRANSACTIONAL_ID_PREFIX, "analytics-test-" + run,
        JobSettings.Key.IDLE_TIMEOUT, "1s",
        JobSettings.Key.CHECKPOINT_INTERVAL, "1s"));
    settings.putAll(overrides);
    return JobSettings.defaults().with(settings);
  }

  /** Waits (30 s at most) until every partition of the topics has a leader: produces go nowhere before. */
  private void awaitLeaders(List<String> topics) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (true) {
      boolean led = admin.describeTopics(topics).allTopicNames().get(30, TimeUnit.SECONDS).values().stream()
          .allMatch(description -> description.partitions().stream().allMatch(partition -> partition.leader() != null));
      if (led) return;
      if (System.nanoTime() > deadline) throw new IllegalStateException("no leader for " + topics + " within 30 s");
      Thread.sleep(100);
    }
  }

  /**
   * Produces to partition 0 in this order (one partition: the order of arrival is the test's), and
   * fails unless every record was acknowledged.
   */
  void produce(String topic, List<byte[]> values) throws ExecutionException, InterruptedException {
    List<java.util.concurrent.Future<org.apache.kafka.clients.producer.RecordMetadata>> sent = new ArrayList<>();
    for (byte[] value : values) sent.add(producer.send(new ProducerRecord<>(topic, 0, null, value)));
    producer.flush();
    for (java.util.concurrent.Future<org.apache.kafka.clients.producer.RecordMetadata> future : sent) future.get();
  }

  static byte[] json(ChatEvent event) {
    return ChatEventJsonTest.encode(event).toString().getBytes(StandardCharsets.UTF_8);
  }

  /**
   * Reads the topic from the start until {@code done} holds for what was read (bounded by the
   * timeout), then on to the end of the log, and returns every record.
   */
  static List<ConsumerRecord<String, String>> readUntil(
      String topic, String isolation, Duration timeout, Predicate<List<ConsumerRecord<String, String>>> done) {
    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
    props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
      List<TopicPartition> partitions = consumer.partitionsFor(topic).stream()
          .map(p -> new TopicPartition(topic, p.partition())).collect(Collectors.toList());
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      List<ConsumerRecord<String, String>> records = new ArrayList<>();
      long deadline = System.nanoTime() + timeout.toNanos();
      while (!done.test(records)) {
        if (System.nanoTime() > deadline) {
          throw new AssertionError("timed out after " + timeout + " reading " + topic + "; read so far: " + values(records));
        }
        consumer.poll(Duration.ofMillis(200)).forEach(records::add);
      }
      // then to the end (for read_committed: the last stable offset), so nothing is left unseen
      Map<TopicPartition, Long> end = consumer.endOffsets(partitions);
      while (partitions.stream().anyMatch(p -> consumer.position(p) < end.get(p))) {
        if (System.nanoTime() > deadline) throw new AssertionError("timed out reading " + topic + " to its end");
        consumer.poll(Duration.ofMillis(200)).forEach(records::add);
      }
      return records;
    }
  }

  static List<String> values(List<ConsumerRecord<String, String>> records) {
    return records.stream().map(r -> r.key() + " " + r.value()).collect(Collectors.toList());
  }

  /** Deletes the topics it created (the broker is shared and outlives the tests). */
  @Override
  public void close() throws Exception {
    if (!createdTopics.isEmpty()) admin.deleteTopics(createdTopics).all().get(30, TimeUnit.SECONDS);
    producer.close(Duration.ofSeconds(5));
    admin.close(Duration.ofSeconds(5));
  }
}
