// Transport benchmark peer: a NestJS microservice echoing on <topic> and a
// NestJS ClientKafka calling it <requests> times with <concurrency> in
// flight, in one process. Prints
// `RESULT requests=N secs=S failed=F p50_us=.. p99_us=..`.
// Usage: node nest-echo-bench.mjs <bootstrap> <topic> <requests> <concurrency>
//        [partitionsConsumedConcurrently, default 1]
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientKafka, MessagePattern, Transport } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { decorateClass, decorateMethod } from './nest-common.mjs';

const [bootstrap, topic, requestsArg, concurrencyArg, partitionsArg] = process.argv.slice(2);
const partitionsConsumedConcurrently = Number(partitionsArg ?? 1);
const requests = Number(requestsArg);
const concurrency = Number(concurrencyArg);
const brokers = bootstrap.split(',');
const group = `nest-echo-${process.pid}`;

class EchoController {
  echo(data) {
    return data;
  }
}
decorateMethod(EchoController, 'echo', MessagePattern(topic));
decorateClass(EchoController, Controller());
class AppModule {}
decorateClass(AppModule, Module({ controllers: [EchoController] }));

const app = await NestFactory.createMicroservice(AppModule, {
  transport: Transport.KAFKA,
  options: {
    client: { clientId: 'nest-echo', brokers },
    consumer: { groupId: group },
    run: { partitionsConsumedConcurrently },
  },
  logger: ['error'],
});
await app.listen();

const client = new ClientKafka({
  client: { clientId: 'nest-echo-client', brokers },
  consumer: { groupId: `${group}-client` },
  producer: { allowAutoTopicCreation: false },
});
client.subscribeToResponseOf(topic);
await client.connect();

const payload = { id: 0, pad: 'x'.repeat(100) };
for (let i = 0; i < 100; i++) await lastValueFrom(client.send(topic, payload)); // warm-up

const latencies = [];
let failed = 0;
const started = process.hrtime.bigint();
const worker = async (n) => {
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    try {
      await lastValueFrom(client.send(topic, payload));
      latencies.push(Number(process.hrtime.bigint() - t) / 1000);
    } catch {
      failed++;
    }
  }
};
await Promise.all(
  Array.from({ length: concurrency }, (_, w) =>
    worker(Math.floor(requests / concurrency) + (w < requests % concurrency ? 1 : 0))),
);
const secs = Number(process.hrtime.bigint() - started) / 1e9;
latencies.sort((a, b) => a - b);
const pct = (q) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? 0);
console.log(`RESULT requests=${requests} secs=${secs.toFixed(3)} failed=${failed} p50_us=${pct(0.5)} p99_us=${pct(0.99)}`);
await client.close();
await app.close();
process.exit(0);
