package com.chatify.flink;

/**
 * One record of chat-events as the source read it: either a parsed {@link ChatEvent}, or what is
 * needed to report a record that did not parse (the job never fails on one). A Flink POJO.
 */
public class IncomingRecord {
  /** Null when the record did not parse. */
  public ChatEvent event;
  /** Why the record did not parse; null for an event. */
  public String error;
  /** The start of the record's value, for the log line of a malformed record. */
  public String preview;
  public int partition;
  public long offset;

  public IncomingRecord() {}

  public static IncomingRecord parsed(ChatEvent event, int partition, long offset) {
    IncomingRecord record = new IncomingRecord();
    record.event = event;
    record.partition = partition;
    record.offset = offset;
    return record;
  }

  public static IncomingRecord malformed(String error, String preview, int partition, long offset) {
    IncomingRecord record = new IncomingRecord();
    record.error = error;
    record.preview = preview;
    record.partition = partition;
    record.offset = offset;
    return record;
  }

  public boolean isMalformed() {
    return event == null;
  }
}
