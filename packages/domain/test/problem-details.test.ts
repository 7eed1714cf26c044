import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck, Schema } from "effect"
import {
  ChatError,
  Conflict,
  DependencyUnavailable,
  LimitExceeded,
  Forbidden,
  NotFound,
  Problem400,
  Problem401,
  Problem403,
  Problem409,
  Problem429,
  Problem500,
  Problem503,
  Problem504,
  ProblemDetails,
  problemOf,
  RateLimited,
  SubscriptionLagged,
  Timeout,
  Unauthenticated,
  Unexpected,
  ValidationError
} from "../src/index.js"

const numRuns = 300

const expectedStatus: Record<ChatError["_tag"], number> = {
  ValidationError: 400,
  Unauthenticated: 401,
  Forbidden: 403,
  NotFound: 404,
  Conflict: 409,
  SubscriptionLagged: 409,
  RateLimited: 429,
  // 413 for the body limit (see below), 429 for every other
  LimitExceeded: 429,
  DependencyUnavailable: 503,
  Timeout: 504,
  Unexpected: 500
}

const optionalString = FastCheck.option(FastCheck.string({ unit: "grapheme" }), { nil: undefined })

const decodesAsProblemDetails = (p: unknown): ProblemDetails => {
  const decoded = Schema.decodeUnknownEither(ProblemDetails)(p)
  expect(Either.isRight(decoded)).toBe(true)
  return Either.getOrThrow(decoded)
}

describe("problemOf is total", () => {
  it.prop(
    "every error maps to a ProblemDetails that decodes, with the status of the table",
    { error: ChatError, instance: optionalString, correlationId: optionalString },
    ({ correlationId, error, instance }) => {
      const p = problemOf(error, { instance, correlationId })
      const decoded = decodesAsProblemDetails(p)
      expect(decoded).toEqual(p)
      // Decoding with onExcessProperty "error" shows it has no fields beyond the schema's.
      expect(Either.isRight(Schema.decodeUnknownEither(ProblemDetails)(p, { onExcessProperty: "error" }))).toBe(true)
      expect(p.status).toBe(
        error._tag === "LimitExceeded" && error.limit === "MaxBodyBytes" ? 413 : expectedStatus[error._tag]
      )
      expect(p.type).toMatch(/^urn:chatify:problem:[a-z-]+$/u)
      expect(p.title.length).toBeGreaterThan(0)
      expect(typeof p.detail).toBe("string")
      // JSON on the wire: survives serialisation and still decodes
      expect(decodesAsProblemDetails(JSON.parse(JSON.stringify(p)))).toEqual(p)
    },
    { fastCheck: { numRuns } }
  )

  it.prop(
    "instance and correlationId are passed through when given and absent when not",
    { error: ChatError, instance: optionalString, correlationId: optionalString },
    ({ correlationId, error, instance }) => {
      const p = problemOf(error, { instance, correlationId })
      if (instance === undefined) expect("instance" in p).toBe(false)
      else expect(p.instance).toBe(instance)
      if (correlationId === undefined) expect("correlationId" in p).toBe(false)
      else expect(p.correlationId).toBe(correlationId)
      // the context changes nothing else
      const { correlationId: _c, instance: _i, ...rest } = p
      expect(rest).toEqual(problemOf(error))
    },
    { fastCheck: { numRuns } }
  )

  it.prop("without a context, neither instance nor correlationId is present", { error: ChatError }, ({ error }) => {
    const p = problemOf(error)
    expect(Object.keys(p)).not.toContain("instance")
    expect(Object.keys(p)).not.toContain("correlationId")
  }, { fastCheck: { numRuns: 100 } })

  it.prop(
    "each error's problem matches the documented HTTP contract schema for its status",
    { error: ChatError },
    ({ error }) => {
      const p = problemOf(error, { instance: "/api/chat/send", correlationId: "c-1" })
      // 404 and 413 are answered outside the chat endpoints (an unknown route, a body over the limit),
      // so the HttpApi contract has no schema of theirs: they are checked as a ProblemDetails of that status
      const outsideTheContract = (status: 404 | 413) =>
        Schema.Struct({ ...ProblemDetails.fields, status: Schema.Literal(status) })
      const contract: Record<number, Schema.Schema.AnyNoContext> = {
        400: Problem400,
        401: Problem401,
        403: Problem403,
        404: outsideTheContract(404),
        409: Problem409,
        413: outsideTheContract(413),
        429: Problem429,
        500: Problem500,
        503: Problem503,
        504: Problem504
      }
      // every status problemOf answers is in the table: a new one fails here until it is documented
      expect(Object.keys(contract)).toContain(String(p.status))
      const schema = contract[p.status]
      expect(schema !== undefined && Either.isRight(Schema.decodeUnknownEither(schema)(p))).toBe(true)
    },
    { fastCheck: { numRuns: 200 } }
  )
})

describe("problemOf: the table, error by error", () => {
  it.prop("ValidationError → 400 with errors[] equal to the error's list", { e: ValidationError }, ({ e }) => {
    const p = problemOf(e)
    expect(p.status).toBe(400)
    expect(p.errors).toEqual(e.errors)
    expect(p.retryAfterSeconds).toBeUndefined()
    for (const f of e.errors) expect(p.detail).toContain(f.field)
  }, { fastCheck: { numRuns } })

  it.prop("Unauthenticated → 401", { e: Unauthenticated }, ({ e }) => {
    expect(problemOf(e).status).toBe(401)
  }, { fastCheck: { numRuns: 100 } })

  it.prop("Forbidden → 403", { e: Forbidden }, ({ e }) => {
    expect(problemOf(e).status).toBe(403)
  }, { fastCheck: { numRuns: 100 } })

  it.prop("NotFound → 404", { e: NotFound }, ({ e }) => {
    expect(problemOf(e).status).toBe(404)
  }, { fastCheck: { numRuns: 100 } })

  it.prop("Conflict → 409", { e: Conflict }, ({ e }) => {
    expect(problemOf(e).status).toBe(409)
  }, { fastCheck: { numRuns: 100 } })

  it.prop("SubscriptionLagged → 409", { e: SubscriptionLagged }, ({ e }) => {
    const p = problemOf(e)
    expect(p.status).toBe(409)
    expect(p.type).not.toBe(problemOf(new Conflict({ message: "x" })).type)
  }, { fastCheck: { numRuns: 100 } })

  it.prop("RateLimited → 429 with retryAfterSeconds", { e: RateLimited }, ({ e }) => {
    const p = problemOf(e)
    expect(p.status).toBe(429)
    expect(p.retryAfterSeconds).toBe(e.retryAfterSeconds)
  }, { fastCheck: { numRuns } })

  it("RateLimited says which window refused: reads, or messages (also when it does not say)", () => {
    const of = (kind?: "send" | "read") =>
      problemOf(
        new RateLimited({
          limit: 600,
          windowSeconds: 60,
          retryAfterSeconds: 7,
          ...(kind === undefined ? {} : { kind })
        })
      )
    expect(of("read").detail).toBe("At most 600 reads (subscribe, history, presence) per 60 s; retry after 7 s")
    expect(of("send").detail).toBe("At most 600 messages per 60 s; retry after 7 s")
    expect(of().detail).toBe(of("send").detail)
    expect(of("read").type).toBe(of("send").type)
  })

  it.prop("DependencyUnavailable → 503", { e: DependencyUnavailable }, ({ e }) => {
    expect(problemOf(e).status).toBe(503)
  }, { fastCheck: { numRuns: 100 } })

  it.prop("Timeout → 504", { e: Timeout }, ({ e }) => {
    expect(problemOf(e).status).toBe(504)
  }, { fastCheck: { numRuns: 100 } })

  it.prop("Unexpected → 500", { e: Unexpected }, ({ e }) => {
    expect(problemOf(e).status).toBe(500)
  }, { fastCheck: { numRuns: 100 } })

  it.prop(
    "only ValidationError carries errors[], only RateLimited carries retryAfterSeconds",
    { error: ChatError },
    ({ error }) => {
      const p = problemOf(error)
      expect("errors" in p).toBe(error._tag === "ValidationError")
      expect("retryAfterSeconds" in p).toBe(error._tag === "RateLimited")
    },
    { fastCheck: { numRuns } }
  )

  it("every tag has its own problem type", () => {
    const samples: ReadonlyArray<ChatError> = [
      new ValidationError({ errors: [{ field: "text", message: "must not be empty" }] }),
      new Unauthenticated({ message: "m" }),
      new Forbidden({ message: "m" }),
      new NotFound({ message: "m" }),
      new Conflict({ message: "m" }),
      new SubscriptionLagged({ scopeId: "s", bufferSize: 1 }),
      new RateLimited({ limit: 1, windowSeconds: 1, retryAfterSeconds: 1 }),
      new LimitExceeded({ limit: "MaxSubscriptionsPerConnection", maximum: 1, message: "m" }),
      new DependencyUnavailable({ dependency: "kafka", message: "m" }),
      new Timeout({ operation: "send" }),
      new Unexpected({ message: "m" })
    ]
    expect(new Set(samples.map((e) => e._tag)).size).toBe(Object.keys(expectedStatus).length)
    expect(new Set(samples.map((e) => problemOf(e).type)).size).toBe(samples.length)
  })
})

describe("problemOf leaks no internals", () => {
  const reference = problemOf(new Unexpected({ message: "reference" }))

  it.prop("the Unexpected problem is the same whatever the error's message (so it cannot leak it)", {
    message: FastCheck.string({ unit: "grapheme" })
  }, ({ message }) => {
    const p = problemOf(new Unexpected({ message }))
    expect(p).toEqual(reference)
  }, { fastCheck: { numRuns } })

  it.prop(
    "for arbitrary Unexpected instances (Arbitrary.make), the detail is the fixed wording",
    { e: Unexpected },
    ({ e }) => {
      expect(problemOf(e).detail).toBe(reference.detail)
    },
    { fastCheck: { numRuns: 100 } }
  )

  it("a realistic internal message (stack, connection string) is not in the body", () => {
    const secret =
      "TypeError: Cannot read properties of undefined at KafkaProducer.send (postgres://app:hunter2@db:5432)"
    const body = JSON.stringify(problemOf(new Unexpected({ message: secret }), { correlationId: "c-1" }))
    for (const piece of ["TypeError", "hunter2", "postgres://", "KafkaProducer", secret]) {
      expect(body).not.toContain(piece)
    }
  })

  it("DependencyUnavailable names the dependency but not its message", () => {
    const p = problemOf(new DependencyUnavailable({ dependency: "kafka", message: "ECONNREFUSED 10.0.0.7:9092" }))
    expect(p.detail).toContain("kafka")
    expect(JSON.stringify(p)).not.toContain("ECONNREFUSED")
  })
})
