import { isIPv4, isIPv6 } from "node:net"
import { Data, Either, Redacted } from "effect"

/**
 * Where and how to reach Redis, read from CHATIFY__CACHING__CONNECTIONSTRING: the original
 * design's StackExchange.Redis form (`host:port,password=…,ssl=true,user=…`, `[::1]:6379`) or a
 * `redis://` / `rediss://` URL.
 */
export interface RedisConnection {
  readonly host: string
  readonly port: number
  readonly username: string | undefined
  readonly password: Redacted.Redacted<string> | undefined
  readonly tls: boolean
  /** The TLS server name (SNI and certificate check) when it differs from the host (`sslHost`). */
  readonly tlsServerName: string | undefined
  readonly database: number
  /** CLIENT SETNAME (`name`). */
  readonly clientName: string | undefined
  readonly connectTimeoutMillis: number | undefined
  readonly commandTimeoutMillis: number | undefined
}

/** What the connection string says that this client cannot do, or cannot read; never its password. */
export class InvalidRedisConnectionString extends Data.TaggedError("InvalidRedisConnectionString")<{
  readonly message: string
}> {}

const DEFAULT_PORT = 6379

type Parsed<A> = Either.Either<A, InvalidRedisConnectionString>

const refuse = (message: string): Parsed<never> => Either.left(new InvalidRedisConnectionString({ message }))

// a DNS name (or a container/service name): letters, digits, "-", "_" and dots between labels
const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/u

const parsePort = (text: string, endpoint: string): Parsed<number> => {
  const port = /^\d{1,5}$/u.test(text) ? Number(text) : Number.NaN
  return port >= 1 && port <= 65_535
    ? Either.right(port)
    : refuse(`the port of endpoint "${endpoint}" is not a TCP port (1-65535)`)
}

/** `host`, `host:port`, `1.2.3.4:port`, `[v6]` or `[v6]:port`. An IPv6 address needs its brackets. */
const parseEndpoint = (endpoint: string): Parsed<{ readonly host: string; readonly port: number }> => {
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/u.exec(endpoint)
  if (bracketed !== null) {
    const [, address = "", port] = bracketed
    if (!isIPv6(address)) return refuse(`endpoint "${endpoint}": "${address}" in brackets is not an IPv6 address`)
    return Either.map(port === undefined ? Either.right(DEFAULT_PORT) : parsePort(port, endpoint), (p) => ({
      host: address,
      port: p
    }))
  }
  const colons = endpoint.split(":").length - 1
  if (colons > 1) {
    return isIPv6(endpoint)
      ? refuse(`endpoint "${endpoint}": write an IPv6 address in brackets, e.g. [${endpoint}]:${DEFAULT_PORT}`)
      : refuse(`endpoint "${endpoint}" is not host:port`)
  }
  const [host = "", port] = endpoint.split(":")
  if (!isIPv4(host) && !HOST_NAME.test(host)) return refuse(`endpoint "${endpoint}" is not host:port`)
  return Either.map(port === undefined ? Either.right(DEFAULT_PORT) : parsePort(port, endpoint), (p) => ({
    host,
    port: p
  }))
}

const parseBoolean = (key: string, value: string): Parsed<boolean> => {
  switch (value.toLowerCase()) {
    case "true":
      return Either.right(true)
    case "false":
      return Either.right(false)
    default:
      return refuse(`${key} must be true or false`)
  }
}

const parseCount = (key: string, value: string, min: number): Parsed<number> => {
  const n = /^\d{1,9}$/u.test(value) ? Number(value) : Number.NaN
  return n >= min ? Either.right(n) : refuse(`${key} must be an integer of at least ${min}`)
}

/** The StackExchange.Redis options this client honours, by lower-case key; anything else is refused. */
const SUPPORTED = [
  "password",
  "user",
  "ssl",
  "sslHost",
  "defaultDatabase",
  "name",
  "connectTimeout",
  "syncTimeout",
  "asyncTimeout",
  "abortConnect"
] as const

interface Options {
  password?: string
  user?: string
  ssl?: boolean
  sslHost?: string
  defaultDatabase?: number
  name?: string
  connectTimeout?: number
  syncTimeout?: number
  asyncTimeout?: number
}

const applyOption = (options: Options, rawKey: string, value: string): Parsed<Options> => {
  const key = SUPPORTED.find((name) => name.toLowerCase() === rawKey.toLowerCase())
  switch (key) {
    case "password":
      return Either.right({ ...options, password: value })
    case "user":
      return value.length === 0 ? refuse("user must not be empty") : Either.right({ ...options, user: value })
    case "ssl":
      return Either.map(parseBoolean(key, value), (ssl) => ({ ...options, ssl }))
    case "sslHost":
      return isIPv4(value) || isIPv6(value) || HOST_NAME.test(value)
        ? Either.right({ ...options, sslHost: value })
        : refuse("sslHost must be a host name")
    case "defaultDatabase":
      return Either.map(parseCount(key, value, 0), (defaultDatabase) => ({ ...options, defaultDatabase }))
    case "name":
      return /^[!-~]+$/u.test(value)
        ? Either.right({ ...options, name: value })
        : refuse("name must be printable ASCII without spaces (Redis CLIENT SETNAME)")
    case "connectTimeout":
      return Either.map(parseCount(key, value, 1), (connectTimeout) => ({ ...options, connectTimeout }))
    case "syncTimeout":
      return Either.map(parseCount(key, value, 1), (syncTimeout) => ({ ...options, syncTimeout }))
    case "asyncTimeout":
      return Either.map(parseCount(key, value, 1), (asyncTimeout) => ({ ...options, asyncTimeout }))
    case "abortConnect":
      // the server never aborts on an unreachable Redis: it starts degraded and keeps reconnecting
      return Either.flatMap(parseBoolean(key, value), (abort) =>
        abort
          ? refuse(
            "abortConnect=true is not supported: the server always starts and reconnects in the background (abortConnect=false)"
          )
          : Either.right(options))
    case undefined:
      return refuse(`option "${rawKey}" is not supported (supported: ${SUPPORTED.join(", ")})`)
  }
}

/** `host:port,password=…,user=…,ssl=true,…`: options are `key=value`, keys in any case; the last of a repeated key wins. */
const parseStackExchange = (text: string): Parsed<RedisConnection> => {
  const endpoints: Array<string> = []
  let options: Parsed<Options> = Either.right({})
  for (const part of text.split(",")) {
    const token = part.trim()
    if (token.length === 0) continue
    const equals = token.indexOf("=")
    if (equals < 0) {
      endpoints.push(token)
      continue
    }
    const key = token.slice(0, equals).trim()
    const value = token.slice(equals + 1).trim()
    options = Either.flatMap(options, (current) => applyOption(current, key, value))
  }
  if (endpoints.length === 0) return refuse("no endpoint (host:port) is given")
  if (endpoints.length > 1) {
    return refuse(
      `several endpoints (${endpoints.join(", ")}) are not supported: give the one endpoint of the primary`
    )
  }
  return Either.flatMap(
    options,
    (o) =>
      Either.map(parseEndpoint(endpoints[0] ?? ""), ({ host, port }): RedisConnection => ({
        host,
        port,
        username: o.user,
        password: o.password === undefined || o.password.length === 0 ? undefined : Redacted.make(o.password),
        tls: o.ssl ?? false,
        tlsServerName: o.ssl === true ? o.sslHost : undefined,
        database: o.defaultDatabase ?? 0,
        clientName: o.name,
        connectTimeoutMillis: o.connectTimeout,
        commandTimeoutMillis: o.asyncTimeout ?? o.syncTimeout
      }))
  )
}

const decode = (text: string, what: string): Parsed<string> =>
  Either.try({
    try: () => decodeURIComponent(text),
    catch: () =>
      new InvalidRedisConnectionString({ message: `the ${what} of the URL is not percent-encoded correctly` })
  })

/** `redis[s]://[user[:password]@]host[:port][/db]`; query parameters are not read, so they are refused. */
const parseUrl = (text: string): Parsed<RedisConnection> =>
  Either.try({
    try: () => new URL(text),
    // the URL may hold a password: it is not repeated
    catch: () => new InvalidRedisConnectionString({ message: "is not a valid redis:// or rediss:// URL" })
  }).pipe(
    Either.flatMap((url) => {
      if (url.search.length > 0 || url.hash.length > 0) {
        return refuse("query parameters and fragments are not supported in a redis:// URL")
      }
      const host = url.hostname.replace(/^\[(.*)\]$/u, "$1")
      const endpoint = url.host
      const checked = host.length === 0
        ? refuse("the URL has no host")
        : isIPv4(host) || isIPv6(host) || HOST_NAME.test(host)
        ? Either.right(host)
        : refuse(`host "${host}" of the URL is not a host name or IP address`)
      const port = url.port.length === 0 ? Either.right(DEFAULT_PORT) : parsePort(url.port, endpoint)
      const path = url.pathname
      const database = path === "" || path === "/"
        ? Either.right(0)
        : parseCount("the database (URL path)", path.slice(1), 0)
      return Either.all({
        host: checked,
        port,
        database,
        username: decode(url.username, "user"),
        password: decode(url.password, "password")
      }).pipe(Either.map(({ database, host, password, port, username }): RedisConnection => ({
        host,
        port,
        username: username.length === 0 ? undefined : username,
        password: password.length === 0 ? undefined : Redacted.make(password),
        tls: url.protocol.toLowerCase() === "rediss:",
        tlsServerName: undefined,
        database,
        clientName: undefined,
        connectTimeoutMillis: undefined,
        commandTimeoutMillis: undefined
      })))
    })
  )

/**
 * Reads a connection string, or says in one line what in it is not supported. Never throws, and
 * no message repeats the password.
 */
export const parseRedisConnectionString = (
  text: string
): Either.Either<RedisConnection, InvalidRedisConnectionString> =>
  /^rediss?:\/\//iu.test(text.trim()) ? parseUrl(text.trim()) : parseStackExchange(text)

/** `host:port`, with brackets around an IPv6 address. */
export const formatRedisEndpoint = (host: string, port: number): string =>
  isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`

/** For log lines: where, and how (never the password). */
export const describeRedisConnection = (connection: RedisConnection): string =>
  [
    formatRedisEndpoint(connection.host, connection.port),
    connection.tls ? "tls" : undefined,
    connection.username === undefined ? undefined : `user ${connection.username}`,
    connection.database === 0 ? undefined : `db ${connection.database}`
  ].filter((part) => part !== undefined).join(", ")
