// Spring Kafka peer of franz's transport: a @KafkaListener with @SendTo that
// echoes what it gets, and a ReplyingKafkaTemplate that calls a pattern with
// requests in flight. Run by franz-testkit (SpringPeer) on the Spring Kafka
// classpath of spring/pom.xml; no Spring Boot.
//
//   server <bootstrap> <topic> <group> <concurrency>
//       the listener, echoing the String value to the request's
//       kafka_replyTopic / kafka_replyPartition; prints READY once it holds
//       partitions and runs until stdin closes.
//   client <bootstrap> <topic> <requests> <concurrency>
//       the template: <requests> requests {"id":i,"pad":...} to <topic>,
//       replies on <topic>.reply; each reply must carry its own id. Prints
//       RESULT requests=N secs=S failed=F p50_us=.. p99_us=.. after a
//       warm-up of min(500, N/5) requests (the JIT's).
//   echo <bootstrap> <topic> <requests> <concurrency> <partitions>
//       both in one process (the transport benchmark's Spring peer), the
//       listener running <partitions> consumers.
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.springframework.context.annotation.AnnotationConfigApplicationContext;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.kafka.annotation.EnableKafka;
import org.springframework.kafka.annotation.KafkaListener;
import org.springframework.kafka.config.ConcurrentKafkaListenerContainerFactory;
import org.springframework.kafka.config.KafkaListenerEndpointRegistry;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaProducerFactory;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.kafka.listener.ConcurrentMessageListenerContainer;
import org.springframework.kafka.listener.ContainerProperties;
import org.springframework.kafka.requestreply.ReplyingKafkaTemplate;
import org.springframework.messaging.handler.annotation.SendTo;

public class SpringEcho {
    static String bootstrap;

    static Map<String, Object> producerProps() {
        Map<String, Object> p = new HashMap<>();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        // A request and its reply each wait out the producer's linger (5 ms
        // by default since Kafka 4.0): for request-reply it is latency, so
        // send at once, as Spring's request-reply users set it.
        p.put(ProducerConfig.LINGER_MS_CONFIG, 0);
        return p;
    }

    static Map<String, Object> consumerProps(String group, String reset) {
        Map<String, Object> c = new HashMap<>();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, reset);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        return c;
    }

    /** The listener side: a container factory with a reply template. */
    @Configuration
    @EnableKafka
    public static class Server {
        @Bean
        public KafkaTemplate<String, String> replyTemplate() {
            return new KafkaTemplate<>(new DefaultKafkaProducerFactory<>(producerProps()));
        }

        @Bean
        public ConcurrentKafkaListenerContainerFactory<String, String> kafkaListenerContainerFactory(
                KafkaTemplate<String, String> replyTemplate) {
            ConcurrentKafkaListenerContainerFactory<String, String> f = new ConcurrentKafkaListenerContainerFactory<>();
            f.setConsumerFactory(new DefaultKafkaConsumerFactory<>(
                    consumerProps(System.getProperty("franz.group"), "earliest")));
            f.setReplyTemplate(replyTemplate);
            return f;
        }

        @Bean
        public Echo echo() {
            return new Echo();
        }
    }

    /** Echoes the request; @SendTo with no topic replies where the request asks. */
    public static class Echo {
        @KafkaListener(id = "echo", topics = "${franz.topic}", concurrency = "${franz.concurrency}")
        @SendTo
        public String echo(String request) {
            return request;
        }
    }

    static AnnotationConfigApplicationContext startServer(String topic, String group, int concurrency)
            throws InterruptedException {
        System.setProperty("franz.topic", topic);
        System.setProperty("franz.group", group);
        System.setProperty("franz.concurrency", Integer.toString(concurrency));
        AnnotationConfigApplicationContext ctx = new AnnotationConfigApplicationContext(Server.class);
        KafkaListenerEndpointRegistry registry = ctx.getBean(KafkaListenerEndpointRegistry.class);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (registry.getListenerContainer("echo").getAssignedPartitions().isEmpty()) {
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("the listener got no partitions in 60 s");
            }
            Thread.sleep(50);
        }
        return ctx;
    }

    static ReplyingKafkaTemplate<String, String, String> startClient(String topic) throws InterruptedException {
        ContainerProperties props = new ContainerProperties(topic + ".reply");
        props.setGroupId("spring-echo-client-" + UUID.randomUUID());
        ConcurrentMessageListenerContainer<String, String> replies = new ConcurrentMessageListenerContainer<>(
                new DefaultKafkaConsumerFactory<>(consumerProps(props.getGroupId(), "latest")), props);
        ReplyingKafkaTemplate<String, String, String> template = new ReplyingKafkaTemplate<>(
                new DefaultKafkaProducerFactory<>(producerProps()), replies);
        template.setDefaultReplyTimeout(Duration.ofSeconds(30));
        template.setSharedReplyTopic(false);
        template.start();
        if (!template.waitForAssignment(Duration.ofSeconds(60))) {
            throw new IllegalStateException("the reply container got no partitions in 60 s");
        }
        return template;
    }

    /** Calls `topic` `n` times with `concurrency` in flight; returns latencies (ns) and failures. */
    static long[] call(ReplyingKafkaTemplate<String, String, String> template, String topic, int n,
            int concurrency, List<Long> latencies) throws InterruptedException {
        Semaphore window = new Semaphore(concurrency);
        AtomicLong failed = new AtomicLong();
        String pad = "x".repeat(100);
        for (int i = 0; i < n; i++) {
            window.acquire();
            String request = "{\"id\":" + i + ",\"pad\":\"" + pad + "\"}";
            String expect = "\"id\":" + i + ",";
            long t0 = System.nanoTime();
            template.sendAndReceive(new ProducerRecord<>(topic, request)).whenComplete((reply, err) -> {
                long took = System.nanoTime() - t0;
                if (err != null || reply.value() == null || !reply.value().contains(expect)) {
                    failed.incrementAndGet();
                    if (err != null) {
                        System.err.println("SpringEcho: " + err);
                    } else {
                        System.err.println("SpringEcho: wrong reply " + reply.value() + " for " + expect);
                    }
                } else {
                    synchronized (latencies) {
                        latencies.add(took);
                    }
                }
                window.release();
            });
        }
        window.acquire(concurrency);
        return new long[] { failed.get() };
    }

    static void measure(ReplyingKafkaTemplate<String, String, String> template, String topic, int n,
            int concurrency) throws InterruptedException {
        int warmup = Math.min(500, n / 5);
        call(template, topic, warmup, concurrency, new ArrayList<>());
        List<Long> latencies = new ArrayList<>(n);
        long start = System.nanoTime();
        long failed = call(template, topic, n, concurrency, latencies)[0];
        double secs = (System.nanoTime() - start) / 1e9;
        Collections.sort(latencies);
        long p50 = latencies.isEmpty() ? 0 : latencies.get(latencies.size() / 2) / 1000;
        long p99 = latencies.isEmpty() ? 0 : latencies.get(Math.min(latencies.size() - 1, (int) (latencies.size() * 0.99))) / 1000;
        System.out.printf("RESULT requests=%d secs=%.3f failed=%d p50_us=%d p99_us=%d%n", n, secs, failed, p50, p99);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        String mode = args[0];
        bootstrap = args[1];
        String topic = args[2];
        switch (mode) {
            case "server" -> {
                AnnotationConfigApplicationContext ctx = startServer(topic, args[3], Integer.parseInt(args[4]));
                System.out.println("READY");
                System.out.flush();
                while (System.in.read() != -1) {
                    // Runs until the harness closes stdin.
                }
                ctx.close();
            }
            case "client" -> {
                ReplyingKafkaTemplate<String, String, String> template = startClient(topic);
                measure(template, topic, Integer.parseInt(args[3]), Integer.parseInt(args[4]));
                template.stop();
            }
            case "echo" -> {
                AnnotationConfigApplicationContext ctx = startServer(topic, "spring-echo-" + ProcessHandle.current().pid(),
                        Integer.parseInt(args[5]));
                ReplyingKafkaTemplate<String, String, String> template = startClient(topic);
                measure(template, topic, Integer.parseInt(args[3]), Integer.parseInt(args[4]));
                template.stop();
                ctx.close();
            }
            default -> throw new IllegalArgumentException("mode: server, client or echo");
        }
        System.exit(0);
    }
}
