package com.chatify.flink;

import java.util.HashSet;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Per-scope statistics of a tumbling window, folded one event at a time. */
public final class ScopeWindowAggregate {
  private ScopeWindowAggregate() {}

  /** The running totals of one scope's window. A Flink POJO. */
  public static class Accumulator {
    public long messageCount;
    public HashSet<String> senders = new HashSet<>();
    public long characterCount;
    public long firstEventAtMillis = Long.MAX_VALUE;
    public long lastEventAtMillis = Long.MIN_VALUE;

    public Accumulator() {}
  }

  public static class Fold implements AggregateFunction<ChatEvent, Accumulator, Accumulator> {
    @Override
    public Accumulator createAccumulator() {
      return new Accumulator();
    }

    @Override
    public Accumulator add(ChatEvent event, Accumulator acc) {
      acc.messageCount++;
      acc.senders.add(event.senderId);
      // String.length() counts UTF-16 code units, as JavaScript's text.length does
      acc.characterCount += event.text.length();
      acc.firstEventAtMillis = Math.min(acc.firstEventAtMillis, event.createdAtMillis);
      acc.lastEventAtMillis = Math.max(acc.lastEventAtMillis, event.createdAtMillis);
      return acc;
    }

    @Override
    public Accumulator getResult(Accumulator acc) {
      return acc;
    }

    @Override
    public Accumulator merge(Accumulator a, Accumulator b) {
      a.messageCount += b.messageCount;
      a.senders.addAll(b.senders);
      a.characterCount += b.characterCount;
      a.firstEventAtMillis = Math.min(a.firstEventAtMillis, b.firstEventAtMillis);
      a.lastEventAtMillis = Math.max(a.lastEventAtMillis, b.lastEventAtMillis);
      return a;
    }
  }

  /** Adds the scope and the window's bounds to the totals. */
  public static class Emit extends ProcessWindowFunction<Accumulator, ScopeStats, String, TimeWindow> {
    @Override
    public void process(String scopeKey, Context ctx, Iterable<Accumulator> totals, Collector<ScopeStats> out) {
      Accumulator acc = totals.iterator().next();
      ScopeStats stats = new ScopeStats();
      int colon = scopeKey.indexOf(':');
      stats.scopeType = Integer.parseInt(scopeKey.substring(0, colon));
      stats.scopeId = scopeKey.substring(colon + 1);
      stats.windowStartMillis = ctx.window().getStart();
      stats.windowEndMillis = ctx.window().getEnd();
      stats.messageCount = acc.messageCount;
      stats.distinctSenders = acc.senders.size();
      stats.characterCount = acc.characterCount;
      stats.firstEventAtMillis = acc.firstEventAtMillis;
      stats.lastEventAtMillis = acc.lastEventAtMillis;
      out.collect(stats);
    }
  }

  /**
   * Counts the events that came after their window had closed (the late-data side output), and says
   * so in the log: the first one and then every thousandth, so a watermark that runs ahead (an
   * out-of-orderness bound or idle timeout too short for the traffic) is seen, not only measured.
   */
  public static class CountLate extends org.apache.flink.streaming.api.functions.ProcessFunction<ChatEvent, ChatEvent> {
    public static final String LATE_COUNTER = "lateChatEvents";
    private static final Logger LOG = LoggerFactory.getLogger(CountLate.class);
    private static final long LOG_EVERY = 1_000;
    private transient Counter late;

    @Override
    public void open(OpenContext openContext) {
      late = getRuntimeContext().getMetricGroup().counter(LATE_COUNTER);
    }

    @Override
    public void processElement(ChatEvent event, Context ctx, Collector<ChatEvent> out) {
      late.inc();
      if (late.getCount() % LOG_EVERY == 1) {
        LOG.warn("dropped a late chat event ({} so far in this subtask): scope {} created at {} ms, watermark {} ms",
            late.getCount(), event.scopeKey(), event.createdAtMillis, ctx.timerService().currentWatermark());
      }
    }
  }
}
