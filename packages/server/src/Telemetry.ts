/**
 * Traces: spans exported over OTLP/HTTP (JSON) to CHATIFY__TRACING__OTLPENDPOINT (a collector, Jaeger,
 * Tempo…), a share of the traces kept (CHATIFY__TRACING__SAMPLINGRATIO). Unset, Effect's tracer is
 * off: the use cases run without spans (see `traced` in core) and nothing is exported.
 */
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import type { HttpServerRequest } from "@effect/platform/HttpServerRequest"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Config, type Context, Duration, Effect, type Exit, Layer, Option, Tracer } from "effect"
import { describeConfigError, InvalidConfiguration } from "./Config.js"

export interface TracingSettings {
  /** The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`) or its traces URL (`…/v1/traces`). */
  readonly otlpEndpoint: string
  /** The share of traces to keep, 0 to 1; a child follows its parent's decision (also a remote one). */
  readonly samplingRatio: number
  readonly serviceName: string
  /** How often finished spans are sent. */
  readonly exportInterval: Duration.Duration
}

export const DEFAULT_SERVICE_NAME = "chatify-chat-api"

const otlpEndpoint = Config.string("OTLPENDPOINT").pipe(
  Config.validate({
    message: "must be an http(s) URL, e.g. http://127.0.0.1:4318",
    validation: (value) => {
      try {
        const url = new URL(value)
        return url.protocol === "http:" || url.protocol === "https:"
      } catch {
        return false
      }
    }
  })
)

const samplingRatio = Config.number("SAMPLINGRATIO").pipe(
  Config.validate({ message: "must be a number from 0 to 1", validation: (n) => n >= 0 && n <= 1 }),
  Config.withDefault(1)
)

/** CHATIFY__TRACING__*: none when no OTLP endpoint is set (tracing off). */
export const tracingConfig: Config.Config<Option.Option<TracingSettings>> = Config.nested(
  Config.nested(
    Config.all({
      otlpEndpoint: Config.option(otlpEndpoint),
      samplingRatio,
      serviceName: Config.string("SERVICENAME").pipe(Config.withDefault(DEFAULT_SERVICE_NAME)),
      exportInterval: Config.number("EXPORTINTERVALSECONDS").pipe(
        Config.validate({ message: "must be a positive number of seconds", validation: (n) => n > 0 }),
        Config.withDefault(5),
        Config.map(Duration.seconds)
      )
    }),
    "TRACING"
  ),
  "CHATIFY"
).pipe(
  Config.map(({ otlpEndpoint, ...rest }) =>
    Option.map(otlpEndpoint, (endpoint) => ({ otlpEndpoint: endpoint, ...rest }))
  )
)

/**
 * Requests that get no `http.server` span: probes and scrapes (a trace each, every few seconds, per
 * pod), and the WebSocket upgrades of /rpc and /hubs/chat, whose request lasts as long as the
 * connection: every call on it would join that one trace. Their calls are traced on their own
 * (`RpcServer.<Rpc>`, `Chat.send`, continuing the client's trace when it sends one).
 */
export const isUntracedRequest = (request: HttpServerRequest): boolean => {
  const query = request.url.indexOf("?")
  const path = query === -1 ? request.url : request.url.slice(0, query)
  return path.startsWith("/health/") || path === "/metrics" || path === "/rpc" || path === "/hubs/chat"
}

/** The OTLP/HTTP traces URL of an endpoint given as a base URL or as the traces URL itself. */
export const tracesUrl = (endpoint: string): string => {
  const trimmed = endpoint.replace(/\/+$/u, "")
  return trimmed.endsWith("/v1/traces") ? trimmed : `${trimmed}/v1/traces`
}

const NO_ATTRIBUTES: ReadonlyMap<string, unknown> = new Map()
const hex = (length: number) => {
  let id = ""
  for (let i = 0; i < length; i++) id += Math.floor(Math.random() * 16).toString(16)
  return id
}

/**
 * A span of a trace that is not kept: it has ids (its children and the `traceparent` it hands on
 * carry the decision), but records nothing and exports nothing.
 */
class UnsampledSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly sampled = false
  readonly attributes = NO_ATTRIBUTES
  readonly spanId = hex(16)
  readonly traceId: string
  status: Tracer.SpanStatus
  constructor(
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly context: Context.Context<never>,
    readonly links: ReadonlyArray<Tracer.SpanLink>,
    startTime: bigint,
    readonly kind: Tracer.SpanKind
  ) {
    this.traceId = Option.isSome(parent) ? parent.value.traceId : hex(32)
    this.status = { _tag: "Started", startTime }
  }
  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    this.status = { _tag: "Ended", startTime: this.status.startTime, endTime, exit }
  }
  attribute(): void {}
  event(): void {}
  addLinks(): void {}
}

/**
 * `tracer`, keeping `ratio` of the traces: a root span is kept with that probability, every other
 * span as its parent was (parent-based sampling, as OpenTelemetry's default sampler).
 */
export const sampledTracer = (
  tracer: Tracer.Tracer,
  ratio: number,
  random: () => number = Math.random
): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      const keep = Option.isSome(parent) ? parent.value.sampled : ratio >= 1 || (ratio > 0 && random() < ratio)
      return keep
        ? tracer.span(name, parent, context, links, startTime, kind, options)
        : new UnsampledSpan(name, parent, context, links, startTime, kind)
    },
    context: (f, fiber) => tracer.context(f, fiber)
  })

/**
 * The tracing of a process: an OTLP/HTTP exporter (flushed when the layer closes) with sampling,
 * or, without settings, Effect's tracer turned off.
 */
export const TracingLayer = (
  settings: Option.Option<TracingSettings>,
  resourceAttributes: Readonly<Record<string, string>> = {}
): Layer.Layer<never> =>
  Option.match(settings, {
    onNone: () => Layer.setTracerEnabled(false),
    onSome: (tracing) =>
      Layer.unwrapScoped(
        Effect.map(
          OtlpTracer.make({
            url: tracesUrl(tracing.otlpEndpoint),
            resource: { serviceName: tracing.serviceName, attributes: resourceAttributes },
            exportInterval: tracing.exportInterval
          }),
          (tracer) => Layer.setTracer(sampledTracer(tracer, tracing.samplingRatio))
        )
      ).pipe(Layer.provide(Layer.merge(OtlpSerialization.layerJson, NodeHttpClient.layerUndici)))
  })

/** CHATIFY__TRACING__*, refused with a message that names the key. */
export const loadTracingConfig: Effect.Effect<Option.Option<TracingSettings>, InvalidConfiguration> = Effect.mapError(
  tracingConfig,
  (error) => new InvalidConfiguration({ message: describeConfigError(error) })
)
