#!/usr/bin/env node
/*
 * Known-answer fixtures for the KPL de-aggregator (tests/unit/test_kpl.c),
 * made with the reference aggregator, npm aws-kinesis-agg: each case's user
 * records are aggregated into one Kinesis record whose Data goes to
 * tests/fixtures/kpl/<case>.bin, and expected.json lists the user records each
 * file must yield (keys and data in base64, keys also as text for people).
 * Every file is cross-checked with the package's own de-aggregator first.
 * Deterministic: a rerun reproduces the files byte for byte; --check compares
 * instead of writing. Required as a module it offers aggregate() to put-kpl.js.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const agg = require('aws-kinesis-agg');

const MAX_HASH_KEY = (2n ** 128n - 1n).toString();

// Aggregates user records ({partitionKey, data: Buffer, explicitHashKey?}) in
// order into as few Kinesis records as the 1 MiB limit allows. Returns
// [{partitionKey, explicitHashKey, data: Buffer, records: [the user records]}].
function aggregate(userRecords) {
  const out = [];
  const aggregator = new agg.RecordAggregator();
  let pending = [];
  const flush = () => {
    if (pending.length === 0) return;
    const encoded = aggregator.build();
    out.push({
      partitionKey: encoded.partitionKey,
      explicitHashKey: encoded.ExplicitHashKey,
      data: encoded.data,
      records: pending,
    });
    pending = [];
  };
  for (const r of userRecords) {
    const copy = { partitionKey: r.partitionKey, data: r.data };
    if (r.explicitHashKey !== undefined) copy.explicitHashKey = r.explicitHashKey;
    if (!aggregator.checkIfUserRecordFits(copy)) flush();
    aggregator.addUserRecord(copy);
    pending.push(r);
  }
  flush();
  return out;
}

// xorshift32: the same bytes on every run and every machine.
function prng(seed) {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function randomBytes(next, n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = next() & 0xff;
  return b;
}

const json = (v) => Buffer.from(JSON.stringify(v));

function cases() {
  const next = prng(0x4b504c21);
  const all256 = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) all256[i] = i;

  const many = [];
  for (let i = 0; i < 400; i++) {
    let data = json({ id: i, user: `user-${i % 200}`, ok: i % 2 === 0 });
    if (i % 50 === 0) data = randomBytes(next, 200 + i); // two-byte lengths
    if (i === 333) data = randomBytes(next, 17000); // a three-byte length
    const r = { partitionKey: `user-${i % 200}`, data };
    // 140 distinct hash keys: indexes above 127 take two varint bytes
    if (i % 2 === 1) r.explicitHashKey = ((BigInt(i % 280 >> 1) * 2n ** 120n) + 7n).toString();
    many.push(r);
  }

  return [
    {
      name: 'ascii',
      about: 'JSON bodies, partition keys shared between records',
      records: [
        { partitionKey: 'pk-a', data: json({ id: 0, name: 'msg-0' }) },
        { partitionKey: 'pk-b', data: json({ id: 1, name: 'msg-1' }) },
        { partitionKey: 'pk-a', data: json({ id: 2, name: 'msg-2', nested: { x: [1, 2, 3] } }) },
        { partitionKey: 'pk-c', data: Buffer.from('not json at all') },
        { partitionKey: 'pk-b', data: json({ id: 4, name: 'msg-4' }) },
      ],
    },
    {
      name: 'binary',
      about: 'every byte value, random bytes, zeros, and data starting with the KPL magic',
      records: [
        { partitionKey: 'bin-0', data: all256 },
        { partitionKey: 'bin-1', data: randomBytes(next, 1000) },
        { partitionKey: 'bin-2', data: Buffer.alloc(10) },
        { partitionKey: 'bin-3', data: Buffer.concat([Buffer.from('f3899ac2', 'hex'), randomBytes(next, 40)]) },
      ],
    },
    {
      name: 'empty',
      about: 'user records with empty data',
      records: [
        { partitionKey: 'e', data: Buffer.alloc(0) },
        { partitionKey: 'e', data: Buffer.from('x') },
        { partitionKey: 'f', data: Buffer.alloc(0) },
      ],
    },
    {
      name: 'unicode',
      about: 'partition keys beyond ASCII, one with a NUL, one of 256 characters',
      records: [
        { partitionKey: 'ключ', data: Buffer.from('данные') },
        { partitionKey: '日本語のキー', data: Buffer.from('データ') },
        { partitionKey: '🎉 emoji', data: Buffer.from('🎉') },
        { partitionKey: 'e\u0301 combining', data: Buffer.from('é') },
        { partitionKey: 'nul\u0000inside', data: Buffer.from('a\u0000b') },
        { partitionKey: 'k'.repeat(256), data: Buffer.from('long key') },
        { partitionKey: 'ключ', data: Buffer.from('again') },
      ],
    },
    {
      name: 'explicit-hash-keys',
      about: 'explicit hash keys at both ends of the range, shared, and absent',
      records: [
        { partitionKey: 'h', data: Buffer.from('low'), explicitHashKey: '0' },
        { partitionKey: 'h', data: Buffer.from('high'), explicitHashKey: MAX_HASH_KEY },
        { partitionKey: 'h', data: Buffer.from('none') },
        { partitionKey: 'i', data: Buffer.from('mid'), explicitHashKey: (2n ** 127n).toString() },
        { partitionKey: 'j', data: Buffer.from('low again'), explicitHashKey: '0' },
      ],
    },
    { name: 'many', about: '400 records, 200 partition keys, 140 hash keys, a 17000-byte record', records: many },
    { name: 'single', about: 'one user record', records: [{ partitionKey: 'only', data: json({ id: 1 }) }] },
    {
      name: 'nested',
      about: 'a user record whose data is itself an aggregated record: not opened again',
      records: [
        {
          partitionKey: 'outer',
          data: aggregate([
            { partitionKey: 'inner-a', data: Buffer.from('a') },
            { partitionKey: 'inner-b', data: Buffer.from('b') },
          ])[0].data,
        },
        { partitionKey: 'outer', data: Buffer.from('plain') },
      ],
    },
  ];
}

const b64 = (s) => Buffer.from(s).toString('base64');

// The reference de-aggregator (checksums on) must read back what went in.
// Hash keys are compared only where a record has one: for a record without
// one the package reports the table's entry 0 (protobufjs's default index),
// although the wire has no index; the KCL, like us, reports none.
function crossCheck(name, data, records) {
  let got;
  agg.deaggregateSync({ data: data.toString('base64'), sequenceNumber: '1', partitionKey: 'x' }, true,
    (err, recs) => {
      if (err) throw new Error(`${name}: aws-kinesis-agg cannot read its own output: ${err.message}`);
      got = recs;
    });
  if (!got || got.length !== records.length) throw new Error(`${name}: reference de-aggregation count differs`);
  records.forEach((r, i) => {
    const g = got[i];
    if (g.partitionKey !== r.partitionKey || g.data !== r.data.toString('base64') ||
        (r.explicitHashKey !== undefined && g.explicitPartitionKey !== r.explicitHashKey)) {
      throw new Error(`${name}: reference de-aggregation differs at record ${i}`);
    }
  });
}

// Pretty at the top, one line per user record: readable and not too long.
function formatExpected(e) {
  const cases = e.cases.map((c) => {
    const head = ['name', 'about', 'file'].map((k) => `   ${JSON.stringify(k)}: ${JSON.stringify(c[k])},`);
    const recs = c.records.map((r) => `    ${JSON.stringify(r)}`).join(',\n');
    return `  {\n${head.join('\n')}\n   "records": [\n${recs}\n   ]\n  }`;
  });
  return `{\n "generator": ${JSON.stringify(e.generator)},\n "cases": [\n${cases.join(',\n')}\n ]\n}\n`;
}

function build() {
  const files = {};
  const expected = {
    generator: 'tests/tools/kpl-fixtures.js with aws-kinesis-agg ' +
      require('aws-kinesis-agg/package.json').version,
    cases: [],
  };
  for (const c of cases()) {
    const encoded = aggregate(c.records);
    if (encoded.length !== 1) throw new Error(`${c.name}: expected one aggregated record, got ${encoded.length}`);
    crossCheck(c.name, encoded[0].data, c.records);
    files[`${c.name}.bin`] = encoded[0].data;
    expected.cases.push({
      name: c.name,
      about: c.about,
      file: `${c.name}.bin`,
      records: c.records.map((r) => ({
        partition_key: r.partitionKey,
        partition_key_b64: b64(r.partitionKey),
        explicit_hash_key: r.explicitHashKey === undefined ? null : r.explicitHashKey,
        data_b64: r.data.toString('base64'),
      })),
    });
  }
  files['expected.json'] = Buffer.from(formatExpected(expected));
  return files;
}

function main() {
  const args = process.argv.slice(2);
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write('usage: kpl-fixtures.js [--out DIR] [--check]\n' +
      '  writes (or with --check compares) the KPL fixtures; DIR defaults to tests/fixtures/kpl\n');
    return 0;
  }
  const check = args.includes('--check');
  const o = args.indexOf('--out');
  const dir = o >= 0 ? args[o + 1] : path.join(__dirname, '..', 'fixtures', 'kpl');
  if (!dir) throw new Error('--out needs a directory');
  const files = build();
  let differ = 0;
  if (!check) fs.mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) {
    const p = path.join(dir, name);
    if (check) {
      const same = fs.existsSync(p) && fs.readFileSync(p).equals(bytes);
      if (!same) {
        process.stderr.write(`kpl-fixtures: ${p} differs from a fresh build\n`);
        differ++;
      }
    } else {
      fs.writeFileSync(p, bytes);
    }
  }
  process.stdout.write(JSON.stringify({ dir, files: Object.keys(files).length, check, differ }) + '\n');
  return differ === 0 ? 0 : 1;
}

if (require.main === module) {
  try {
    process.exit(main());
  } catch (err) {
    process.stderr.write(`kpl-fixtures: ${err.message}\n`);
    process.exit(1);
  }
}

module.exports = { aggregate, MAX_HASH_KEY };
