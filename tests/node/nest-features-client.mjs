// A NestJS ClientKafka calling a franz server:
//   <prefix>.stream  (a franz handler streaming three values), collected
//   <prefix>.void    (a franz handler returning nothing), collected
//   <prefix>.keys    three keyed events: string, number and object keys
//   <prefix>.mpf     (msgpack mode only) a MessagePack request
// It prints `stream <json>`, `void <json>`, `emitted` (or `mp <json>`).
// Usage: node nest-features-client.mjs <bootstrap> <groupId> <prefix> [msgpack]
import { ClientKafka } from '@nestjs/microservices';
import { lastValueFrom, timeout, toArray } from 'rxjs';
import { msgpackCodecs, replyConsumerReady } from './nest-common.mjs';

const [bootstrap, groupId, prefix, mode] = process.argv.slice(2);
const msgpack = mode === 'msgpack';
const codecs = msgpack ? await msgpackCodecs() : null;
const client = new ClientKafka({
  client: { clientId: 'franz-features-client', brokers: bootstrap.split(',') },
  consumer: { groupId, heartbeatInterval: 500, sessionTimeout: 10000 },
  ...(codecs
    ? {
        parser: { keepBinary: true },
        serializer: codecs.serializer,
        deserializer: codecs.responseDeserializer,
      }
    : {}),
});
const all = (pattern, data) =>
  lastValueFrom(client.send(pattern, data).pipe(timeout(30000), toArray()));

if (msgpack) {
  client.subscribeToResponseOf(`${prefix}.mpf`);
  await client.connect();
  await replyConsumerReady(client);
  const got = await all(`${prefix}.mpf`, { n: 7, tags: ['a', 'b'], nested: { ok: true } });
  console.log(`mp ${JSON.stringify(got)}`);
} else {
  client.subscribeToResponseOf(`${prefix}.stream`);
  client.subscribeToResponseOf(`${prefix}.void`);
  await client.connect();
  await replyConsumerReady(client);
  console.log(`stream ${JSON.stringify(await all(`${prefix}.stream`, { n: 3 }))}`);
  console.log(`void ${JSON.stringify(await all(`${prefix}.void`, { n: 0 }))}`);
  for (const [k, key] of [['string', 'customer-42'], ['number', 7], ['object', { id: 1 }]]) {
    await lastValueFrom(client.emit(`${prefix}.keys`, { key, value: { from: 'nest', k } }));
  }
  console.log('emitted');
}
await client.close();
process.exit(0);
