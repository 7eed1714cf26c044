package com.chatify.flink;

import java.io.Serializable;
import java.time.Duration;
import java.time.format.DateTimeParseException;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.function.Function;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The job's configuration: each setting from a job argument ({@code --window 1m} or
 * {@code --window=1m}), else from its environment variable (the API's names, {@code __} as the path
 * delimiter), else its default (the API's where the API has one). A bad value fails at startup with
 * a message that names the argument and the variable.
 */
public final class JobSettings implements Serializable {
  /** One setting: its job argument, its environment variable, its default. */
  public enum Key {
    BOOTSTRAP_SERVERS("bootstrap-servers", "CHATIFY__MESSAGEBROKER__BOOTSTRAPSERVERS", "127.0.0.1:9092"),
    INPUT_TOPIC("input-topic", "CHATIFY__MESSAGEBROKER__TOPICNAME", "chat-events"),
    SCOPE_STATS_TOPIC("scope-stats-topic", "CHATIFY__ANALYTICS__SCOPESTATSTOPIC", "chat-analytics"),
    RATE_LIMIT_TOPIC("rate-limit-topic", "CHATIFY__ANALYTICS__RATELIMITEVENTSTOPIC", "chat-rate-limit-events"),
    CONSUMER_GROUP("consumer-group", "CHATIFY__ANALYTICS__CONSUMERGROUP", "chatify-analytics"),
    TRANSACTIONAL_ID_PREFIX(
        "transactional-id-prefix", "CHATIFY__ANALYTICS__TRANSACTIONALIDPREFIX", "chatify-analytics"),
    WINDOW("window", "CHATIFY__ANALYTICS__WINDOW", "1m"),
    OUT_OF_ORDERNESS("out-of-orderness", "CHATIFY__ANALYTICS__OUTOFORDERNESS", "5s"),
    IDLE_TIMEOUT("idle-timeout", "CHATIFY__ANALYTICS__IDLETIMEOUT", "10s"),
    ABUSE_THRESHOLD("abuse-threshold", "CHATIFY__ANALYTICS__ABUSETHRESHOLD", "30"),
    ABUSE_WINDOW("abuse-window", "CHATIFY__ANALYTICS__ABUSEWINDOW", "10s"),
    CHECKPOINT_INTERVAL("checkpoint-interval", "CHATIFY__ANALYTICS__CHECKPOINTINTERVAL", "10s"),
    STARTING_OFFSETS("starting-offsets", "CHATIFY__ANALYTICS__STARTINGOFFSETS", "earliest"),
    CREATE_TOPICS("create-topics", "CHATIFY__MESSAGEBROKER__CREATETOPICS", "false"),
    PARTITIONS("partitions", "CHATIFY__MESSAGEBROKER__PARTITIONS", "3");

    public final String argument;
    public final String variable;
    public final String fallback;

    Key(String argument, String variable, String fallback) {
      this.argument = argument;
      this.variable = variable;
      this.fallback = fallback;
    }

    String describe() {
      return "--" + argument + " / " + variable;
    }
  }

  /** Where the source starts when the consumer group has no committed offsets (and no checkpoint). */
  public enum StartingOffsets {
    EARLIEST,
    LATEST
  }

  public final String bootstrapServers;
  public final String inputTopic;
  public final String scopeStatsTopic;
  public final String rateLimitTopic;
  public final String consumerGroup;
  public final String transactionalIdPrefix;
  public final Duration window;
  public final Duration outOfOrderness;
  public final Duration idleTimeout;
  public final int abuseThreshold;
  public final Duration abuseWindow;
  public final Duration checkpointInterval;
  public final StartingOffsets startingOffsets;
  public final boolean createTopics;
  public final int partitions;

  private JobSettings(Map<Key, String> values) {
    bootstrapServers = nonEmpty(values, Key.BOOTSTRAP_SERVERS);
    inputTopic = nonEmpty(values, Key.INPUT_TOPIC);
    scopeStatsTopic = nonEmpty(values, Key.SCOPE_STATS_TOPIC);
    rateLimitTopic = nonEmpty(values, Key.RATE_LIMIT_TOPIC);
    consumerGroup = nonEmpty(values, Key.CONSUMER_GROUP);
    transactionalIdPrefix = nonEmpty(values, Key.TRANSACTIONAL_ID_PREFIX);
    window = positiveDuration(values, Key.WINDOW);
    outOfOrderness = duration(values, Key.OUT_OF_ORDERNESS);
    idleTimeout = positiveDuration(values, Key.IDLE_TIMEOUT);
    abuseThreshold = positiveInt(values, Key.ABUSE_THRESHOLD);
    abuseWindow = positiveDuration(values, Key.ABUSE_WINDOW);
    checkpointInterval = positiveDuration(values, Key.CHECKPOINT_INTERVAL);
    startingOffsets = parse(values, Key.STARTING_OFFSETS, "earliest or latest",
        v -> StartingOffsets.valueOf(v.toUpperCase(Locale.ROOT)));
    createTopics = parse(values, Key.CREATE_TOPICS, "true or false", JobSettings::bool);
    partitions = positiveInt(values, Key.PARTITIONS);
  }

  /** From the job's arguments, then the environment, then the defaults. */
  public static JobSettings from(String[] args, Map<String, String> environment) {
    Map<String, String> arguments = arguments(args);
    Map<Key, String> values = new LinkedHashMap<>();
    for (Key key : Key.values()) {
      String value = arguments.remove(key.argument);
      if (value == null) value = environment.get(key.variable);
      values.put(key, value == null ? key.fallback : value.trim());
    }
    if (!arguments.isEmpty()) {
      throw new IllegalArgumentException("unknown job argument(s): --" + String.join(", --", arguments.keySet()));
    }
    return new JobSettings(values);
  }

  public static JobSettings defaults() {
    return from(new String[0], Map.of());
  }

  /** A copy with some settings replaced (tests, and main's overrides). */
  public JobSettings with(Map<Key, String> overrides) {
    Map<String, String> environment = new LinkedHashMap<>();
    for (Key key : Key.values()) environment.put(key.variable, current(key));
    overrides.forEach((key, value) -> environment.put(key.variable, value));
    return from(new String[0], environment);
  }

  private String current(Key key) {
    switch (key) {
      case BOOTSTRAP_SERVERS: return bootstrapServers;
      case INPUT_TOPIC: return inputTopic;
      case SCOPE_STATS_TOPIC: return scopeStatsTopic;
      case RATE_LIMIT_TOPIC: return rateLimitTopic;
      case CONSUMER_GROUP: return consumerGroup;
      case TRANSACTIONAL_ID_PREFIX: return transactionalIdPrefix;
      case WINDOW: return window.toMillis() + "ms";
      case OUT_OF_ORDERNESS: return outOfOrderness.toMillis() + "ms";
      case IDLE_TIMEOUT: return idleTimeout.toMillis() + "ms";
      case ABUSE_THRESHOLD: return Integer.toString(abuseThreshold);
      case ABUSE_WINDOW: return abuseWindow.toMillis() + "ms";
      case CHECKPOINT_INTERVAL: return checkpointInterval.toMillis() + "ms";
      case STARTING_OFFSETS: return startingOffsets.name().toLowerCase(Locale.ROOT);
      case CREATE_TOPICS: return Boolean.toString(createTopics);
      case PARTITIONS: return Integer.toString(partitions);
      default: throw new IllegalStateException(key.name());
    }
  }

  private static Map<String, String> arguments(String[] args) {
    Map<String, String> arguments = new LinkedHashMap<>();
    for (int i = 0; i < args.length; i++) {
      String arg = args[i];
      if (!arg.startsWith("--") || arg.length() == 2) {
        throw new IllegalArgumentException("job arguments are --name value or --name=value, not: " + arg);
      }
      int equals = arg.indexOf('=');
      if (equals > 0) {
        arguments.put(arg.substring(2, equals), arg.substring(equals + 1));
      } else if (i + 1 < args.length) {
        arguments.put(arg.substring(2), args[++i]);
      } else {
        throw new IllegalArgumentException("job argument " + arg + " has no value");
      }
    }
    return arguments;
  }

  private static final Pattern DURATION = Pattern.compile("^(\\d+)\\s*(ms|s|m|h)$");

  /**
   * A duration: a whole number with a unit ({@code 500ms}, {@code 5s}, {@code 1m}, {@code 2h}) or
   * ISO-8601 ({@code PT1M}). A bare number is refused: its unit would be a guess.
   */
  public static Duration parseDuration(String text) {
    Matcher m = DURATION.matcher(text.trim());
    if (m.matches()) {
      long amount = Long.parseLong(m.group(1));
      switch (m.group(2)) {
        case "ms": return Duration.ofMillis(amount);
        case "s": return Duration.ofSeconds(amount);
        case "m": return Duration.ofMinutes(amount);
        default: return Duration.ofHours(amount);
      }
    }
    try {
      return Duration.parse(text.trim());
    } catch (DateTimeParseException e) {
      throw new IllegalArgumentException("not a duration (500ms, 5s, 1m, 2h or ISO-8601 like PT1M): " + text);
    }
  }

  private static boolean bool(String text) {
    if (text.equalsIgnoreCase("true")) return true;
    if (text.equalsIgnoreCase("false")) return false;
    throw new IllegalArgumentException(text);
  }

  private static <T> T parse(Map<Key, String> values, Key key, String expected, Function<String, T> parser) {
    String text = values.get(key);
    try {
      return parser.apply(text);
    } catch (RuntimeException e) {
      throw new IllegalArgumentException(key.describe() + ": expected " + expected + ", got '" + text + "'");
    }
  }

  private static String nonEmpty(Map<Key, String> values, Key key) {
    return parse(values, key, "a non-empty value", v -> {
      if (v.isEmpty()) throw new IllegalArgumentException();
      return v;
    });
  }

  private static int positiveInt(Map<Key, String> values, Key key) {
    return parse(values, key, "a whole number > 0", v -> {
      int n = Integer.parseInt(v);
      if (n <= 0) throw new IllegalArgumentException();
      return n;
    });
  }

  private static Duration duration(Map<Key, String> values, Key key) {
    return parse(values, key, "a duration >= 0 (500ms, 5s, 1m, 2h, PT1M)", v -> {
      Duration d = parseDuration(v);
      if (d.isNegative()) throw new IllegalArgumentException();
      return d;
    });
  }

  private static Duration positiveDuration(Map<Key, String> values, Key key) {
    return parse(values, key, "a duration > 0 (500ms, 5s, 1m, 2h, PT1M)", v -> {
      Duration d = parseDuration(v);
      if (d.isNegative() || d.isZero()) throw new IllegalArgumentException();
      return d;
    });
  }

  @Override
  public String toString() {
    StringBuilder text = new StringBuilder();
    for (Key key : Key.values()) {
      if (text.length() > 0) text.append(", ");
      text.append(key.argument).append('=').append(current(key));
    }
    return text.toString();
  }
}
