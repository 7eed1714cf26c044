package com.chatify.flink;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * Turns every chat-events record into an {@link IncomingRecord}, never throwing: a record that does
 * not parse is passed on as malformed (then counted and logged by {@link SplitMalformed}), because an
 * exception here would fail the job and make it restart into the same record forever.
 */
public class ChatEventDeserializer implements KafkaRecordDeserializationSchema<IncomingRecord> {
  static final int PREVIEW_LENGTH = 200;

  @Override
  public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<IncomingRecord> out) {
    byte[] value = record.value();
    if (value == null) {
      out.collect(IncomingRecord.malformed("no value (tombstone)", "", record.partition(), record.offset()));
      return;
    }
    String text = new String(value, StandardCharsets.UTF_8);
    try {
      out.collect(IncomingRecord.parsed(ChatEventJson.parse(text), record.partition(), record.offset()));
    } catch (ChatEventJson.MalformedChatEventException e) {
      String preview = text.length() > PREVIEW_LENGTH ? text.substring(0, PREVIEW_LENGTH) + "…" : text;
      out.collect(IncomingRecord.malformed(e.getMessage(), preview, record.partition(), record.offset()));
    }
  }

  @Override
  public TypeInformation<IncomingRecord> getProducedType() {
    return TypeInformation.of(IncomingRecord.class);
  }
}
