package com.chatify.flink;

import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;

/**
 * Abuse detection, keyed by (senderId, scopeType, scopeId): a sender with more than {@code threshold}
 * messages in a scope within a sliding window of {@code windowMillis} yields one
 * {@link RateLimitViolation} per burst. While the count stays over the threshold nothing more is
 * emitted; a new event comes only after a message at which the count was back at or under it.
 *
 * <p>Flink's SlidingEventTimeWindows would report a burst once per slide; this counts exactly
 * instead. Events are held until the watermark passes them and are then taken in event-time order,
 * so out-of-order arrival within the watermark's bound gives the same result as ordered arrival;
 * events behind the watermark are dropped, as the windows drop them.
 */
public class BurstDetector
    extends KeyedProcessFunction<Tuple3<String, Integer, String>, ChatEvent, RateLimitViolation> {
  private final int threshold;
  private final long windowMillis;

  /** Events not yet taken: event time → how many. */
  private transient MapState<Long, Integer> pending;
  /** Event times of the taken events still inside the window, oldest first. */
  private transient ListState<Long> recent;
  /** True from the event that crossed the threshold until the count is back under it. */
  private transient ValueState<Boolean> inBurst;

  public BurstDetector(int threshold, long windowMillis) {
    this.threshold = threshold;
    this.windowMillis = windowMillis;
  }

  /** The key: who, and where. */
  public static class SenderInScope implements KeySelector<ChatEvent, Tuple3<String, Integer, String>> {
    @Override
    public Tuple3<String, Integer, String> getKey(ChatEvent event) {
      return Tuple3.of(event.senderId, event.scopeType, event.scopeId);
    }
  }

  @Override
  public void open(OpenContext openContext) {
    pending = getRuntimeContext().getMapState(new MapStateDescriptor<>("pending", Types.LONG, Types.INT));
    recent = getRuntimeContext().getListState(new ListStateDescriptor<>("recent", Types.LONG));
    inBurst = getRuntimeContext().getState(new ValueStateDescriptor<>("inBurst", Types.BOOLEAN));
  }

  @Override
  public void processElement(ChatEvent event, Context ctx, Collector<RateLimitViolation> out) throws Exception {
    long at = event.createdAtMillis;
    if (at <= ctx.timerService().currentWatermark()) return;
    Integer seen = pending.get(at);
    pending.put(at, seen == null ? 1 : seen + 1);
    ctx.timerService().registerEventTimeTimer(at);
  }

  @Override
  public void onTimer(long timestamp, OnTimerContext ctx, Collector<RateLimitViolation> out) throws Exception {
    // The window that ends with this instant: (timestamp - windowMillis, timestamp].
    long oldestKept = timestamp - windowMillis + 1;
    List<Long> kept = new ArrayList<>();
    for (Long at : recent.get()) {
      if (at >= oldestKept) kept.add(at);
    }
    Integer arrived = pending.get(timestamp);
    if (arrived != null) {
      pending.remove(timestamp);
      for (int i = 0; i < arrived; i++) kept.add(timestamp);
      int count = kept.size();
      boolean bursting = Boolean.TRUE.equals(inBurst.value());
      if (count > threshold && !bursting) {
        out.collect(violation(ctx.getCurrentKey(), count, oldestKept, timestamp + 1));
        inBurst.update(true);
      } else if (count <= threshold && bursting) {
        inBurst.update(false);
      }
      // when the last of these has left the window, the state can go (see below)
      ctx.timerService().registerEventTimeTimer(timestamp + windowMillis);
    }
    if (kept.isEmpty() && pending.isEmpty()) {
      // nothing left inside the window: a quiet sender keeps no state
      recent.clear();
      inBurst.clear();
    } else {
      recent.update(kept);
    }
  }

  private RateLimitViolation violation(
      Tuple3<String, Integer, String> key, int count, long windowStart, long windowEnd) {
    RateLimitViolation violation = new RateLimitViolation();
    violation.senderId = key.f0;
    violation.scopeType = key.f1;
    violation.scopeId = key.f2;
    violation.messageCount = count;
    violation.threshold = threshold;
    violation.windowStartMillis = windowStart;
    violation.windowEndMillis = windowEnd;
    violation.detectedAtMillis = System.currentTimeMillis();
    return violation;
  }
}
