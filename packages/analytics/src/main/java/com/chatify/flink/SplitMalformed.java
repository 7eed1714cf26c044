package com.chatify.flink;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Passes the chat events on and sends the records that did not parse to the {@link #MALFORMED}
 * side output, counting them in the {@value #MALFORMED_COUNTER} metric.
 */
public class SplitMalformed extends ProcessFunction<IncomingRecord, ChatEvent> {
  public static final OutputTag<IncomingRecord> MALFORMED = new OutputTag<>("malformed-chat-events") {};
  public static final String MALFORMED_COUNTER = "malformedChatEvents";
  private static final Logger LOG = LoggerFactory.getLogger(SplitMalformed.class);

  private transient Counter malformed;

  @Override
  public void open(OpenContext openContext) {
    malformed = getRuntimeContext().getMetricGroup().counter(MALFORMED_COUNTER);
  }

  @Override
  public void processElement(IncomingRecord record, Context ctx, Collector<ChatEvent> out) {
    if (!record.isMalformed()) {
      out.collect(record.event);
      return;
    }
    malformed.inc();
    LOG.warn(
        "skipping a malformed chat event at partition {} offset {}: {} (value: {})",
        record.partition,
        record.offset,
        record.error,
        record.preview);
    ctx.output(MALFORMED, record);
  }
}
