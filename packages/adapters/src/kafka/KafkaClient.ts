import { Context, Data, Duration, Effect, Either, Layer, LogLevel, Runtime, Schedule, type Scope } from "effect"
import type { Admin, ISocketFactory, Kafka, LogEntry, logLevel, RetryOptions } from "kafkajs"
import { DependencyUnavailable } from "@chatify/domain"

export interface KafkaOptions {
  /** Bootstrap servers as host:port. */
  readonly brokers: ReadonlyArray<string>
  readonly clientId?: string | undefined
  /** The chat event topic (CHATIFY__MESSAGEBROKER__TOPICNAME). */
  readonly topic: string
  /**
   * Partitions the deployment expects (CHATIFY__MESSAGEBROKER__PARTITIONS). Checked against the
   * topic at startup: scopes are placed with partitionForScope over this count.
   */
  readonly partitions: number
  /** Create missing topics (the chat topic with `partitions`, the dead-letter topic with 1) instead of failing. */
  readonly createTopics?: boolean | undefined
  /** Replication factor of topics this client creates; the broker's default when absent. */
  readonly replicationFactor?: number | undefined
  /** Where poison records go; `${topic}-dlq` by default. */
  readonly deadLetterTopic?: string | undefined
  /** Bound on one produce (the typed Timeout after it); 10 s by default. */
  readonly produceTimeout?: Duration.DurationInput | undefined
  /**
   * Least time between the starts of two produce requests (the Java producer's linger.ms, 5 ms by
   * default as there since Kafka 4.0): sends within it share the next request. A send after a quiet
   * spell goes out at once; only under load does a send wait, for at most this long.
   */
  readonly produceLinger?: Duration.DurationInput | undefined
  /** How long startup waits for unreachable brokers before it gives up; 60 s by default. */
  readonly startupTimeout?: Duration.DurationInput | undefined
  /** Bound on one request and on admin look-ups (end/committed offsets); 10 s by default. */
  readonly requestTimeout?: Duration.DurationInput | undefined
  readonly connectionTimeout?: Duration.DurationInput | undefined
  /** kafkajs' own retries per operation; kept small, longer outages are retried by the callers' Schedules. */
  readonly retries?: number | undefined
  readonly sessionTimeout?: Duration.DurationInput | undefined
  readonly rebalanceTimeout?: Duration.DurationInput | undefined
  readonly heartbeatInterval?: Duration.DurationInput | undefined
  /** Long-poll bound of an empty fetch; also bounds how long leaving a group waits. 1 s by default. */
  readonly fetchMaxWait?: Duration.DurationInput | undefined
  /** Records buffered between a kafkajs consumer and its Stream before fetching pauses. */
  readonly consumerBufferSize?: number | undefined
  /** A custom kafkajs socket factory (TLS setups, proxies, fault-injection tests). */
  readonly socketFactory?: ISocketFactory | undefined
}

/** KafkaOptions with every default applied, durations in milliseconds. */
export interface KafkaSettings {
  readonly brokers: ReadonlyArray<string>
  readonly clientId: string
  readonly topic: string
  readonly partitions: number
  readonly createTopics: boolean
  readonly replicationFactor: number | undefined
  readonly deadLetterTopic: string
  readonly produceTimeoutMs: number
  readonly produceLingerMs: number
  readonly startupTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly connectionTimeoutMs: number
  readonly retry: RetryOptions
  readonly sessionTimeoutMs: number
  readonly rebalanceTimeoutMs: number
  readonly heartbeatIntervalMs: number
  readonly fetchMaxWaitMs: number
  readonly consumerBufferSize: number
}

const millis = (input: Duration.DurationInput | undefined, fallback: Duration.DurationInput): number =>
  Duration.toMillis(Duration.decode(input ?? fallback))

export const kafkaSettings = (options: KafkaOptions): KafkaSettings => {
  const retries = options.retries ?? 5
  return {
    brokers: options.brokers,
    clientId: options.clientId ?? "chatify",
    topic: options.topic,
    partitions: options.partitions,
    createTopics: options.createTopics ?? false,
    replicationFactor: options.replicationFactor,
    deadLetterTopic: options.deadLetterTopic ?? `${options.topic}-dlq`,
    produceTimeoutMs: millis(options.produceTimeout, "10 seconds"),
    produceLingerMs: millis(options.produceLinger, "5 millis"),
    startupTimeoutMs: millis(options.startupTimeout, "60 seconds"),
    requestTimeoutMs: millis(options.requestTimeout, "10 seconds"),
    connectionTimeoutMs: millis(options.connectionTimeout, "3 seconds"),
    // every field explicit: kafkajs merges these over its defaults (which differ under NODE_ENV=test)
    retry: { retries, initialRetryTime: 250, maxRetryTime: 5_000, factor: 0.2, multiplier: 2 },
    sessionTimeoutMs: millis(options.sessionTimeout, "30 seconds"),
    rebalanceTimeoutMs: millis(options.rebalanceTimeout, "60 seconds"),
    heartbeatIntervalMs: millis(options.heartbeatInterval, "3 seconds"),
    fetchMaxWaitMs: millis(options.fetchMaxWait, "1 second"),
    consumerBufferSize: options.consumerBufferSize ?? 1_000
  }
}

/** The topic is missing or shaped unlike the configuration: retrying cannot help, startup stops. */
export class KafkaTopicError extends Data.TaggedError("KafkaTopicError")<{
  readonly topic: string
  readonly message: string
}> {}

/** The protocol error type kafkajs puts on broker errors (REBALANCE_IN_PROGRESS, ...). */
const errorType = (error: unknown): string | undefined => {
  if (typeof error !== "object" || error === null || !("type" in error)) return undefined
  return typeof error.type === "string" ? error.type : undefined
}

/** kafkajs wraps the broker's error in retry errors; the innermost one says what happened. */
export const rootCause = (error: unknown): unknown => {
  let current = error
  for (let depth = 0; depth < 10 && current instanceof Error && current.cause instanceof Error; depth++) {
    current = current.cause
  }
  return current
}

export const describeError = (error: unknown): string => {
  const cause = rootCause(error)
  const outer = error instanceof Error ? error.message : String(error)
  const inner = cause instanceof Error ? cause.message : String(cause)
  return inner === outer ? outer : `${outer} (${inner})`
}

/** True when kafkajs or the broker report a protocol error of one of these types, at any depth. */
export const hasErrorType = (error: unknown, types: ReadonlyArray<string>): boolean => {
  let current = error
  for (let depth = 0; depth < 10 && current !== undefined; depth++) {
    const type = errorType(current)
    if (type !== undefined && types.includes(type)) return true
    current = current instanceof Error ? current.cause : undefined
  }
  return false
}

export const unavailable = (operation: string) => (error: unknown): DependencyUnavailable =>
  new DependencyUnavailable({ dependency: "kafka", message: `${operation}: ${describeError(error)}` })

/** One kafkajs call as an Effect; its rejection becomes the typed DependencyUnavailable. */
export const kafkaCall = <A>(operation: string, call: () => Promise<A>): Effect.Effect<A, DependencyUnavailable> =>
  Effect.tryPromise({ try: call, catch: unavailable(operation) })

/**
 * A disconnect for a finalizer: bounded and never failing. Finalizers are uninterruptible, so
 * the call is made interruptible explicitly, or the timeout could not abandon a hung promise.
 */
export const closeQuietly = (what: string, call: () => Promise<void>, timeoutMs: number): Effect.Effect<void> =>
  Effect.interruptible(kafkaCall(`disconnect ${what}`, call)).pipe(
    Effect.timeoutFail({
      duration: Duration.millis(timeoutMs),
      onTimeout: () => unavailable(`disconnect ${what}`)(`no answer within ${timeoutMs} ms`)
    }),
    Effect.catchAll((error) => Effect.logWarning(`Kafka ${what} did not disconnect cleanly`, error))
  )

/**
 * Waits for the brokers at startup: retries unavailability with backoff (saying what it waits for),
 * but not a topic error, and gives up after `startupTimeoutMs` with the typed failure.
 */
export const awaitKafka = <A, E extends DependencyUnavailable | KafkaTopicError>(
  settings: KafkaSettings,
  what: string,
  effect: Effect.Effect<A, E>
): Effect.Effect<A, E | DependencyUnavailable> => {
  const brokers = settings.brokers.join(",")
  return effect.pipe(
    Effect.tapError((error) =>
      error._tag === "DependencyUnavailable"
        ? Effect.logWarning(`Waiting for kafka (${brokers}) to ${what}; retrying with backoff`).pipe(
          Effect.annotateLogs({ dependency: "kafka", error: error.message })
        )
        : Effect.void
    ),
    Effect.retry({
      schedule: Schedule.exponential("200 millis").pipe(
        Schedule.union(Schedule.spaced("5 seconds")),
        Schedule.jittered,
        Schedule.upTo(Duration.millis(settings.startupTimeoutMs))
      ),
      while: (error) => error._tag === "DependencyUnavailable"
    }),
    // an attempt can itself take long (kafkajs' own retries): bound the whole wait
    Effect.timeoutFail({
      duration: Duration.millis(settings.startupTimeoutMs),
      onTimeout: () =>
        new DependencyUnavailable({
          dependency: "kafka",
          message: `kafka (${brokers}) did not answer within ${settings.startupTimeoutMs} ms (${what})`
        })
    })
  )
}

const levelsOf = (levels: typeof logLevel): ReadonlyArray<readonly [logLevel, LogLevel.LogLevel]> => [
  [levels.ERROR, LogLevel.Error],
  [levels.WARN, LogLevel.Warning],
  [levels.INFO, LogLevel.Info],
  [levels.DEBUG, LogLevel.Debug]
]

/**
 * kafkajs lines that report expected events at warn/error: the bounded retries of the idempotent
 * producer are on purpose (the Effect timeout and the caller decide what comes next), and every
 * rebalance makes the connection log the broker's "rebalancing" answer as an error.
 */
const isExpected = (message: string, log: LogEntry["log"]): boolean =>
  message.startsWith("Limiting retries for the idempotent producer") ||
  (message.startsWith("Response ") && log["error"] === "The group is rebalancing, so a rejoin is needed")

const logAnnotation = (value: unknown): unknown => {
  if (value instanceof Error) return value.message
  if (typeof value !== "object" || value === null) return value
  // best effort for what JSON cannot hold (cycles, bigints)
  // eslint-disable-next-line @typescript-eslint/no-base-to-string
  return Either.getOrElse(Either.try(() => JSON.stringify(value)), () => String(value))
}

/** Routes kafkajs' log lines into Effect's logger, with kafkajs' structured fields as annotations. */
const effectLogCreator = (
  runtime: Runtime.Runtime<never>,
  levels: ReadonlyArray<readonly [logLevel, LogLevel.LogLevel]>
) =>
() =>
(entry: LogEntry): void => {
  const { level, log, namespace } = entry
  const message = typeof log.message === "string" ? log.message : String(log.message)
  const effectLevel = isExpected(message, log)
    ? LogLevel.Debug
    : levels.find(([kafkajsLevel]) => kafkajsLevel === level)?.[1] ?? LogLevel.Info
  const annotations: Record<string, unknown> = { kafkajs: namespace }
  for (const [key, value] of Object.entries(log)) {
    if (key !== "message" && key !== "timestamp" && key !== "logger" && key !== "stack") {
      annotations[key] = logAnnotation(value)
    }
  }
  Runtime.runSync(runtime)(
    Effect.logWithLevel(effectLevel, message).pipe(Effect.annotateLogs(annotations))
  )
}

export interface KafkaClientService {
  readonly kafka: Kafka
  /** Shared admin client: topic checks, end offsets, committed offsets. */
  readonly admin: Admin
  readonly settings: KafkaSettings
}

/** A connected kafkajs client for one topic; producers and consumers are made from it. */
export class KafkaClient extends Context.Tag("chatify/adapters/KafkaClient")<KafkaClient, KafkaClientService>() {}

/**
 * Checks that a topic exists with the expected partitions (any count when `partitions` is
 * undefined), creating it when the options allow.
 */
export const ensureTopic = (
  admin: Admin,
  settings: KafkaSettings,
  topic: string,
  partitions: number | undefined
): Effect.Effect<void, DependencyUnavailable | KafkaTopicError> =>
  Effect.gen(function*() {
    const existing = yield* kafkaCall("list topics", () => admin.listTopics())
    if (!existing.includes(topic)) {
      if (!settings.createTopics) {
        return yield* new KafkaTopicError({
          topic,
          message: `Kafka topic "${topic}" does not exist on ${settings.brokers.join(",")}; create it` +
            (partitions === undefined ? "" : ` with ${partitions} partitions`) +
            " (scripts/services/kafka.sh topics) or allow the client to create topics"
        })
      }
      const numPartitions = partitions ?? 1
      const replication = settings.replicationFactor === undefined
        ? {}
        : { replicationFactor: settings.replicationFactor }
      yield* kafkaCall(`create topic ${topic}`, () =>
        admin.createTopics({ topics: [{ topic, numPartitions, ...replication }], waitForLeaders: true }))
      yield* Effect.logInfo(`Created Kafka topic ${topic} with ${numPartitions} partitions`)
    }
    const metadata = yield* kafkaCall(`describe topic ${topic}`, () =>
      admin.fetchTopicMetadata({ topics: [topic] }))
    const actual = metadata.topics.find((t) => t.name === topic)?.partitions.length ?? 0
    if (partitions !== undefined && actual !== partitions) {
      return yield* new KafkaTopicError({
        topic,
        message: `Kafka topic "${topic}" has ${actual} partitions, but ${partitions} are configured ` +
          "(CHATIFY__MESSAGEBROKER__PARTITIONS): scopes would be looked for on the wrong partitions"
      })
    }
  })

/**
 * The client: kafkajs logging routed to Effect (warn and above), bounded retries, the admin
 * connected (waiting for the brokers with backoff) and the chat topic verified against the
 * configured partitions. The admin disconnects when the scope closes.
 */
export const makeKafkaClient = (
  options: KafkaOptions
): Effect.Effect<KafkaClientService, DependencyUnavailable | KafkaTopicError, Scope.Scope> =>
  Effect.gen(function*() {
    const settings = kafkaSettings(options)
    const runtime = yield* Effect.runtime<never>()
    // loaded with the first client: a process without Kafka never loads kafkajs
    const { Kafka, logLevel } = yield* Effect.promise(() => import("kafkajs"))
    const kafka = new Kafka({
      brokers: [...settings.brokers],
      clientId: settings.clientId,
      connectionTimeout: settings.connectionTimeoutMs,
      requestTimeout: settings.requestTimeoutMs,
      retry: settings.retry,
      logLevel: logLevel.WARN,
      logCreator: effectLogCreator(runtime, levelsOf(logLevel)),
      ...(options.socketFactory === undefined ? {} : { socketFactory: options.socketFactory })
    })
    const admin = kafka.admin({ retry: settings.retry })
    yield* Effect.addFinalizer(() => closeQuietly("admin", () => admin.disconnect(), settings.requestTimeoutMs))
    yield* awaitKafka(
      settings,
      `connect and find topic ${settings.topic}`,
      Effect.zipRight(
        kafkaCall("connect admin", () => admin.connect()),
        ensureTopic(admin, settings, settings.topic, settings.partitions)
      )
    )
    return { kafka, admin, settings }
  })

export const KafkaClientLayer = (
  options: KafkaOptions
): Layer.Layer<KafkaClient, DependencyUnavailable | KafkaTopicError> =>
  Layer.scoped(KafkaClient, makeKafkaClient(options))
