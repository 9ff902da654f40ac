// A stock Kafka consumer written by others (kafkajs + @kafkajs/confluent-schema-registry) that reads the
// llm_lineage topic from the beginning and decodes each message with the writer schema fetched by ID from
// a Confluent-compatible registry (ours: GET /schemas/ids/{id}). Prints one JSON line per message on
// stdout; diagnostics and kafkajs logs go to stderr. Exits 0 once it has --count messages, 1 on any
// error (a message it cannot decode included), 2 on timeout.
//
//   node consume.mjs --brokers 127.0.0.1:9092 --registry http://127.0.0.1:8600 --count 7 \
//        [--topic llm_lineage.events.v1] [--timeout-ms 60000] [--group-id g]
//
// Each option may also come from the environment: KAFKA_BROKERS, SCHEMA_REGISTRY_URL, LINEAGE_TOPIC,
// EXPECT_COUNT, TIMEOUT_MS, GROUP_ID; KAFKAJS_LOG_LEVEL (ERROR, WARN, INFO, DEBUG) sets kafkajs' logging.
//
// Our producer compresses batches with zstd, which kafkajs does not decode on its own (it ships GZIP
// only; "ZSTD compression not implemented" otherwise): a decompress-only codec from fzstd (pure JS) is
// registered, as kafkajs documents for extra codecs.
//
// Avro longs are decoded as BigInt (stock avsc refuses longs beyond 2^53 with "potential precision
// loss"): in the output a long is a JSON number when it is a safe integer, else a decimal string.
// Bytes and fixed values are printed as {"$bytes": "<base64>"}.

import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import registryClient from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import { decompress as zstdDecompress } from 'fzstd';
import kafkajs from 'kafkajs';

// CommonJS packages: their exports are reached through the default import.
const { SchemaRegistry, SchemaType } = registryClient;
const { CompressionCodecs, CompressionTypes, Kafka, logLevel } = kafkajs;

const EXIT_ERROR = 1;
const EXIT_TIMEOUT = 2;

function options() {
  const { values } = parseArgs({
    options: {
      brokers: { type: 'string', default: process.env.KAFKA_BROKERS },
      registry: { type: 'string', default: process.env.SCHEMA_REGISTRY_URL },
      topic: { type: 'string', default: process.env.LINEAGE_TOPIC || 'llm_lineage.events.v1' },
      count: { type: 'string', default: process.env.EXPECT_COUNT },
      'timeout-ms': { type: 'string', default: process.env.TIMEOUT_MS || '60000' },
      'group-id': { type: 'string', default: process.env.GROUP_ID },
    },
  });
  const count = Number(values.count);
  const timeoutMs = Number(values['timeout-ms']);
  if (!values.brokers || !values.registry || !Number.isInteger(count) || count < 1 || !(timeoutMs > 0)) {
    throw new Error('usage: node consume.mjs --brokers HOST:PORT[,HOST:PORT] --registry http://HOST:PORT '
      + '--count N [--topic T] [--timeout-ms MS] [--group-id G] (or the environment variables)');
  }
  return {
    brokers: values.brokers.split(',').map((b) => b.trim()).filter(Boolean),
    registry: values.registry.replace(/\/+$/, ''),
    topic: values.topic,
    count,
    timeoutMs,
    groupId: values['group-id'] || `llm-lineage-interop-${randomUUID()}`,
  };
}

CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  async compress() {
    throw new Error('this consumer only decompresses zstd');
  },
  async decompress(buffer) {
    return Buffer.from(zstdDecompress(buffer));
  },
});

// A long type backed by BigInt, so every 64-bit value decodes exactly (avsc's recipe for custom longs).
const bigLong = avro.types.LongType.__with({
  fromBuffer: (buf) => buf.readBigInt64LE(),
  toBuffer: (n) => {
    const buf = Buffer.alloc(8);
    buf.writeBigInt64LE(BigInt(n));
    return buf;
  },
  fromJSON: (json) => BigInt(json),
  toJSON: (n) => Number(n),
  isValid: (n) => typeof n === 'bigint',
  compare: (a, b) => (a === b ? 0 : a < b ? -1 : 1),
});

// Every `long` in a schema (timestamp-micros included: its raw microseconds are what we want) becomes
// bigLong. A hook rather than avsc's `registry` option, which would be shared by every schema parsed.
function longsAsBigInt(schema) {
  if (schema === 'long' || (schema && typeof schema === 'object' && schema.type === 'long')) {
    return bigLong;
  }
  return undefined;
}

function jsonSafe(_key, value) {
  if (typeof value === 'bigint') {
    return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  }
  if (value && value.type === 'Buffer' && Array.isArray(value.data)) { // Buffer#toJSON ran first
    return { $bytes: Buffer.from(value.data).toString('base64') };
  }
  return value;
}

function stderrLogger() {
  return ({ namespace, level, label, log }) => {
    const { message, ...extra } = log;
    process.stderr.write(`kafkajs ${label} [${namespace}] ${message} ${JSON.stringify(extra, jsonSafe)}\n`);
  };
}

function kafkaLogLevel() {
  const wanted = (process.env.KAFKAJS_LOG_LEVEL || 'WARN').toUpperCase();
  return logLevel[wanted] ?? logLevel.WARN;
}

async function decodeMessage(registry, partition, message) {
  const { value } = message;
  if (!value || value.length < 5 || value[0] !== 0) {
    throw new Error(`partition ${partition} offset ${message.offset}: not Confluent-framed Avro `
      + `(${value ? value.length : 0} bytes, first byte ${value && value.length ? value[0] : 'none'})`);
  }
  const schemaId = value.readUInt32BE(1);
  let record;
  try {
    record = await registry.decode(value);
  } catch (err) {
    throw new Error(`partition ${partition} offset ${message.offset}: could not decode with schema id `
      + `${schemaId}: ${err && err.message ? err.message : err}${err && err.url ? ` (${err.url})` : ''}`);
  }
  const writer = await registry.getSchema(schemaId);
  return {
    partition,
    offset: message.offset,
    key: message.key === null ? null : message.key.toString('utf8'),
    timestamp: message.timestamp,
    schema_id: schemaId,
    type: writer.name,
    record,
  };
}

async function main() {
  const opts = options();
  const registry = new SchemaRegistry(
    { host: opts.registry, clientId: 'llm-lineage-interop' },
    { [SchemaType.AVRO]: { typeHook: longsAsBigInt } },
  );
  const kafka = new Kafka({
    clientId: 'llm-lineage-interop',
    brokers: opts.brokers,
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 3, initialRetryTime: 200 },
    logLevel: kafkaLogLevel(),
    logCreator: stderrLogger,
  });
  const consumer = kafka.consumer({
    groupId: opts.groupId,
    allowAutoTopicCreation: false,
    sessionTimeout: 6000, // the test broker runs classic groups only; keep rebalances short
    rebalanceTimeout: 10000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 200,
    retry: { retries: 3 },
  });

  let seen = 0;
  let settle;
  const outcome = new Promise((resolve) => { settle = resolve; });
  const timer = setTimeout(() => settle({
    code: EXIT_TIMEOUT,
    error: `timed out after ${opts.timeoutMs} ms with ${seen} of ${opts.count} messages from topic ${opts.topic}`,
  }), opts.timeoutMs);
  consumer.on(consumer.events.CRASH, ({ payload }) => settle({
    code: EXIT_ERROR, error: `kafkajs consumer crashed: ${payload.error && payload.error.stack}`,
  }));

  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [opts.topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false, // a throwaway group: nothing to resume later
      eachMessage: async ({ partition, message }) => {
        if (seen >= opts.count) {
          return;
        }
        try {
          const line = await decodeMessage(registry, partition, message);
          process.stdout.write(`${JSON.stringify(line, jsonSafe)}\n`);
        } catch (err) {
          settle({ code: EXIT_ERROR, error: err.message });
          return;
        }
        seen += 1;
        if (seen >= opts.count) {
          settle({ code: 0 });
        }
      },
    });
  } catch (err) {
    settle({ code: EXIT_ERROR, error: `kafkajs could not consume ${opts.topic}: ${err && err.stack}` });
  }

  const { code, error } = await outcome;
  clearTimeout(timer);
  if (error) {
    process.stderr.write(`consume.mjs: ${error}\n`);
  }
  await consumer.disconnect().catch((err) => process.stderr.write(`consume.mjs: disconnect: ${err}\n`));
  await new Promise((resolve) => { process.stdout.write('', resolve); });
  process.exit(code);
}

main().catch((err) => {
  process.stderr.write(`consume.mjs: ${err && err.message ? err.message : err}\n`);
  process.exit(EXIT_ERROR);
});
