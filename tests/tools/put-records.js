#!/usr/bin/env node
/*
 * Puts COUNT deterministic JSON records into a stream with PutRecords
 * (batches of 500, or --batch, --interval-ms apart: a steady producer),
 * re-sending the entries that fail, and prints a JSON
 * summary: per shard the record count and the first and last sequence
 * number. Record i (start <= i < start + count) has the body
 * {"id":i,"name":"msg-i"} (plus "pad" with --pad) and the partition key
 * "pk-<i mod K>" (K = --partition-keys, default: one key per record).
 * With --shape dlt the body is a nested order as dlt sources see them
 * (about 4.5 rows each once normalised: the root, two items, one or two
 * tags): {"id","name","created_at","customer":{...},"items":[{...},{...}],
 * "tags":[...]}.
 */
'use strict';

const { PutRecordsCommand } = require('@aws-sdk/client-kinesis');
const { parseFlags, makeClient, sleep, run } = require('./lib');
// The bodies, shared with the replay endpoint (bench/replay/server.js).
const { SHAPES, bodyTextOf } = require('../../bench/lib/bodies');

const flags = parseFlags(process.argv.slice(2), {
  stream: { type: 'string', required: true, help: 'stream name' },
  count: { type: 'int', required: true, help: 'number of records' },
  start: { type: 'int', default: 0, help: 'id of the first record' },
  'partition-keys': { type: 'int', help: 'number of distinct partition keys (default: one per record)' },
  pad: { type: 'int', default: 0, help: 'add a "pad" field of this many characters to each body' },
  shape: { type: 'string', default: 'flat', help: 'flat ({"id","name"}) or dlt (a nested order)' },
  json: { type: 'bool', help: 'also list every record (id, partition_key, shard_id, sequence_number)' },
  'max-attempts': { type: 'int', default: 20, help: 'attempts per record before giving up' },
  batch: { type: 'int', default: 500, help: 'records per PutRecords call (1..500)' },
  'interval-ms': { type: 'int', default: 0, help: 'one call every this many ms: a steady producer' },
}, 'put-records.js --endpoint URL --stream NAME --count N [--start I] [--partition-keys K] ' +
  '[--batch B --interval-ms MS] [--json]');

const BATCH = flags.batch;

function bodyOf(id) {
  return Buffer.from(bodyTextOf(id, flags.shape, flags.pad));
}

function partitionKeyOf(id) {
  const k = flags['partition-keys'];
  return `pk-${k ? id % k : id}`;
}

// Sequence numbers are decimal strings too long for a double.
const seqLess = (a, b) => BigInt(a) < BigInt(b);

run('put-records', async () => {
  if (flags.count < 0 || flags['partition-keys'] !== undefined && flags['partition-keys'] < 1) {
    throw new Error('--count must be >= 0 and --partition-keys >= 1');
  }
  if (!SHAPES.includes(flags.shape)) throw new Error(`--shape must be ${SHAPES.join(' or ')}`);
  if (BATCH < 1 || BATCH > 500 || flags['interval-ms'] < 0) {
    throw new Error('--batch must be 1..500 and --interval-ms >= 0');
  }
  const client = makeClient(flags);
  const began = Date.now();
  const shards = {};
  const records = [];
  let retries = 0;

  const record = (id, shardId, seq) => {
    const s = shards[shardId] || (shards[shardId] = { count: 0, first_sequence: seq, last_sequence: seq });
    s.count++;
    if (seqLess(seq, s.first_sequence)) s.first_sequence = seq;
    if (seqLess(s.last_sequence, seq)) s.last_sequence = seq;
    if (flags.json) records.push({ id, partition_key: partitionKeyOf(id), shard_id: shardId, sequence_number: seq });
  };

  for (let first = flags.start; first < flags.start + flags.count; first += BATCH) {
    // calls on a fixed beat (not a pause after each), so the rate holds
    const due = began + ((first - flags.start) / BATCH) * flags['interval-ms'];
    if (first > flags.start && due > Date.now()) await sleep(due - Date.now());
    let pending = [];
    for (let id = first; id < Math.min(first + BATCH, flags.start + flags.count); id++) pending.push(id);
    for (let attempt = 1; pending.length > 0; attempt++) {
      if (attempt > flags['max-attempts']) {
        throw new Error(`${pending.length} records still failing after ${flags['max-attempts']} attempts`);
      }
      if (attempt > 1) {
        retries += pending.length;
        await sleep(Math.min(2000, 25 * 2 ** attempt));
      }
      let out;
      try {
        out = await client.send(new PutRecordsCommand({
          StreamName: flags.stream,
          Records: pending.map((id) => ({ Data: bodyOf(id), PartitionKey: partitionKeyOf(id) })),
        }));
      } catch (err) {
        // The SDK has retried already; a throttled or failed batch is tried again whole.
        if (err.$retryable || err.$metadata?.httpStatusCode >= 500 ||
            err.name === 'ProvisionedThroughputExceededException') {
          continue;
        }
        throw err;
      }
      const failed = [];
      out.Records.forEach((r, i) => {
        if (r.ErrorCode) failed.push(pending[i]);
        else record(pending[i], r.ShardId, r.SequenceNumber);
      });
      pending = failed;
    }
  }
  if (flags.json) records.sort((a, b) => a.id - b.id);
  const summary = {
    stream: flags.stream,
    count: flags.count,
    start: flags.start,
    retries,
    elapsed_ms: Date.now() - began,
    shards,
  };
  if (flags.json) summary.records = records;
  process.stdout.write(JSON.stringify(summary) + '\n');
});
