#!/usr/bin/env node
/*
 * Reshards a stream and waits until it is ACTIVE again: split one shard in
 * the middle of its hash range, merge two adjacent shards, or change the
 * shard count (UNIFORM_SCALING). Prints the shards afterwards as JSON.
 */
'use strict';

const {
  SplitShardCommand, MergeShardsCommand, UpdateShardCountCommand,
  DescribeStreamSummaryCommand, ListShardsCommand,
} = require('@aws-sdk/client-kinesis');
const { parseFlags, makeClient, sleep, run } = require('./lib');

const flags = parseFlags(process.argv.slice(2), {
  stream: { type: 'string', required: true, help: 'stream name' },
  split: { type: 'string', help: 'shard id to split in the middle of its hash range' },
  merge: { type: 'string', help: 'two adjacent shard ids, comma-separated, to merge' },
  'shard-count': { type: 'int', help: 'target open shard count (UpdateShardCount)' },
  'timeout-s': { type: 'int', default: 60, help: 'how long to wait for ACTIVE' },
}, 'reshard.js --endpoint URL --stream NAME (--split SHARD | --merge A,B | --shard-count N)');

async function waitActive(client) {
  const deadline = Date.now() + flags['timeout-s'] * 1000;
  for (;;) {
    const out = await client.send(new DescribeStreamSummaryCommand({ StreamName: flags.stream }));
    if (out.StreamDescriptionSummary.StreamStatus === 'ACTIVE') return;
    if (Date.now() > deadline) throw new Error(`stream ${flags.stream} is not ACTIVE`);
    await sleep(50);
  }
}

async function listShards(client) {
  const shards = [];
  let token;
  do {
    const out = await client.send(new ListShardsCommand(token ? { NextToken: token } : { StreamName: flags.stream }));
    shards.push(...out.Shards);
    token = out.NextToken;
  } while (token);
  return shards;
}

run('reshard', async () => {
  const client = makeClient(flags);
  await waitActive(client);
  if (flags.split) {
    const shard = (await listShards(client)).find((s) => s.ShardId === flags.split);
    if (!shard) throw new Error(`no shard ${flags.split}`);
    const lo = BigInt(shard.HashKeyRange.StartingHashKey);
    const hi = BigInt(shard.HashKeyRange.EndingHashKey);
    const mid = (lo + hi + 1n) / 2n;
    await client.send(new SplitShardCommand({
      StreamName: flags.stream, ShardToSplit: flags.split, NewStartingHashKey: mid.toString(),
    }));
  } else if (flags.merge) {
    const [a, b] = flags.merge.split(',');
    await client.send(new MergeShardsCommand({
      StreamName: flags.stream, ShardToMerge: a, AdjacentShardToMerge: b,
    }));
  } else if (flags['shard-count'] !== undefined) {
    await client.send(new UpdateShardCountCommand({
      StreamName: flags.stream, TargetShardCount: flags['shard-count'], ScalingType: 'UNIFORM_SCALING',
    }));
  } else {
    throw new Error('one of --split, --merge, --shard-count is required');
  }
  await waitActive(client);
  const shards = await listShards(client);
  process.stdout.write(JSON.stringify(shards.map((s) => ({
    id: s.ShardId,
    parent: s.ParentShardId || null,
    adjacent_parent: s.AdjacentParentShardId || null,
    start: s.HashKeyRange.StartingHashKey,
    end: s.HashKeyRange.EndingHashKey,
    closed: Boolean(s.SequenceNumberRange.EndingSequenceNumber),
  }))) + '\n');
});
