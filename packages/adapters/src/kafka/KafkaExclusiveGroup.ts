import { Data, Duration, Effect, Layer, Option, Schedule } from "effect"
import type { GroupDescription } from "kafkajs"
import type { DependencyUnavailable } from "@chatify/domain"
import { awaitKafka, KafkaClient, kafkaCall } from "./KafkaClient.js"

/** Another live consumer is in a group only this process may consume in. */
export class ConsumerGroupInUse extends Data.TaggedError("ConsumerGroupInUse")<{
  readonly groupId: string
  /** Each live member as `clientId@clientHost`. */
  readonly members: ReadonlyArray<string>
}> {
  override get message(): string {
    return `the consumer group ${this.groupId} has live members (${this.members.join(", ")})`
  }
}

const POLL = Duration.seconds(1)
/** What the coordinator may take beyond the session timeout to notice a member is gone. */
const MARGIN = Duration.seconds(5)

const membersOf = (group: GroupDescription | undefined): ReadonlyArray<string> =>
  (group?.members ?? []).map((member) => `${member.clientId}@${member.clientHost}`)

/**
 * Startup check of a group that must be this process's alone (a pod's broadcast group: each pod
 * must see every event, so two pods in one group would each see only part of them). It returns
 * once the group has no member. A member may be a crashed earlier run of this very process, which
 * the coordinator drops after the session timeout: so the check waits that long (plus a margin)
 * before it refuses. A live duplicate heartbeats and never leaves, and is refused.
 *
 * Not airtight: two processes starting within the same moment both find the group empty.
 */
export const awaitExclusiveGroup = (
  groupId: string
): Effect.Effect<void, ConsumerGroupInUse | DependencyUnavailable, KafkaClient> =>
  Effect.gen(function*() {
    const { admin, settings } = yield* KafkaClient
    const describe = awaitKafka(
      settings,
      `describe group ${groupId}`,
      kafkaCall(`describe group ${groupId}`, () => admin.describeGroups([groupId]))
    ).pipe(Effect.map(({ groups }) => membersOf(groups.find((group) => group.groupId === groupId))))
    const first = yield* describe
    if (first.length === 0) return
    const within = Duration.sum(Duration.millis(settings.sessionTimeoutMs), MARGIN)
    yield* Effect.logWarning(
      `Consumer group ${groupId} has live members (${first.join(", ")}); waiting up to ${Duration.format(within)} ` +
        "for a crashed earlier run of this pod to leave it"
    )
    const last = yield* describe.pipe(
      Effect.repeat({ schedule: Schedule.spaced(POLL), until: (members) => members.length === 0 }),
      Effect.timeoutOption(within)
    )
    if (Option.isSome(last)) return
    const members = yield* describe
    if (members.length > 0) return yield* new ConsumerGroupInUse({ groupId, members })
  })

/** awaitExclusiveGroup as a layer, built with the Kafka client. */
export const KafkaExclusiveGroupLayer = (
  groupId: string
): Layer.Layer<never, ConsumerGroupInUse | DependencyUnavailable, KafkaClient> =>
  Layer.effectDiscard(awaitExclusiveGroup(groupId))
