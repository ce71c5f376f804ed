// A NestJS server for a group it shares with a franz server: one message
// pattern answering `{by: 'nest', id}`. Serves until <stopFile> exists,
// then prints `handled <json ids>` and exits.
// Usage: node nest-group-server.mjs <bootstrap> <groupId> <pattern> <stopFile>
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Transport } from '@nestjs/microservices';
import { decorateClass, decorateMethod, waitForStop } from './nest-common.mjs';

const [bootstrap, groupId, pattern, stopFile] = process.argv.slice(2);
const handled = [];

class SharedController {
  handle(data) {
    handled.push(data.id);
    return { by: 'nest', id: data.id };
  }
}
decorateMethod(SharedController, 'handle', MessagePattern(pattern));
decorateClass(SharedController, Controller());

class AppModule {}
decorateClass(AppModule, Module({ controllers: [SharedController] }));

const app = await NestFactory.createMicroservice(AppModule, {
  transport: Transport.KAFKA,
  options: {
    client: { clientId: 'franz-shared-group', brokers: bootstrap.split(',') },
    consumer: { groupId, heartbeatInterval: 500, sessionTimeout: 10000 },
  },
  logger: ['error', 'warn'],
});
await app.listen();
console.log('READY');
await waitForStop(stopFile, 200);
await app.close();
console.log(`handled ${JSON.stringify(handled)}`);
process.exit(0);
