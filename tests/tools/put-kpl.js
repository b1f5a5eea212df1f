#!/usr/bin/env node
/*
 * Puts COUNT deterministic user records into a stream as KPL aggregated
 * records (made by aws-kinesis-agg through kpl-fixtures.js), PER user records
 * to an aggregate, re-sending failed entries; prints a JSON summary. Every
 * --plain-every'th user record is put as a plain record instead, and --decoys
 * adds records that start with the KPL magic but carry a wrong MD5.
 *
 * User record i: partition key "kpl-<i mod 37>" ("ключ-<i mod 37>" when i is
 * a multiple of 5); explicit hash key (i mod 256) * 2^120 when i mod 4 is 1,
 * 2^128-1 when i mod 8 is 3, else none; data the JSON
 * {"id":i,"pk":...,"ehk":...|null,"agg":true|false,"text":...}. An aggregate
 * is put with its first user record's keys, so many of its user records
 * belong, by hash key, to other shards. Decoy k has the data
 * magic + {"decoy":k} + 16 zero bytes.
 */
'use strict';

const { PutRecordsCommand } = require('@aws-sdk/client-kinesis');
const { parseFlags, makeClient, sleep, run } = require('./lib');
const { aggregate, MAX_HASH_KEY } = require('./kpl-fixtures');

const BATCH = 500;
const MAGIC = Buffer.from('f3899ac2', 'hex');

const flags = parseFlags(process.argv.slice(2), {
  stream: { type: 'string', required: true, help: 'stream name' },
  count: { type: 'int', required: true, help: 'number of user records' },
  start: { type: 'int', default: 0, help: 'id of the first user record' },
  per: { type: 'int', default: 25, help: 'user records per aggregated record' },
  'plain-every': { type: 'int', default: 0, help: 'put every Nth user record plain (0: none)' },
  decoys: { type: 'int', default: 0, help: 'records with the KPL magic and a wrong MD5' },
  'max-attempts': { type: 'int', default: 20, help: 'attempts per record before giving up' },
}, 'put-kpl.js --endpoint URL --stream NAME --count N [--per M] [--plain-every K] [--decoys D]');

function userRecord(i, agg) {
  const partitionKey = i % 5 === 0 ? `ключ-${i % 37}` : `kpl-${i % 37}`;
  let explicitHashKey;
  if (i % 4 === 1) explicitHashKey = (BigInt(i % 256) << 120n).toString();
  else if (i % 8 === 3) explicitHashKey = MAX_HASH_KEY;
  const body = {
    id: i,
    pk: partitionKey,
    ehk: explicitHashKey === undefined ? null : explicitHashKey,
    agg,
    text: i % 7 === 0 ? `naïve café №${i}` : `user record ${i}`,
  };
  const r = { partitionKey, data: Buffer.from(JSON.stringify(body)) };
  if (explicitHashKey !== undefined) r.explicitHashKey = explicitHashKey;
  return r;
}

// The Kinesis records to put, in order: aggregates, plain records, decoys.
function plan() {
  const entries = [];
  let group = [];
  const flush = () => {
    for (const a of aggregate(group)) {
      const e = { Data: a.data, PartitionKey: a.partitionKey, kind: 'aggregated', users: a.records.length };
      if (a.explicitHashKey !== undefined) e.ExplicitHashKey = a.explicitHashKey;
      entries.push(e);
    }
    group = [];
  };
  for (let i = flags.start; i < flags.start + flags.count; i++) {
    const plain = flags['plain-every'] > 0 && i % flags['plain-every'] === 0;
    if (plain) {
      const r = userRecord(i, false);
      const e = { Data: r.data, PartitionKey: r.partitionKey, kind: 'plain', users: 1 };
      if (r.explicitHashKey !== undefined) e.ExplicitHashKey = r.explicitHashKey;
      entries.push(e);
      continue;
    }
    group.push(userRecord(i, true));
    if (group.length === flags.per) flush();
  }
  flush();
  for (let k = 0; k < flags.decoys; k++) {
    const data = Buffer.concat([MAGIC, Buffer.from(JSON.stringify({ decoy: k })), Buffer.alloc(16)]);
    entries.push({ Data: data, PartitionKey: `decoy-${k}`, kind: 'decoy', users: 0 });
  }
  return entries;
}

run('put-kpl', async () => {
  if (flags.count < 0 || flags.per < 1 || flags['plain-every'] < 0 || flags.decoys < 0) {
    throw new Error('--count, --plain-every and --decoys must be >= 0, --per >= 1');
  }
  const client = makeClient(flags);
  const began = Date.now();
  const entries = plan();
  const counts = { aggregated: 0, plain: 0, decoy: 0, users_in_aggregates: 0 };
  const shards = {};
  let retries = 0;

  for (let first = 0; first < entries.length; first += BATCH) {
    let pending = entries.slice(first, first + BATCH);
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
          Records: pending.map((e) => {
            const r = { Data: e.Data, PartitionKey: e.PartitionKey };
            if (e.ExplicitHashKey !== undefined) r.ExplicitHashKey = e.ExplicitHashKey;
            return r;
          }),
        }));
      } catch (err) {
        if (err.$retryable || err.$metadata?.httpStatusCode >= 500 ||
            err.name === 'ProvisionedThroughputExceededException') {
          continue;
        }
        throw err;
      }
      const failed = [];
      out.Records.forEach((r, i) => {
        const e = pending[i];
        if (r.ErrorCode) {
          failed.push(e);
          return;
        }
        counts[e.kind]++;
        if (e.kind === 'aggregated') counts.users_in_aggregates += e.users;
        shards[r.ShardId] = (shards[r.ShardId] || 0) + 1;
      });
      pending = failed;
    }
  }
  process.stdout.write(JSON.stringify({
    stream: flags.stream,
    user_records: flags.count,
    start: flags.start,
    aggregated_records: counts.aggregated,
    users_in_aggregates: counts.users_in_aggregates,
    plain_records: counts.plain,
    decoys: counts.decoy,
    retries,
    elapsed_ms: Date.now() - began,
    shards,
  }) + '\n');
});
