import { describe, expect, it } from "@effect/vitest"
import { Cause, ConfigProvider, Context, Effect, FastCheck as fc, Logger, Option, Redacted, Schema } from "effect"
import { DependencyUnavailable } from "@chatify/domain"
import { CorrelationId } from "@chatify/core"
import { describeConfigError, loggingConfig } from "../src/Config.js"
import { type LogEnrichment, makeLineLogger, prettyLine, redactText } from "../src/Logging.js"

const enrichment: LogEnrichment = { service: "chatapi", pod: "pod-1", environment: "test", pid: 4242 }

/** Runs `effect` with the JSON line logger, returning the lines it wrote (parsed). */
const jsonLinesOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const logger = makeLineLogger("json", enrichment, Option.none())
    const recorder = Logger.map(logger, (line) => {
      lines.push(line)
    })
    yield* Effect.provide(Effect.ignore(effect), Logger.replace(Logger.defaultLogger, recorder))
    for (const line of lines) expect(line).not.toContain("\n")
    return lines.map((line) => JSON.parse(line) as Record<string, unknown>)
  })

class TokenRefused extends Schema.TaggedError<TokenRefused>()("TokenRefused", {
  message: Schema.String,
  authorization: Schema.String,
  scopeId: Schema.String
}) {}

const tokenChars = fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
/** Something a token could be: 20 to 60 base64url characters. */
const token = fc.array(tokenChars, { minLength: 20, maxLength: 60 }).map((chars) => chars.join(""))
/** The token in the places a log line could show it. */
const leaks = (secret: string) => [
  `Authorization: Bearer ${secret}`,
  `authorization=${secret}`,
  `{"Authorization":"Basic ${secret}"}`,
  `GET /rpc?access_token=${secret}&x=1`,
  `password=${secret}`,
  `bearer ${secret}`,
  `token is eyJhbGciOiJIUzI1NiJ9.${secret}.${secret.slice(5)}`,
  `redis://user:${secret}@cache:6379`
]

describe("JSON log lines", () => {
  it.effect("carry the enrichers, the annotations at the top level, the correlation id and the log spans", () =>
    Effect.gen(function*() {
      const [line] = yield* jsonLinesOf(
        Effect.logInfo("hello").pipe(
          Effect.withLogSpan("request"),
          Effect.annotateLogs({ scopeId: "general", service: "not-me" }),
          Effect.provideService(CorrelationId, "corr-9")
        )
      )
      expect(line).toMatchObject({
        level: "INFO",
        message: "hello",
        service: "chatapi",
        pod: "pod-1",
        environment: "test",
        pid: 4242,
        scopeId: "general",
        correlationId: "corr-9"
      })
      expect(Date.parse(String(line?.["@timestamp"]))).not.toBeNaN()
      expect(typeof (line?.["spans"] as Record<string, unknown>)["request"]).toBe("number")
      expect(line).not.toHaveProperty("traceId")
    }))

  it.effect("inside a span, carry its trace and span ids", () =>
    Effect.gen(function*() {
      let ids: { traceId: string; spanId: string } | undefined
      const [line] = yield* jsonLinesOf(
        Effect.gen(function*() {
          const span = yield* Effect.currentSpan
          ids = { traceId: span.traceId, spanId: span.spanId }
          yield* Effect.logInfo("in a span")
        }).pipe(Effect.withSpan("Chat.send"))
      )
      expect(ids).toBeDefined()
      expect(line).toMatchObject(ids ?? {})
    }))

  it.effect("with tracing off (no-op spans), carry no trace or span ids", () =>
    Effect.gen(function*() {
      const [line] = yield* jsonLinesOf(
        Effect.logInfo("tracing off").pipe(Effect.withSpan("Chat.send"), Effect.withTracerEnabled(false))
      )
      expect(line?.["message"]).toBe("tracing off")
      expect(line).not.toHaveProperty("traceId")
      expect(line).not.toHaveProperty("spanId")
    }))

  it.effect("an error carries its typed cause: tag, message, its own fields and the rendered cause", () =>
    Effect.gen(function*() {
      const [line] = yield* jsonLinesOf(
        Effect.logError(
          "send failed",
          Cause.fail(new DependencyUnavailable({ dependency: "kafka", message: "no broker" }))
        )
      )
      const error = line?.["error"] as Record<string, unknown>
      expect(error["tag"]).toBe("DependencyUnavailable")
      expect(error["message"]).toBe("no broker")
      expect(error["fields"]).toMatchObject({ dependency: "kafka" })
      expect(String(error["cause"])).toContain("no broker")
    }))

  it.effect.prop(
    "never carry a token: in a message, an error's text, its fields, a defect or an annotation",
    { secret: token, which: fc.nat({ max: 7 }) },
    ({ secret, which }) =>
      Effect.gen(function*() {
        const leak = leaks(secret)[which] ?? ""
        const lines = yield* jsonLinesOf(
          Effect.all([
            Effect.logInfo(`calling with ${leak}`),
            Effect.logInfo("headers", { authorization: `Bearer ${secret}`, nested: { password: secret } }),
            Effect.logError(
              "refused",
              Cause.fail(new TokenRefused({ message: `refused ${leak}`, authorization: secret, scopeId: "general" }))
            ),
            Effect.logError("defect", Cause.die(new Error(`crashed on ${leak}`))),
            Effect.logWarning("annotated").pipe(Effect.annotateLogs({ header: leak, apiKey: secret })),
            Effect.logInfo("redacted value", Redacted.make(secret))
          ])
        )
        expect(lines).toHaveLength(6)
        for (const line of lines) expect(JSON.stringify(line)).not.toContain(secret)
        // what is not a secret stays readable
        expect(lines[2]?.["error"]).toMatchObject({ tag: "TokenRefused", fields: { scopeId: "general" } })
      }),
    { fastCheck: { numRuns: 25 } }
  )

  it.prop("leave text without credentials alone", { text: fc.string() }, ({ text }) => {
    fc.pre(!/bearer|basic|eyj|authorization|password|passwd|secret|token|cookie|api[-_]?key|credential|@/iu.test(text))
    expect(redactText(text)).toBe(text)
  })

  it.effect.prop(
    "are one JSON object per line whatever the message",
    { text: fc.string({ unit: "binary" }) },
    ({ text }) =>
      Effect.gen(function*() {
        const [line] = yield* jsonLinesOf(Effect.logInfo(text))
        expect(line?.["message"]).toBe(redactText(text))
      }),
    { fastCheck: { numRuns: 30 } }
  )

  it("read as a line with the fields and the cause below in a terminal", () => {
    const text = prettyLine({
      "@timestamp": "2026-11-30T10:00:00.123Z",
      level: "WARN",
      message: "slow",
      service: "chatapi",
      correlationId: "c-1",
      error: { cause: "Error: boom\n    at x" }
    })
    expect(text).toBe("10:00:00.123 WARN  slow  correlationId=c-1\n  Error: boom\n      at x")
  })
})

describe("logging configuration", () => {
  const read = (env: Record<string, string>, terminal = false) =>
    Effect.withConfigProvider(
      Effect.either(loggingConfig(terminal)),
      ConfigProvider.fromMap(new Map(Object.entries(env)), { pathDelim: "__" })
    )

  it.effect("json unless stdout is a terminal; the sink only with a URI, index prefix logs-chatify-chatapi", () =>
    Effect.gen(function*() {
      const piped = yield* read({ POD_NAME: "pod-a" })
      const terminal = yield* read({ POD_NAME: "pod-a", NODE_ENV: "development" }, true)
      expect(piped._tag === "Right" && piped.right.format).toBe("json")
      expect(piped._tag === "Right" && piped.right.enrichment).toEqual({
        service: "chatapi",
        pod: "pod-a",
        environment: "production",
        pid: process.pid
      })
      expect(piped._tag === "Right" && Option.isNone(piped.right.sink)).toBe(true)
      expect(terminal._tag === "Right" && terminal.right.format).toBe("pretty")
      expect(terminal._tag === "Right" && terminal.right.enrichment.environment).toBe("development")
      const sink = yield* read({
        CHATIFY__LOGGING__URI: "http://127.0.0.1:9200",
        CHATIFY__LOGGING__USERNAME: "elastic",
        CHATIFY__LOGGING__PASSWORD: "changeme",
        CHATIFY__LOGGING__FORMAT: "pretty",
        CHATIFY__ENVIRONMENT: "staging"
      })
      if (sink._tag === "Left") return expect.fail(describeConfigError(sink.left))
      expect(sink.right.format).toBe("pretty")
      expect(sink.right.enrichment.environment).toBe("staging")
      const settings = Option.getOrThrow(sink.right.sink)
      expect(settings).toMatchObject({
        uri: "http://127.0.0.1:9200",
        indexPrefix: "logs-chatify-chatapi",
        username: Option.some("elastic")
      })
      expect(Option.map(settings.password, Redacted.value)).toEqual(Option.some("changeme"))
    }))

  it.effect("a wrong value names its key", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [Record<string, string>, string]> = [
        [{ CHATIFY__LOGGING__FORMAT: "xml" }, "CHATIFY__LOGGING__FORMAT"],
        [{ CHATIFY__LOGGING__URI: "elastic:9200" }, "CHATIFY__LOGGING__URI"],
        [{ CHATIFY__LOGGING__INDEXPREFIX: "Logs Chatify" }, "CHATIFY__LOGGING__INDEXPREFIX"],
        [{ CHATIFY__LOGGING__FLUSHINTERVALSECONDS: "0" }, "CHATIFY__LOGGING__FLUSHINTERVALSECONDS"],
        [{ CHATIFY__LOGGING__LEVEL: "loud" }, "CHATIFY__LOGGING__LEVEL"]
      ]
      for (const [env, key] of cases) {
        const result = yield* read(env)
        expect(result._tag === "Left" ? describeConfigError(result.left) : "accepted").toContain(key)
      }
    }))

  it.effect("the caller's context reaches lines logged with it", () =>
    Effect.gen(function*() {
      const [line] = yield* jsonLinesOf(Effect.logInfo("x").pipe(Effect.provide(Context.make(CorrelationId, "c-7"))))
      expect(line?.["correlationId"]).toBe("c-7")
    }))
})
