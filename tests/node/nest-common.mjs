// Helpers for the NestJS interop scripts: plain ESM, so decorators are
// applied by hand (what the TypeScript compiler would emit).
import 'reflect-metadata';

/** Applies method decorators to `Class.prototype[name]`. */
export function decorateMethod(Class, name, ...decorators) {
  const proto = Class.prototype;
  let descriptor = Object.getOwnPropertyDescriptor(proto, name);
  for (const d of decorators.reverse()) {
    descriptor = d(proto, name, descriptor) ?? descriptor;
  }
  Object.defineProperty(proto, name, descriptor);
}

/** Applies class decorators. */
export function decorateClass(Class, ...decorators) {
  let out = Class;
  for (const d of decorators.reverse()) {
    out = d(out) ?? out;
  }
  return out;
}

/**
 * Resolves once `stopFile` exists (the Rust test creates it when it is
 * done), or after `maxSeconds` as a safety net.
 */
export async function waitForStop(stopFile, maxSeconds) {
  const { existsSync } = await import('node:fs');
  const deadline = Date.now() + Number(maxSeconds) * 1000;
  while (!existsSync(stopFile) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * MessagePack (de)serializers for ServerKafka and ClientKafka, the way a
 * Nest app plugs in its own codec: `serializer` and `deserializer` options,
 * with `parser: { keepBinary: true }` so the value reaches the
 * deserializer as the raw Buffer. Keys and headers stay Nest's.
 */
export async function msgpackCodecs() {
  const { encode, decode } = await import('@msgpack/msgpack');
  const toBuffer = (v) => (v === undefined || v === null ? null : Buffer.from(encode(v)));
  const fromBuffer = (b) => (b === null || b === undefined || b.length === 0 ? null : decode(b));
  const isEnvelope = (v) =>
    v !== null && typeof v === 'object' && !Buffer.isBuffer(v) && ('key' in v || 'value' in v);
  const serializer = {
    serialize(value) {
      const message = isEnvelope(value) ? { ...value } : { value };
      message.value = toBuffer(message.value);
      if (message.key !== undefined && message.key !== null && typeof message.key !== 'string') {
        message.key = JSON.stringify(message.key);
      }
      message.headers = message.headers ?? {};
      return message;
    },
  };
  // ServerKafka: the request packet.
  const requestDeserializer = {
    deserialize(message, options) {
      return { pattern: options?.channel, data: fromBuffer(message.value) };
    },
  };
  // ClientKafka: a reply, with Nest's err / is-disposed headers.
  const responseDeserializer = {
    deserialize(message) {
      const id = message.headers['kafka_correlationId'].toString();
      if (message.headers['kafka_nest-err'] !== undefined) {
        return { id, err: message.headers['kafka_nest-err'], isDisposed: true };
      }
      const isDisposed = message.headers['kafka_nest-is-disposed'] !== undefined;
      return { id, response: fromBuffer(message.value), isDisposed };
    },
  };
  return { serializer, requestDeserializer, responseDeserializer };
}

/** Applies a parameter decorator (`@Payload()`, `@Ctx()`) to argument `index`. */
export function decorateParam(Class, name, index, decorator) {
  decorator(Class.prototype, name, index);
}

/**
 * Waits until a ClientKafka's reply consumer has been through a fetch
 * (KafkaJS's FETCH_START fires per fetch; one after connect means the
 * group join is done and the reply partition's starting offset is
 * resolved), at most `maxMs`. A reply written before that point would be
 * skipped by a consumer that starts at the latest offset: a NestJS client
 * race, not the server's, which shows up when the machine is loaded.
 */
export async function replyConsumerReady(client, maxMs = 6000) {
  const consumer = client.consumer;
  if (!consumer || !consumer.events) {
    return;
  }
  await new Promise((resolve) => {
    let off = () => {};
    const timer = setTimeout(() => {
      off();
      resolve();
    }, maxMs);
    off = consumer.on(consumer.events.FETCH_START, () => {
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}
