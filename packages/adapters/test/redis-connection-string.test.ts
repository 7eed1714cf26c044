import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc, Redacted } from "effect"
import {
  describeRedisConnection,
  parseRedisConnectionString,
  type RedisConnection,
  redisClientOptions
} from "../src/redis/index.js"

// The StackExchange.Redis form of the original design: endpoints and key=value options separated by
// commas, keys in any case, whitespace around tokens ignored.

const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?$/u)
const hostName = fc.array(label, { minLength: 1, maxLength: 3 }).map((labels) => labels.join("."))
  // an all-digit name like 1.2.3 is not an IPv4 address, but keep the hosts unambiguous
  .filter((host) => !/^[\d.]+$/u.test(host))
const ipv4 = fc.ipV4()
const ipv6 = fc.ipV6()
const port = fc.integer({ min: 1, max: 65_535 })
// a value may hold "=" (only the first one separates the key), never a comma (it separates tokens)
const value = fc.stringMatching(/^[!-+\--~]{1,20}$/u).filter((v) => v.trim() === v && !v.includes(","))
const anyCase = (key: string) =>
  fc.array(fc.boolean(), { minLength: key.length, maxLength: key.length }).map((upper) =>
    [...key].map((c, i) => (upper[i] === true ? c.toUpperCase() : c.toLowerCase())).join("")
  )
const space = fc.constantFrom("", " ", "  ")

const expected = fc.record({
  host: fc.oneof(hostName, ipv4, ipv6),
  port: fc.option(port, { nil: undefined }),
  password: fc.option(value, { nil: undefined }),
  user: fc.option(value, { nil: undefined }),
  ssl: fc.option(fc.boolean(), { nil: undefined }),
  database: fc.option(fc.integer({ min: 0, max: 15 }), { nil: undefined })
})

/** Writes a connection string for `e`, options in `order`, keys in random case, random spacing. */
const connectionString = fc.tuple(
  expected,
  fc.infiniteStream(fc.tuple(space, space)),
  fc.array(fc.boolean(), { minLength: 8, maxLength: 8 })
)
  .chain(([e, spaces, flips]) => {
    const endpoint = e.host.includes(":") ? `[${e.host}]` : e.host
    const options: Array<readonly [string, string]> = []
    if (e.password !== undefined) options.push(["password", e.password])
    if (e.user !== undefined) options.push(["user", e.user])
    if (e.ssl !== undefined) options.push(["ssl", flips[0] === true ? String(e.ssl).toUpperCase() : String(e.ssl)])
    if (e.database !== undefined) options.push(["defaultDatabase", String(e.database)])
    return fc.tuple(
      fc.shuffledSubarray(options, { minLength: options.length, maxLength: options.length }),
      fc.tuple(...options.map(([key]) => anyCase(key))),
      fc.nat({ max: options.length })
    ).map(([shuffled, keys, endpointAt]) => {
      const pad = spaces[Symbol.iterator]()
      const tokens = shuffled.map(([key, v]) => `${keys[options.findIndex(([k]) => k === key)] ?? key}=${v}`)
      tokens.splice(endpointAt, 0, e.port === undefined ? endpoint : `${endpoint}:${e.port}`)
      const text = tokens.map((token) => {
        const [before, after] = (pad.next().value as [string, string] | undefined) ?? ["", ""]
        return `${before}${token}${after}`
      }).join(",")
      return { e, text } as const
    })
  })

const parsed = (text: string): RedisConnection => {
  const result = parseRedisConnectionString(text)
  if (Either.isLeft(result)) throw new Error(`refused ${JSON.stringify(text)}: ${result.left.message}`)
  return result.right
}
const refusal = (text: string): string => {
  const result = parseRedisConnectionString(text)
  if (Either.isRight(result)) throw new Error(`accepted ${JSON.stringify(text)}`)
  return result.left.message
}

describe("the Redis connection string", () => {
  it.prop(
    "reads every endpoint form and option, in any order, key case and spacing",
    { c: connectionString },
    ({ c }) => {
      const { e, text } = c
      const connection = parsed(text)
      expect(connection.host).toBe(e.host)
      expect(connection.port).toBe(e.port ?? 6379)
      expect(connection.password === undefined ? undefined : Redacted.value(connection.password)).toBe(e.password)
      expect(connection.username).toBe(e.user)
      expect(connection.tls).toBe(e.ssl ?? false)
      expect(connection.database).toBe(e.database ?? 0)
    }
  )

  it.prop("takes an IPv6 address only in brackets, and says so", { host: ipv6, port }, ({ host, port }) => {
    expect(parsed(`[${host}]:${port}`)).toMatchObject({ host, port })
    expect(parsed(`[${host}]`)).toMatchObject({ host, port: 6379 })
    expect(refusal(host)).toContain(`[${host}]:6379`)
    expect(refusal(`${host}:${port}`)).toMatch(/brackets|is not host:port/u)
    // the client gets the address itself; the log line brackets it again
    expect(redisClientOptions(parsed(`[${host}]:${port}`)).host).toBe(host)
    expect(describeRedisConnection(parsed(`[${host}]:${port}`))).toBe(`[${host}]:${port}`)
  })

  it.prop(
    "refuses several endpoints, naming them",
    { endpoints: fc.array(fc.tuple(hostName, port), { minLength: 2, maxLength: 4 }), password: value },
    ({ endpoints, password }) => {
      const listed = endpoints.map(([h, p]) => `${h}:${p}`)
      const message = refusal([...listed, `password=${password}`].join(","))
      expect(message).toBe(
        `several endpoints (${listed.join(", ")}) are not supported: give the one endpoint of the primary`
      )
    }
  )

  it.prop(
    "refuses an option it would not honour, naming the key but never the password",
    {
      key: fc.stringMatching(/^[A-Za-z]{1,16}$/u).filter((k) =>
        ![
          "password",
          "user",
          "ssl",
          "sslhost",
          "defaultdatabase",
          "name",
          "connecttimeout",
          "synctimeout",
          "asynctimeout",
          "abortconnect"
        ]
          .includes(k.toLowerCase())
      ),
      // digits never occur in the message otherwise
      password: value.map((p) => `S3cr${p}`)
    },
    ({ key, password }) => {
      const message = refusal(`redis:6379,password=${password},${key}=x`)
      expect(message).toContain(`option "${key}" is not supported`)
      expect(message).not.toContain(password)
    }
  )

  it.prop("never throws: any text is read or refused with a message", { text: fc.string() }, ({ text }) => {
    const result = parseRedisConnectionString(text)
    if (Either.isLeft(result)) expect(result.left.message.length).toBeGreaterThan(0)
  })

  it.prop(
    "reads the URL form the same way",
    {
      host: fc.oneof(hostName, ipv4, ipv6),
      port,
      database: fc.integer({ min: 0, max: 15 }),
      tls: fc.boolean(),
      user: label,
      // distinctive, so that "not in the message" means something
      password: value.map((p) => `S3cr${p}`)
    },
    ({ database, host, password, port, tls, user }) => {
      const endpoint = host.includes(":") ? `[${host}]` : host
      const url = `${tls ? "rediss" : "redis"}://${user}:${
        encodeURIComponent(password)
      }@${endpoint}:${port}/${database}`
      const connection = parsed(url)
      // a URL's IPv6 address comes back in its canonical form: the same address
      const canonical = host.includes(":") ? new URL(`http://[${host}]`).hostname.slice(1, -1) : host
      expect(connection).toMatchObject({ host: canonical, port, database, tls, username: user })
      expect(connection.password === undefined ? undefined : Redacted.value(connection.password)).toBe(password)
      expect(refusal(`${url},other:6379`)).not.toContain(password)
    }
  )

  it("examples: the original design's, Azure's, and what is refused", () => {
    expect(parsed("chatify-redis:6379")).toMatchObject({
      host: "chatify-redis",
      port: 6379,
      tls: false,
      password: undefined
    })
    expect(parsed("cache.redis.cache.windows.net:6380,password=abc=,ssl=True,abortConnect=False")).toMatchObject({
      host: "cache.redis.cache.windows.net",
      port: 6380,
      tls: true
    })
    expect(
      parsed("h:1,ssl=true,sslHost=redis.internal,name=chatify,connectTimeout=500,syncTimeout=800,defaultDatabase=3")
    )
      .toMatchObject({
        tlsServerName: "redis.internal",
        clientName: "chatify",
        connectTimeoutMillis: 500,
        commandTimeoutMillis: 800,
        database: 3
      })
    expect(redisClientOptions(parsed("h:1,ssl=true,sslHost=redis.internal"))).toMatchObject({
      tls: { serverName: "redis.internal" }
    })
    expect(redisClientOptions(parsed("h:1,ssl=false")).tls).toBeUndefined()
    expect(refusal("password=x")).toBe("no endpoint (host:port) is given")
    expect(refusal("h:0")).toContain("not a TCP port")
    expect(refusal("h:65536")).toContain("not a TCP port")
    expect(refusal("h:6379,abortConnect=true")).toContain("abortConnect=true is not supported")
    expect(refusal("h:6379,defaultDatabase=-1")).toContain("defaultDatabase must be an integer")
    expect(refusal("redis://h:6379/?tls=true")).toContain("query parameters")
    expect(refusal("[not-v6]:6379")).toContain("is not an IPv6 address")
    expect(describeRedisConnection(parsed("h:6379,password=S3cret,user=u,ssl=true,defaultDatabase=2"))).toBe(
      "h:6379, tls, user u, db 2"
    )
  })
})
