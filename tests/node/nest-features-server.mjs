// A NestJS microservice (ServerKafka) exercising what franz must match:
//   <prefix>.of        @MessagePattern returning of(1, 2, 3)
//   <prefix>.interval  @MessagePattern returning interval(30).pipe(take(3))
//   <prefix>.void      @MessagePattern returning nothing
//   <prefix>.ctx       @EventPattern recording what KafkaContext reports
//   <prefix>.mp        @MessagePattern echoing its payload (msgpack mode)
// With `msgpack` as the last argument it uses MessagePack serializers and
// `parser: { keepBinary: true }`, and serves only <prefix>.mp.
// It serves until <stopFile> exists, then prints `ctx <json>` and
// `voids <n>` and exits.
// Usage: node nest-features-server.mjs <bootstrap> <groupId> <prefix> <stopFile> [msgpack]
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, EventPattern, MessagePattern, Payload, Transport } from '@nestjs/microservices';
import { interval, of, take } from 'rxjs';
import {
  decorateClass,
  decorateMethod,
  decorateParam,
  msgpackCodecs,
  waitForStop,
} from './nest-common.mjs';

const [bootstrap, groupId, prefix, stopFile, mode] = process.argv.slice(2);
const msgpack = mode === 'msgpack';
const contexts = [];
let voids = 0;

class FeaturesController {
  of() {
    return of(1, 2, 3);
  }
  interval() {
    return interval(30).pipe(take(3));
  }
  void() {
    voids += 1;
  }
  ctx(data, context) {
    const m = context.getMessage();
    contexts.push({
      data,
      topic: context.getTopic(),
      partition: context.getPartition(),
      offset: String(m.offset),
      key: m.key === null || m.key === undefined ? null : String(m.key),
      headers: Object.fromEntries(Object.entries(m.headers).map(([k, v]) => [k, String(v)])),
      timestamp: String(m.timestamp),
    });
  }
  mp(data) {
    return { by: 'nest', got: data };
  }
}
if (msgpack) {
  decorateMethod(FeaturesController, 'mp', MessagePattern(`${prefix}.mp`));
} else {
  decorateMethod(FeaturesController, 'of', MessagePattern(`${prefix}.of`));
  decorateMethod(FeaturesController, 'interval', MessagePattern(`${prefix}.interval`));
  decorateMethod(FeaturesController, 'void', MessagePattern(`${prefix}.void`));
  decorateParam(FeaturesController, 'ctx', 0, Payload());
  decorateParam(FeaturesController, 'ctx', 1, Ctx());
  decorateMethod(FeaturesController, 'ctx', EventPattern(`${prefix}.ctx`));
}
decorateClass(FeaturesController, Controller());

class AppModule {}
decorateClass(AppModule, Module({ controllers: [FeaturesController] }));

const codecs = msgpack ? await msgpackCodecs() : null;
const app = await NestFactory.createMicroservice(AppModule, {
  transport: Transport.KAFKA,
  options: {
    client: { clientId: 'franz-features', brokers: bootstrap.split(',') },
    consumer: { groupId, heartbeatInterval: 500, sessionTimeout: 10000 },
    subscribe: { fromBeginning: true },
    ...(codecs
      ? {
          parser: { keepBinary: true },
          serializer: codecs.serializer,
          deserializer: codecs.requestDeserializer,
        }
      : {}),
  },
  logger: ['error', 'warn'],
});
await app.listen();
console.log('READY');
await waitForStop(stopFile, 200);
await app.close();
console.log(`ctx ${JSON.stringify(contexts)}`);
console.log(`voids ${voids}`);
process.exit(0);
