#!/usr/bin/env node
/*
 * Creates a Kinesis stream (provisioned, N shards) and waits until it is
 * ACTIVE. An existing stream is not an error. Prints a JSON summary.
 */
'use strict';

const {
  CreateStreamCommand, DescribeStreamSummaryCommand, ListShardsCommand,
} = require('@aws-sdk/client-kinesis');
const { parseFlags, makeClient, sleep, run } = require('./lib');

const flags = parseFlags(process.argv.slice(2), {
  stream: { type: 'string', required: true, help: 'stream name' },
  shards: { type: 'int', default: 1, help: 'shard count' },
  'timeout-s': { type: 'int', default: 60, help: 'how long to wait for ACTIVE' },
}, 'create-stream.js --endpoint URL --stream NAME [--shards N]');

run('create-stream', async () => {
  const client = makeClient(flags);
  try {
    await client.send(new CreateStreamCommand({ StreamName: flags.stream, ShardCount: flags.shards }));
  } catch (err) {
    if (err.name !== 'ResourceInUseException') throw err;
  }
  const deadline = Date.now() + flags['timeout-s'] * 1000;
  let summary;
  for (;;) {
    const out = await client.send(new DescribeStreamSummaryCommand({ StreamName: flags.stream }));
    summary = out.StreamDescriptionSummary;
    if (summary.StreamStatus === 'ACTIVE') break;
    if (Date.now() > deadline) throw new Error(`stream ${flags.stream} is still ${summary.StreamStatus}`);
    await sleep(50);
  }
  const shards = await client.send(new ListShardsCommand({ StreamName: flags.stream }));
  process.stdout.write(JSON.stringify({
    stream: flags.stream,
    arn: summary.StreamARN,
    status: summary.StreamStatus,
    shards: shards.Shards.map((s) => s.ShardId),
  }) + '\n');
});
