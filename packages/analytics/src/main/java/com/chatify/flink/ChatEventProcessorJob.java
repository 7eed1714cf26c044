package com.chatify.flink;

import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.configuration.ExternalizedCheckpointRetention;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.util.OutputTag;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.OffsetResetStrategy;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.TopicExistsException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Chatify's analytics: reads chat-events and writes
 *
 * <ul>
 *   <li>per scope and tumbling event-time window, the scope's statistics to chat-analytics;
 *   <li>per sender, scope and burst over the abuse threshold, one event to chat-rate-limit-events.
 * </ul>
 *
 * Both sinks are transactional (exactly once with checkpoints): a consumer reading with
 * isolation.level=read_committed sees each window's result once, also across restarts from a
 * checkpoint. Settings: {@link JobSettings}.
 */
public final class ChatEventProcessorJob {
  private static final Logger LOG = LoggerFactory.getLogger(ChatEventProcessorJob.class);
  /** Records that came after the watermark had closed their window. */
  public static final OutputTag<ChatEvent> LATE = new OutputTag<>("late-chat-events") {};
  /** The Kafka broker's default transaction.max.timeout.ms is 15 minutes; Flink's default (1 h) is refused. */
  static final String TRANSACTION_TIMEOUT_MS = "600000";

  private ChatEventProcessorJob() {}

  public static void main(String[] args) throws Exception {
    JobSettings settings = JobSettings.from(args, System.getenv());
    LOG.info("ChatEventProcessorJob settings: {}", settings);
    if (settings.createTopics) createMissingTopics(settings);
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    build(env, settings);
    env.execute("chatify-chat-event-processor");
  }

  /** Adds the whole pipeline to the environment (main and the tests share it). */
  public static void build(StreamExecutionEnvironment env, JobSettings settings) {
    env.enableCheckpointing(settings.checkpointInterval.toMillis(), CheckpointingMode.EXACTLY_ONCE);
    // a cancelled job can be started again from its last checkpoint (flink run -s <chk-dir>)
    env.getCheckpointConfig().setExternalizedCheckpointRetention(ExternalizedCheckpointRetention.RETAIN_ON_CANCELLATION);

    WatermarkStrategy<IncomingRecord> watermarks = WatermarkStrategy
        .<IncomingRecord>forBoundedOutOfOrderness(settings.outOfOrderness)
        // a malformed record has no event time: MIN_VALUE keeps it from moving the watermark
        .withTimestampAssigner((record, kafkaTimestamp) ->
            record.isMalformed() ? Long.MIN_VALUE : record.event.createdAtMillis)
        // a partition without traffic must not hold back every window of the others
        .withIdleness(settings.idleTimeout);

    SingleOutputStreamOperator<ChatEvent> events = env
        .fromSource(source(settings), watermarks, "chat-events")
        .uid("chat-events-source")
        .process(new SplitMalformed())
        .uid("split-malformed")
        .name("parse chat events");

    SingleOutputStreamOperator<ScopeStats> stats = events
        .keyBy(ChatEvent::scopeKey)
        .window(TumblingEventTimeWindows.of(settings.window))
        .sideOutputLateData(LATE)
        .aggregate(new ScopeWindowAggregate.Fold(), new ScopeWindowAggregate.Emit())
        .uid("scope-stats-window")
        .name("scope statistics per window");
    stats.sinkTo(scopeStatsSink(settings)).uid("scope-stats-sink").name("chat-analytics");

    stats.getSideOutput(LATE)
        .process(new ScopeWindowAggregate.CountLate())
        .uid("count-late")
        .name("count late chat events");

    DataStream<RateLimitViolation> violations = events
        .keyBy(new BurstDetector.SenderInScope(), Types.TUPLE(Types.STRING, Types.INT, Types.STRING))
        .process(new BurstDetector(settings.abuseThreshold, settings.abuseWindow.toMillis()))
        .uid("burst-detector")
        .name("abuse detection");
    violations.sinkTo(rateLimitSink(settings)).uid("rate-limit-sink").name("chat-rate-limit-events");
  }

  static KafkaSource<IncomingRecord> source(JobSettings settings) {
    OffsetsInitializer start = settings.startingOffsets == JobSettings.StartingOffsets.LATEST
        ? OffsetsInitializer.committedOffsets(OffsetResetStrategy.LATEST)
        : OffsetsInitializer.committedOffsets(OffsetResetStrategy.EARLIEST);
    return KafkaSource.<IncomingRecord>builder()
        .setBootstrapServers(settings.bootstrapServers)
        .setTopics(settings.inputTopic)
        .setGroupId(settings.consumerGroup)
        // a checkpoint's offsets win; without one, the group's committed offsets; else the setting
        .setStartingOffsets(start)
        .setDeserializer(new ChatEventDeserializer())
        .setProperty("commit.offsets.on.checkpoint", "true")
        .setProperty("partition.discovery.interval.ms", "60000")
        .setProperty("isolation.level", "read_committed")
        .build();
  }

  static KafkaSink<ScopeStats> scopeStatsSink(JobSettings settings) {
    String topic = settings.scopeStatsTopic;
    KafkaRecordSerializationSchema<ScopeStats> serializer = (stats, context, timestamp) ->
        new ProducerRecord<>(topic, null, timestamp, AnalyticsJson.utf8(stats.scopeKey()), AnalyticsJson.scopeStats(stats));
    return exactlyOnceSink(settings, serializer, "scope-stats");
  }

  static KafkaSink<RateLimitViolation> rateLimitSink(JobSettings settings) {
    String topic = settings.rateLimitTopic;
    KafkaRecordSerializationSchema<RateLimitViolation> serializer = (violation, context, timestamp) ->
        new ProducerRecord<>(topic, null, timestamp, AnalyticsJson.utf8(violation.senderId),
            AnalyticsJson.rateLimitViolation(violation));
    return exactlyOnceSink(settings, serializer, "rate-limit");
  }

  private static <T> KafkaSink<T> exactlyOnceSink(
      JobSettings settings, KafkaRecordSerializationSchema<T> serializer, String sinkName) {
    return KafkaSink.<T>builder()
        .setBootstrapServers(settings.bootstrapServers)
        .setRecordSerializer(serializer)
        .setDeliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
        // one prefix per job and sink: two sinks (or two jobs) sharing one would fence each other
        .setTransactionalIdPrefix(settings.transactionalIdPrefix + "-" + sinkName)
        .setProperty(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, TRANSACTION_TIMEOUT_MS)
        .build();
  }

  /** Creates the output topics that do not exist yet (development; CHATIFY__MESSAGEBROKER__CREATETOPICS). */
  public static void createMissingTopics(JobSettings settings) throws InterruptedException {
    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, settings.bootstrapServers);
    try (Admin admin = Admin.create(props)) {
      Set<String> existing = admin.listTopics().names().get();
      List<NewTopic> missing = new ArrayList<>();
      for (String topic : List.of(settings.scopeStatsTopic, settings.rateLimitTopic)) {
        if (!existing.contains(topic)) missing.add(new NewTopic(topic, settings.partitions, (short) 1));
      }
      if (missing.isEmpty()) return;
      LOG.info("creating topics {}", missing);
      for (var result : admin.createTopics(missing).values().entrySet()) {
        try {
          result.getValue().get();
        } catch (ExecutionException e) {
          // another job or test created it meanwhile
          if (!(e.getCause() instanceof TopicExistsException)) {
            throw new IllegalStateException("could not create topic " + result.getKey(), e.getCause());
          }
        }
      }
    } catch (ExecutionException e) {
      throw new IllegalStateException("could not list the topics on " + settings.bootstrapServers, e.getCause());
    }
  }
}
