import { OpenApi } from "@effect/platform"
import { RpcSchema } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Either, Option, Schema } from "effect"
import {
  ChatApi,
  ChatRpcs,
  EnrichedChatEvent,
  HistoryPage,
  PROBLEM_CONTENT_TYPE,
  ScopePresence,
  SubscriptionItem
} from "../src/index.js"

describe("ChatRpcs", () => {
  const rpc = (tag: string) => {
    const r = ChatRpcs.requests.get(tag)
    if (r === undefined) throw new Error(`no RPC ${tag}`)
    return r
  }

  it("has exactly the methods Send, Subscribe, History, Presence, Stats and RateLimitViolations", () => {
    expect([...ChatRpcs.requests.keys()].sort()).toEqual([
      "History",
      "Presence",
      "RateLimitViolations",
      "Send",
      "Stats",
      "Subscribe"
    ])
    for (const [key, r] of ChatRpcs.requests) expect(r._tag).toBe(key)
  })

  it("Subscribe and RateLimitViolations are streams, Subscribe of SubscriptionItems; the rest are unary", () => {
    expect(RpcSchema.isStreamSchema(rpc("Subscribe").successSchema)).toBe(true)
    expect(RpcSchema.isStreamSchema(rpc("RateLimitViolations").successSchema)).toBe(true)
    for (const tag of ["Send", "History", "Presence", "Stats"]) {
      expect(RpcSchema.isStreamSchema(rpc(tag).successSchema)).toBe(false)
    }
    const streamed = RpcSchema.getStreamSchemas(rpc("Subscribe").successSchema.ast)
    expect(Option.isSome(streamed)).toBe(true)
    if (Option.isSome(streamed)) expect(streamed.value.success).toBe(SubscriptionItem)
  })

  it("unary methods answer with the documented success schemas", () => {
    expect(rpc("Send").successSchema).toBe(EnrichedChatEvent)
    expect(rpc("History").successSchema).toBe(HistoryPage)
    expect(rpc("Presence").successSchema).toBe(ScopePresence)
  })

  it("payloads carry the scope, and Send never takes a senderId from the client", () => {
    const decode = (tag: string, payload: unknown) => {
      const schema: Schema.Schema.AnyNoContext = rpc(tag).payloadSchema
      return Schema.decodeUnknownEither(schema, { onExcessProperty: "error" })(payload)
    }
    expect(Either.isRight(decode("Send", { scopeType: 0, scopeId: "general", text: "hi" }))).toBe(true)
    expect(Either.isLeft(decode("Send", { scopeType: 0, scopeId: "general", text: "hi", senderId: "mallory" }))).toBe(
      true
    )
    expect(Either.isRight(decode("Subscribe", { scopeType: 1, scopeId: "dm" }))).toBe(true)
    expect(Either.isRight(decode("Subscribe", { scopeType: 1, scopeId: "dm", after: { partition: 0, offset: 5 } })))
      .toBe(
        true
      )
    expect(Either.isRight(decode("History", { scopeType: 0, scopeId: "general", limit: 50 }))).toBe(true)
    expect(Either.isLeft(decode("History", { scopeType: 0, scopeId: "general", limit: 0 }))).toBe(true)
    expect(Either.isRight(decode("Presence", { scopeType: 0, scopeId: "general" }))).toBe(true)
    expect(Either.isLeft(decode("Presence", { scopeType: 2, scopeId: "general" }))).toBe(true)
  })
})

describe("ChatApi OpenAPI document", () => {
  const spec = OpenApi.fromApi(ChatApi)
  const send = "/api/chat/send"
  const history = "/api/chat/scopes/{scopeType}/{scopeId}/history"
  const presence = "/api/chat/scopes/{scopeType}/{scopeId}/presence"
  const stats = "/api/chat/scopes/{scopeType}/{scopeId}/stats"

  const operation = (path: string, method: "get" | "post") => {
    const op = spec.paths[path]?.[method]
    if (op === undefined) throw new Error(`${method.toUpperCase()} ${path} is not documented`)
    return op
  }

  const contentTypes = (path: string, method: "get" | "post", status: number): ReadonlyArray<string> =>
    Object.keys(operation(path, method).responses[status]?.content ?? {})

  // the probes are documented too (issue 15): GET /health/live, /health/startup, /health/ready
  const probes = ["/health/live", "/health/startup", "/health/ready"]

  it("documents exactly POST /api/chat/send and GET …/history, …/presence and …/stats, and the /health/* probes", () => {
    expect(Object.keys(spec.paths).sort()).toEqual([send, history, presence, stats, ...probes].sort())
    expect(Object.keys(spec.paths[stats] ?? {}).filter((k) => k === "get" || k === "post")).toEqual(["get"])
    expect(Object.keys(spec.paths[send] ?? {}).filter((k) => k === "get" || k === "post")).toEqual(["post"])
    expect(Object.keys(spec.paths[history] ?? {}).filter((k) => k === "get" || k === "post")).toEqual(["get"])
    expect(Object.keys(spec.paths[presence] ?? {}).filter((k) => k === "get" || k === "post")).toEqual(["get"])
  })

  it("takes scopeType and scopeId from the path, and history's limit and before from the query", () => {
    for (const path of [history, presence]) {
      const params = operation(path, "get").parameters
      expect(params.filter((p) => p.in === "path").map((p) => p.name).sort()).toEqual(["scopeId", "scopeType"])
      for (const p of params.filter((p) => p.in === "path")) expect(p.required).toBe(true)
    }
    const query = operation(history, "get").parameters.filter((p) => p.in === "query")
    expect(query.map((p) => p.name).sort()).toEqual(["before", "limit"])
    for (const p of query) expect(p.required).toBe(false)
  })

  it("send takes a JSON ChatSendRequest body and every operation answers 200 with JSON", () => {
    expect(Object.keys(operation(send, "post").requestBody?.content ?? {})).toEqual(["application/json"])
    expect(contentTypes(send, "post", 200)).toEqual(["application/json"])
    expect(contentTypes(history, "get", 200)).toEqual(["application/json"])
    expect(contentTypes(presence, "get", 200)).toEqual(["application/json"])
  })

  it("the 400 response documents the Problem400 schema", () => {
    for (
      const [path, method] of [
        [send, "post"],
        [history, "get"],
        [presence, "get"]
      ] as const
    ) {
      expect(JSON.stringify(operation(path, method).responses[400]?.content ?? {})).toContain(
        "#/components/schemas/Problem400"
      )
    }
    expect(spec.components.schemas["Problem400"]).toBeDefined()
  })

  it("the 400 response uses application/problem+json", () => {
    expect(PROBLEM_CONTENT_TYPE).toBe("application/problem+json")
    for (
      const [path, method] of [
        [send, "post"],
        [history, "get"],
        [presence, "get"]
      ] as const
    ) {
      expect(operation(path, method).responses[400]).toBeDefined()
      expect({ path, contentTypes: contentTypes(path, method, 400) }).toEqual({
        path,
        contentTypes: [PROBLEM_CONTENT_TYPE]
      })
    }
  })

  it("every other error response uses application/problem+json", () => {
    const documented: ReadonlyArray<readonly [string, "get" | "post", ReadonlyArray<number>]> = [
      [send, "post", [401, 403, 409, 429, 500, 503, 504]],
      [history, "get", [401, 403, 429, 500, 503, 504]],
      [presence, "get", [401, 403, 429, 500, 503]]
    ]
    for (const [path, method, statuses] of documented) {
      const errorStatuses = Object.keys(operation(path, method).responses)
        .map(Number)
        .filter((s) => s > 400)
      expect(errorStatuses.sort((a, b) => a - b)).toEqual([...statuses].sort((a, b) => a - b))
      for (const status of statuses) {
        expect({ path, status, contentTypes: contentTypes(path, method, status) }).toEqual({
          path,
          status,
          contentTypes: [PROBLEM_CONTENT_TYPE]
        })
      }
    }
  })
})

describe("ChatApi OpenAPI document for Swagger UI (issue 15)", () => {
  const spec = OpenApi.fromApi(ChatApi)
  const chatOperations = [
    spec.paths["/api/chat/send"]?.post,
    spec.paths["/api/chat/scopes/{scopeType}/{scopeId}/history"]?.get,
    spec.paths["/api/chat/scopes/{scopeType}/{scopeId}/presence"]?.get
  ]

  it("declares a bearer (JWT) security scheme that every chat operation uses, so /docs has an Authorize button", () => {
    expect(spec.components.securitySchemes["bearer"]).toMatchObject({
      type: "http",
      scheme: "bearer",
      bearerFormat: "JWT"
    })
    for (const operation of chatOperations) {
      expect(operation?.security).toEqual([{ bearer: [] }])
      expect(Object.keys(operation?.responses ?? {})).toContain("401")
    }
  })

  it("documents scopeType as the enum 0 / 1, in the path and in the body", () => {
    for (const operation of chatOperations.slice(1)) {
      const scopeType = operation?.parameters.find((p) => p.name === "scopeType")
      expect(scopeType?.schema).toMatchObject({ type: "string", enum: ["0", "1"] })
      expect(scopeType?.description).toContain("0 = Channel, 1 = DirectMessage")
    }
    expect(spec.components.schemas["ChatScopeType"]).toMatchObject({ type: "number", enum: [0, 1] })
  })

  it("documents /health/live, /health/startup and /health/ready with their report, without security", () => {
    for (const probe of ["live", "startup", "ready"]) {
      const operation = spec.paths[`/health/${probe}`]?.get
      expect(operation, probe).toBeDefined()
      expect(operation?.security).toEqual([])
      expect(JSON.stringify(operation?.responses[200])).toContain("#/components/schemas/HealthReport")
      expect(operation?.responses[400]).toBeUndefined()
    }
    expect(Object.keys(spec.paths["/health/ready"]?.get?.responses ?? {}).sort()).toEqual(["200", "503"])
    expect(spec.components.schemas["HealthReport"]).toBeDefined()
  })
})
