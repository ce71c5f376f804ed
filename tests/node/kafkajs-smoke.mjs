// KafkaJS smoke test against the harness broker: create a topic, produce
// keyed messages with headers, consume them back in a group, and print one
// JSON line describing what came back. The Rust test checks that line.
// Usage: node kafkajs-smoke.mjs <bootstrap> <topic> <group> <count>
import { Kafka, logLevel } from 'kafkajs';

const [bootstrap, topic, groupId, countArg] = process.argv.slice(2);
const count = Number(countArg ?? 10);
const kafka = new Kafka({
  clientId: 'franz-kafkajs-smoke',
  brokers: bootstrap.split(','),
  logLevel: logLevel.WARN,
});

const fail = (msg) => { console.error(msg); process.exit(1); };
const timer = setTimeout(() => fail(`timed out; got ${received.length}/${count}`), 60_000);

const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true });
await admin.disconnect();

const producer = kafka.producer();
await producer.connect();
const messages = Array.from({ length: count }, (_, i) => ({
  key: `key-${i}`,
  value: JSON.stringify({ i }),
  headers: { source: 'kafkajs' },
}));
const acks = await producer.send({ topic, messages });
await producer.disconnect();

const received = [];
const consumer = kafka.consumer({ groupId });
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
await new Promise((resolve) => {
  consumer.run({
    eachMessage: async ({ partition, message }) => {
      received.push({
        partition,
        key: message.key?.toString(),
        value: JSON.parse(message.value.toString()),
        header: message.headers?.source?.toString(),
      });
      if (received.length === count) resolve();
    },
  });
});
await consumer.disconnect();
clearTimeout(timer);
console.log(JSON.stringify({ produced: acks.length, received }));
