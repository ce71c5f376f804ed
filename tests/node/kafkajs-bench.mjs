// KafkaJS, a peer of franz's records benchmarks (benches/src/bin/bench.rs):
// one process per run, printing the RESULT line the driver reads.
//
//   node kafkajs-bench.mjs produce --bootstrap B --topic T --records N
//        [--size S | --payload-file F] [--compression none|gzip]
//   node kafkajs-bench.mjs consume --bootstrap B --topic T --records N
//
// produce prints `RESULT records=N secs=S failed=F`, consume
// `RESULT records=N secs=S bytes=B`. Settings, as the report lists them:
// acks=all with `idempotent: true` (KafkaJS then allows one request in
// flight), `sendBatch` of up to 10,000 records and 900 KiB; the consumer joins a group and
// counts in `eachBatch`, timed from the group join, with Java's fetch
// defaults (minBytes 1, maxWaitTimeInMs 500, 1 MiB per partition, 50 MiB).
import { readFileSync } from 'node:fs';
import { CompressionTypes, Kafka, logLevel } from 'kafkajs';

const mode = process.argv[2];
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const brokers = arg('--bootstrap', '127.0.0.1:9092').split(',');
const topic = arg('--topic', 'bench');
const records = Number(arg('--records', '1000000'));
const kafka = new Kafka({ clientId: `kafkajs-bench-${process.pid}`, brokers, logLevel: logLevel.ERROR });

if (mode === 'produce') {
  const file = arg('--payload-file', '');
  const value = file ? readFileSync(file) : Buffer.alloc(Number(arg('--size', '100')), 'x');
  const compression = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP }[arg('--compression', 'none')];
  if (compression === undefined) throw new Error('KafkaJS has no built-in codec for ' + arg('--compression'));
  if (Number(arg('--transaction', '0')) > 0) throw new Error('transactions are not measured for KafkaJS');
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();
  // KafkaJS does not split a sendBatch by size, and a partition's batch
  // must stay under the broker's 1 MiB message.max.bytes.
  const chunk = Math.max(1, Math.min(10000, Math.floor((900 << 10) / (value.length + 40))));
  const messages = Array.from({ length: chunk }, () => ({ value }));
  const started = process.hrtime.bigint();
  let failed = 0;
  for (let sent = 0; sent < records; sent += chunk) {
    const n = Math.min(chunk, records - sent);
    try {
      await producer.sendBatch({ acks: -1, compression, topicMessages: [{ topic, messages: n === chunk ? messages : messages.slice(0, n) }] });
    } catch (e) {
      console.error('kafkajs-bench:', e.message);
      failed += n;
    }
  }
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(`RESULT records=${records} secs=${secs.toFixed(3)} failed=${failed}`);
  await producer.disconnect();
} else if (mode === 'consume') {
  const consumer = kafka.consumer({
    groupId: `kafkajs-bench-${process.pid}`,
    minBytes: 1,
    maxWaitTimeInMs: 500,
    maxBytesPerPartition: 1 << 20,
    maxBytes: 50 << 20,
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let started = null;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    started ??= process.hrtime.bigint();
  });
  let got = 0;
  let bytes = 0;
  const done = new Promise((resolve) => {
    consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          bytes += (m.value?.length ?? 0) + (m.key?.length ?? 0);
        }
        got += batch.messages.length;
        if (got >= records) resolve();
      },
    });
  });
  const timer = setTimeout(() => {
    console.error(`kafkajs-bench: only ${got} of ${records} records after 600 s`);
    process.exit(1);
  }, 600_000);
  await done;
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  clearTimeout(timer);
  console.log(`RESULT records=${got} secs=${secs.toFixed(3)} bytes=${bytes}`);
  await consumer.disconnect();
} else {
  console.error('usage: kafkajs-bench.mjs produce|consume [flags]');
  process.exit(2);
}
