#!/usr/bin/env node
/*
 * The reference for bench/read_vs_sdk.sh: a bare read loop with the official
 * AWS JS SDK. Every shard in parallel from TRIM_HORIZON, GetRecords until a
 * page is empty at the tip; counts records and bytes, prints one JSON line.
 * Run with NODE_PATH pointing at tests/node_modules.
 */
'use strict';

const {
  KinesisClient, ListShardsCommand, GetShardIteratorCommand, GetRecordsCommand,
} = require('@aws-sdk/client-kinesis');
const { NodeHttpHandler } = require('@smithy/node-http-handler');

const [endpoint, stream, limitText] = process.argv.slice(2);
if (!endpoint || !stream) {
  process.stderr.write('usage: sdk-read.js ENDPOINT STREAM [LIMIT]\n');
  process.exit(2);
}
const limit = Number(limitText || 1000);
const client = new KinesisClient({
  endpoint,
  region: process.env.AWS_REGION || 'us-east-1',
  credentials: { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench' },
  requestHandler: new NodeHttpHandler({ keepAlive: true }),
});

async function readShard(shardId) {
  let { ShardIterator: it } = await client.send(new GetShardIteratorCommand({
    StreamName: stream, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON',
  }));
  let records = 0;
  let bytes = 0;
  while (it) {
    const page = await client.send(new GetRecordsCommand({ ShardIterator: it, Limit: limit }));
    for (const r of page.Records) bytes += r.Data.length;
    records += page.Records.length;
    it = page.NextShardIterator;
    if (page.Records.length === 0 && page.MillisBehindLatest === 0) break;
  }
  return { records, bytes };
}

(async () => {
  const started = process.hrtime.bigint();
  const { Shards } = await client.send(new ListShardsCommand({ StreamName: stream }));
  const results = await Promise.all(Shards.map((s) => readShard(s.ShardId)));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const records = results.reduce((a, r) => a + r.records, 0);
  const bytes = results.reduce((a, r) => a + r.bytes, 0);
  process.stdout.write(JSON.stringify({ records, bytes, seconds }) + '\n');
})().catch((err) => {
  process.stderr.write(`sdk-read: ${err.name}: ${err.message}\n`);
  process.exit(1);
});
