import { createHash } from "node:crypto"
import type { Redis, RedisOptions } from "ioredis"
import { Context, Duration, Effect, Layer, Redacted, Runtime, type Scope } from "effect"
import { DependencyUnavailable } from "@chatify/domain"
import { formatRedisEndpoint, type RedisConnection } from "./RedisConnectionString.js"

export const REDIS_DEPENDENCY = "redis"

export interface RedisClientOptions {
  /** `redis://[user:password@]host:port[/db]`; takes precedence over host/port. */
  readonly url?: string | undefined
  /** Defaults to 127.0.0.1. */
  readonly host?: string | undefined
  /** Defaults to 6379. */
  readonly port?: number | undefined
  /** ACL user (Redis 6+); with host/port. */
  readonly username?: string | undefined
  /** With host/port. */
  readonly password?: Redacted.Redacted<string> | undefined
  /** TLS, with this server name when given (else the host's); with host/port. */
  readonly tls?: { readonly serverName?: string | undefined } | undefined
  /** SELECT'ed database; with host/port. */
  readonly database?: number | undefined
  /** CLIENT SETNAME; with host/port. */
  readonly clientName?: string | undefined
  /** Put in front of every key this client's users build; defaults to "chatify:". */
  readonly keyPrefix?: string | undefined
  /** How long one connection attempt may take; defaults to 2 s. */
  readonly connectTimeoutMillis?: number | undefined
  /** How long one command may take before it fails; defaults to 2 s. */
  readonly commandTimeoutMillis?: number | undefined
  /** The cap of the reconnect backoff (100 ms, 200 ms, … up to this); defaults to 2 s. */
  readonly maxReconnectDelayMillis?: number | undefined
}

/** A Lua script as Redis runs it: EVALSHA first, EVAL when the server does not know it yet. */
export type RedisScript = (
  keys: ReadonlyArray<string>,
  args: ReadonlyArray<string | number>
) => Effect.Effect<unknown, DependencyUnavailable>

export interface RedisClientService {
  /** The ioredis client, for commands the helpers below do not cover; prefer `use`. */
  readonly redis: Redis
  readonly keyPrefix: string
  /** The full key of a name: the prefix, then the name. */
  readonly key: (name: string) => string
  /** Runs one or more commands; any failure becomes DependencyUnavailable naming `what`. */
  readonly use: <A>(what: string, run: (redis: Redis) => Promise<A>) => Effect.Effect<A, DependencyUnavailable>
  readonly script: (lua: string) => RedisScript
  /** Readiness: one PING round trip. */
  readonly ping: Effect.Effect<void, DependencyUnavailable>
}

export const DEFAULT_KEY_PREFIX = "chatify:"
const DEFAULT_CONNECT_TIMEOUT_MILLIS = 2_000
const DEFAULT_COMMAND_TIMEOUT_MILLIS = 2_000
const DEFAULT_MAX_RECONNECT_DELAY_MILLIS = 2_000
const QUIT_TIMEOUT = Duration.seconds(1)

export const redisUnavailable = (what: string) => (cause: unknown): DependencyUnavailable =>
  new DependencyUnavailable({
    dependency: REDIS_DEPENDENCY,
    message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}`
  })

/** The client options of a parsed connection string (CHATIFY__CACHING__CONNECTIONSTRING). */
export const redisClientOptions = (connection: RedisConnection): RedisClientOptions => ({
  host: connection.host,
  port: connection.port,
  username: connection.username,
  password: connection.password,
  tls: connection.tls ? { serverName: connection.tlsServerName } : undefined,
  database: connection.database,
  clientName: connection.clientName,
  connectTimeoutMillis: connection.connectTimeoutMillis,
  commandTimeoutMillis: connection.commandTimeoutMillis
})

const describeEndpoint = (options: RedisClientOptions): string => {
  if (options.url === undefined) {
    return formatRedisEndpoint(options.host ?? "127.0.0.1", options.port ?? 6379) +
      (options.tls === undefined ? "" : " (tls)")
  }
  try {
    const url = new URL(options.url)
    return url.host // never the password
  } catch {
    return "(invalid url)"
  }
}

/**
 * An ioredis client for the life of the scope. Commands never queue while Redis is away
 * (enableOfflineQueue: false): they fail at once, so a send decides (fail open or closed) instead of
 * waiting. ioredis reconnects by itself with a capped backoff; the scope's end quits the connection.
 * Redis being down at startup does not fail the acquisition: the adapters degrade until it is back.
 */
export const makeRedisClient = (
  options: RedisClientOptions = {}
): Effect.Effect<RedisClientService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX
    const endpoint = describeEndpoint(options)
    const maxDelay = options.maxReconnectDelayMillis ?? DEFAULT_MAX_RECONNECT_DELAY_MILLIS
    const connectTimeout = options.connectTimeoutMillis ?? DEFAULT_CONNECT_TIMEOUT_MILLIS
    const settings: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      // commands issued in the same event-loop turn (every send's rate check, presence updates) go
      // out as one pipeline: one socket write and one round trip for the lot, replies in order
      enableAutoPipelining: true,
      // a command caught by a dropped connection fails at once rather than being replayed: the caller
      // decides (fail open or closed), and a replayed INCR could count one send twice
      maxRetriesPerRequest: 0,
      connectTimeout,
      commandTimeout: options.commandTimeoutMillis ?? DEFAULT_COMMAND_TIMEOUT_MILLIS,
      retryStrategy: (attempt) => Math.min(attempt * 100, maxDelay),
      // a READONLY reply means a failover made this node a replica: reconnect to find the primary
      reconnectOnError: (error) => error.message.startsWith("READONLY")
    }
    const runtime = yield* Effect.runtime<never>()
    const log = Runtime.runFork(runtime)
    let closing = false
    // ioredis's own message for a refused command ("Stream isn't writeable…") says nothing useful
    let lastError: string | undefined

    // loaded with the first client: a process without Redis never loads ioredis
    const { Redis } = yield* Effect.promise(() => import("ioredis"))
    const redis = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const client = options.url !== undefined
          ? new Redis(options.url, settings)
          : new Redis({
            ...settings,
            host: options.host ?? "127.0.0.1",
            port: options.port ?? 6379,
            ...(options.username === undefined ? {} : { username: options.username }),
            ...(options.password === undefined ? {} : { password: Redacted.value(options.password) }),
            ...(options.tls === undefined
              ? {}
              : { tls: options.tls.serverName === undefined ? {} : { servername: options.tls.serverName } }),
            ...(options.database === undefined ? {} : { db: options.database }),
            ...(options.clientName === undefined ? {} : { connectionName: options.clientName })
          })
        // ioredis reports every failed reconnect; warn once per outage, not once per attempt (a failed
        // first connection is reported by the connect below)
        let healthy = false
        client.on("error", (error: Error) => {
          lastError = error.message
          if (healthy) log(Effect.logWarning(`Redis at ${endpoint} is unavailable, reconnecting: ${error.message}`))
          else log(Effect.logDebug(`Redis at ${endpoint}: ${error.message}`))
          healthy = false
        })
        client.on("close", () => {
          // a server that goes away cleanly emits no error
          if (healthy && !closing) log(Effect.logWarning(`Lost the connection to Redis at ${endpoint}, reconnecting`))
          healthy = false
        })
        client.on("ready", () => {
          log(Effect.logInfo(`Redis at ${endpoint} is available`))
          healthy = true
          lastError = undefined
        })
        return client
      }),
      (client) =>
        Effect.gen(function*() {
          closing = true
          if (client.status === "ready") {
            yield* Effect.tryPromise(() => client.quit()).pipe(Effect.timeout(QUIT_TIMEOUT), Effect.ignore)
          }
          if (client.status === "end") return
          if (client.status === "reconnecting") {
            // no socket to close: disconnect only cancels the pending reconnect
            return yield* Effect.sync(() => client.disconnect())
          }
          // closes the socket whatever quit did, and waits for it, so nothing outlives the scope
          yield* Effect.async<void>((resume) => {
            const ended = () => resume(Effect.void)
            client.once("end", ended)
            client.disconnect()
            return Effect.sync(() => client.off("end", ended))
          }).pipe(Effect.timeout(QUIT_TIMEOUT), Effect.ignore)
        })
    )

    yield* Effect.tryPromise({
      try: () => redis.connect(),
      catch: redisUnavailable(`connecting to ${endpoint}`)
    }).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(connectTimeout + 1_000),
        onTimeout: () => redisUnavailable(`connecting to ${endpoint}`)("timed out")
      }),
      Effect.catchAll(() =>
        Effect.logWarning(
          `Redis at ${endpoint} is not reachable (${
            lastError ?? "no answer"
          }); continuing degraded while ioredis keeps reconnecting`
        )
      )
    )

    const use = <A>(what: string, run: (redis: Redis) => Promise<A>): Effect.Effect<A, DependencyUnavailable> =>
      Effect.tryPromise({
        try: () => run(redis),
        catch: (cause) =>
          redis.status === "ready"
            ? redisUnavailable(what)(cause)
            : redisUnavailable(what)(`not connected to ${endpoint} (${lastError ?? redis.status})`)
      })

    const script = (lua: string): RedisScript => {
      const sha = createHash("sha1").update(lua).digest("hex")
      return (keys, args) =>
        use("running a script", async (client) => {
          try {
            return await client.evalsha(sha, keys.length, ...keys, ...args)
          } catch (error) {
            // a restarted or flushed server has forgotten the script: send it once in full
            if (error instanceof Error && error.message.startsWith("NOSCRIPT")) {
              return await client.eval(lua, keys.length, ...keys, ...args)
            }
            throw error
          }
        })
    }

    return {
      redis,
      keyPrefix,
      key: (name) => `${keyPrefix}${name}`,
      use,
      script,
      ping: Effect.asVoid(use("PING", (client) => client.ping()))
    }
  })

/** The shared Redis connection of a pod. */
export class RedisClient extends Context.Tag("chatify/redis/RedisClient")<RedisClient, RedisClientService>() {
  static readonly layer = (options: RedisClientOptions = {}): Layer.Layer<RedisClient> =>
    Layer.scoped(RedisClient, makeRedisClient(options))
}
