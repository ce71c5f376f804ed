// A KafkaJS consumer (NestJS's default RoundRobinAssigner) in a group that
// franz members join too. Runs for <seconds>, then prints three lines:
// `joins N`, `assignment p p ...` (its last) and `received p:o p:o ...`.
// Usage: node kafkajs-group-member.mjs <bootstrap> <topic> <group> <seconds>
import { Kafka, logLevel } from 'kafkajs';

const [bootstrap, topic, groupId, secondsArg] = process.argv.slice(2);
const kafka = new Kafka({
  clientId: 'franz-kafkajs-group',
  brokers: bootstrap.split(','),
  logLevel: logLevel.WARN,
});

const received = [];
let assignment = {};
let joins = 0;
const consumer = kafka.consumer({ groupId, heartbeatInterval: 500, sessionTimeout: 10000 });
consumer.on(consumer.events.GROUP_JOIN, (e) => {
  joins += 1;
  assignment = e.payload.memberAssignment;
});
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
await consumer.run({
  eachMessage: async ({ partition, message }) => {
    received.push({ partition, offset: Number(message.offset) });
  },
});
await new Promise((resolve) => setTimeout(resolve, Number(secondsArg) * 1000));
await consumer.disconnect();
console.log(`joins ${joins}`);
console.log(`assignment ${(assignment[topic] ?? []).join(' ')}`);
console.log(`received ${received.map((r) => `${r.partition}:${r.offset}`).join(' ')}`);
