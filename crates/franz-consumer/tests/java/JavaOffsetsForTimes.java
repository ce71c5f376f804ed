// Java's KafkaConsumer.offsetsForTimes, for
// crates/franz-consumer/tests/offsets_for_times.rs.
//
// Usage: JavaOffsetsForTimes <bootstrap> <topic> <partitions> <ts,ts,...>
// Prints one line per (partition, timestamp), in argument order:
//   <partition> <timestamp> <offset> <recordTimestamp>   or
//   <partition> <timestamp> none                         when no record is that recent

import java.util.HashMap;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class JavaOffsetsForTimes {
    public static void main(String[] args) {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        String topic = args[1];
        int partitions = Integer.parseInt(args[2]);
        String[] stamps = args[3].split(",");
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            for (int p = 0; p < partitions; p++) {
                for (String s : stamps) {
                    long ts = Long.parseLong(s);
                    Map<TopicPartition, Long> query = new HashMap<>();
                    TopicPartition tp = new TopicPartition(topic, p);
                    query.put(tp, ts);
                    OffsetAndTimestamp o = consumer.offsetsForTimes(query).get(tp);
                    if (o == null) {
                        System.out.println(p + " " + ts + " none");
                    } else {
                        System.out.println(p + " " + ts + " " + o.offset() + " " + o.timestamp());
                    }
                }
            }
        }
        System.out.flush();
    }
}
