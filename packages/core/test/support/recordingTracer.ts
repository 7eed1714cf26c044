import { Effect, Ref, Tracer } from "effect"

/** Effect's own tracer, adding every span it makes to `spans`. */
export const recordingTracer = (spans: Ref.Ref<ReadonlyArray<Tracer.Span>>): Effect.Effect<Tracer.Tracer> =>
  Effect.map(Effect.tracer, (native) =>
    Tracer.make({
      span: (...args) => {
        const span = native.span(...args)
        Effect.runSync(Ref.update(spans, (all) => [...all, span]))
        return span
      },
      context: (f, fiber) => native.context(f, fiber)
    }))
