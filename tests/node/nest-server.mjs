// A NestJS microservice (ServerKafka) with one message pattern and one event
// pattern, the way a Nest app would declare them. It prints `READY` once it
// listens, serves for <seconds>, then prints `events <json>` and exits.
// Usage: node nest-server.mjs <bootstrap> <groupId> <chargePattern> <eventPattern> <seconds>
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventPattern, MessagePattern, RpcException, Transport } from '@nestjs/microservices';
import { decorateClass, decorateMethod } from './nest-common.mjs';

const [bootstrap, groupId, chargePattern, eventPattern, seconds] = process.argv.slice(2);
const events = [];

class BillingController {
  charge(data) {
    if (!data || data.cents === 0) {
      throw new RpcException('nothing to charge');
    }
    return { order: data.order, charged: data.cents, by: 'nest' };
  }
  created(data) {
    events.push(data);
  }
}
decorateMethod(BillingController, 'charge', MessagePattern(chargePattern));
decorateMethod(BillingController, 'created', EventPattern(eventPattern));
decorateClass(BillingController, Controller());

class AppModule {}
decorateClass(AppModule, Module({ controllers: [BillingController] }));

const app = await NestFactory.createMicroservice(AppModule, {
  transport: Transport.KAFKA,
  options: {
    client: { clientId: 'franz-interop', brokers: bootstrap.split(',') },
    consumer: { groupId, heartbeatInterval: 500, sessionTimeout: 10000 },
    subscribe: { fromBeginning: true },
  },
  logger: ['error', 'warn'],
});
await app.listen();
console.log('READY');
await new Promise((resolve) => setTimeout(resolve, Number(seconds) * 1000));
await app.close();
console.log(`events ${JSON.stringify(events)}`);
process.exit(0);
