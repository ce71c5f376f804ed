// A real Java KafkaConsumer as one member of a classic consumer group, for
// crates/franz-consumer/tests/java_group.rs.
//
// Usage: JavaGroupMember <bootstrap> <groupId> <topic> <assignors>
//   assignors: comma-separated short names, in preference order:
//   `range` (RangeAssignor), `cooperative-sticky` (CooperativeStickyAssignor).
//
// Prints one line per event on stdout, flushed at once:
//   ASSIGNED <p,p,...>   onPartitionsAssigned (cooperative: only the added ones)
//   REVOKED <p,p,...>    onPartitionsRevoked (cooperative: only the removed ones)
//   LOST <p,p,...>       onPartitionsLost
//   RECORD <partition> <offset>
//   COMMITFAILED         a commit refused because of a rebalance
//   ERROR <message>      anything else (then it closes and exits 1)
//   CLOSED               after consumer.close(), just before exit 0
// A line `stop` on stdin, or EOF, makes it close and exit.
// Logging goes to stderr (the harness's warnings-only log4j2 config).

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InterruptException;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.StringDeserializer;

public class JavaGroupMember {
    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static String partitions(Collection<TopicPartition> tps) {
        TreeSet<Integer> sorted = new TreeSet<>();
        for (TopicPartition tp : tps) {
            sorted.add(tp.partition());
        }
        StringBuilder sb = new StringBuilder();
        for (Integer p : sorted) {
            if (sb.length() > 0) {
                sb.append(',');
            }
            sb.append(p);
        }
        return sb.toString();
    }

    private static String assignorClass(String shortName) {
        switch (shortName.trim()) {
            case "range":
                return RangeAssignor.class.getName();
            case "cooperative-sticky":
                return CooperativeStickyAssignor.class.getName();
            default:
                throw new IllegalArgumentException("unknown assignor `" + shortName
                        + "` (expected range or cooperative-sticky)");
        }
    }

    public static void main(String[] args) {
        if (args.length != 4) {
            System.err.println("usage: JavaGroupMember <bootstrap> <groupId> <topic> <assignors>");
            System.exit(2);
        }
        String bootstrap = args[0];
        String groupId = args[1];
        String topic = args[2];
        List<String> assignors = new ArrayList<>();
        for (String name : args[3].split(",")) {
            if (!name.isBlank()) {
                assignors.add(assignorClass(name));
            }
        }

        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "java-member");
        props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        props.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, String.join(",", assignors));
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
        props.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "300");
        props.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, "20000");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());

        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props);
        // Partitions this member has returned records from: only those can
        // have a position past their committed offset.
        Set<TopicPartition> read = new HashSet<>();

        Thread stdin = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(
                    new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = in.readLine()) != null) {
                    if (line.trim().equals("stop")) {
                        break;
                    }
                }
            } catch (Exception e) {
                // Treat a broken stdin like EOF.
            }
            // The pending wakeup makes the main loop's next (or current)
            // poll or commit throw WakeupException.
            consumer.wakeup();
        }, "stdin-watcher");
        stdin.setDaemon(true);
        stdin.start();

        ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                // Commit what was handled on the partitions that are leaving,
                // so their next owner starts exactly after it.
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                try {
                    for (TopicPartition tp : partitions) {
                        if (read.contains(tp)) {
                            offsets.put(tp, new OffsetAndMetadata(
                                    consumer.position(tp, Duration.ofSeconds(10))));
                        }
                    }
                    if (!offsets.isEmpty()) {
                        consumer.commitSync(offsets);
                    }
                } catch (WakeupException | InterruptException e) {
                    throw e;
                } catch (CommitFailedException | RebalanceInProgressException e) {
                    say("COMMITFAILED");
                } catch (KafkaException e) {
                    say("COMMITFAILED");
                    System.err.println("JavaGroupMember: commit on revoke failed: " + e);
                }
                for (TopicPartition tp : partitions) {
                    read.remove(tp);
                }
                say("REVOKED " + partitions(partitions));
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                say("ASSIGNED " + partitions(partitions));
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> partitions) {
                for (TopicPartition tp : partitions) {
                    read.remove(tp);
                }
                say("LOST " + partitions(partitions));
            }
        };

        int exit = 0;
        try {
            consumer.subscribe(List.of(topic), listener);
            while (true) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : records) {
                    read.add(new TopicPartition(r.topic(), r.partition()));
                    say("RECORD " + r.partition() + " " + r.offset());
                }
                try {
                    consumer.commitSync();
                } catch (CommitFailedException | RebalanceInProgressException e) {
                    say("COMMITFAILED");
                }
            }
        } catch (WakeupException e) {
            // `stop` or EOF on stdin.
        } catch (Exception e) {
            say("ERROR " + e);
            e.printStackTrace();
            exit = 1;
        }
        try {
            consumer.close();
        } catch (Exception e) {
            say("ERROR closing: " + e);
            e.printStackTrace();
            exit = 1;
        }
        say("CLOSED");
        System.exit(exit);
    }
}
