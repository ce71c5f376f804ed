// A NestJS ClientKafka that sends one request to a franz server, one that
// fails, and one event, then prints `reply <json>`, `error <json>` and exits.
// Usage: node nest-client.mjs <bootstrap> <groupId> <chargePattern> <eventPattern>
import { ClientKafka } from '@nestjs/microservices';
import { lastValueFrom, timeout } from 'rxjs';
import { replyConsumerReady } from './nest-common.mjs';

const [bootstrap, groupId, chargePattern, eventPattern] = process.argv.slice(2);
const client = new ClientKafka({
  client: { clientId: 'franz-interop-client', brokers: bootstrap.split(',') },
  consumer: { groupId, heartbeatInterval: 500, sessionTimeout: 10000 },
});
client.subscribeToResponseOf(chargePattern);
await client.connect();
await replyConsumerReady(client);

const reply = await lastValueFrom(client.send(chargePattern, { order: 7, cents: 1250 }).pipe(timeout(30000)));
console.log(`reply ${JSON.stringify(reply)}`);
try {
  await lastValueFrom(client.send(chargePattern, { order: 8, cents: 0 }).pipe(timeout(30000)));
  console.log('error none');
} catch (e) {
  console.log(`error ${JSON.stringify(e)}`);
}
await lastValueFrom(client.emit(eventPattern, { order: 7, status: 'created' }));
console.log('emitted');
await client.close();
process.exit(0);
