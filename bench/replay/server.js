#!/usr/bin/env node
/*
 * A fast Kinesis replay endpoint for benchmarks: serves one stream of
 * pre-built GetRecords pages over the Kinesis JSON protocol (HTTP POST,
 * X-Amz-Target Kinesis_20131202.<Operation>, application/x-amz-json-1.1),
 * so that kinesis-loader's own speed can be measured past what the
 * emulators deliver. Signatures are not checked.
 *
 * Operations: ListShards, DescribeStreamSummary, ListStreams,
 * GetShardIterator (TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER,
 * AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP), GetRecords. Anything else is
 * answered 400 UnknownOperationException.
 *
 * The stream: SHARDS shards of RECORDS records each, built once at start.
 * Record p of shard s carries the message id = p * SHARDS + s, so the ids
 * 0 .. SHARDS*RECORDS-1 each appear once; its body is the one
 * tests/tools/put-records.js writes for that id with the same --shape
 * (bench/lib/bodies.js): flat {"id":id,"name":"msg-<id>"} and, with --pad,
 * "pad"; or with --shape dlt a nested order (about 4.5 rows once
 * normalised). Its partition key is "pk-<id mod KEYS>". Sequence numbers are
 * 56 digits and increase within a shard; ApproximateArrivalTimestamp
 * increases by 1 ms per record and MillisBehindLatest reaches 0 on the last
 * page. An open shard then answers an empty page, 0 ms behind, with an
 * iterator (the tip); with --closed every shard is closed (it has an
 * EndingSequenceNumber) and its last page has no NextShardIterator and an
 * empty ChildShards.
 *
 * A page holds at most PAGE records and, as on AWS, at most 10 MiB of
 * record data (one record at least). The pages a reader from the start
 * asks for are answered from whole pre-built response bodies; other
 * positions or smaller Limits are cut from the pre-built record texts.
 *
 * usage: node bench/replay/server.js [--port 0] [--host 127.0.0.1]
 *          [--stream replay] [--shards 4] [--records 50000] [--page 1000]
 *          [--pad 40] [--shape flat|dlt] [--partition-keys 32] [--closed]
 *          [--latency-ms 0]
 * --page is 1..10000 (a GetRecords Limit of 10000 gets 10000 records when
 * the page is 10000). --latency-ms holds every GetRecords answer that long,
 * as a network to a Kinesis region would.
 * Prints one JSON line on stdout when it listens:
 *   {"port":P,"stream":S,"shards":N,"records_per_shard":M,"page":G,"shape":H,
 *    "pages":K,"build_ms":T}
 * GET /__stats answers the counters (requests per operation, records
 * served, pages answered from pre-built bodies); SIGTERM/SIGINT stop it.
 */
'use strict';

const http = require('http');
const { SHAPES, bodyTextOf } = require('../lib/bodies');

function parseArgs(argv) {
  const o = {
    port: 0, host: '127.0.0.1', stream: 'replay', shards: 4, records: 50000, page: 1000,
    pad: 40, shape: 'flat', 'partition-keys': 32, closed: false, 'latency-ms': 0,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--closed') { o.closed = true; continue; }
    if (a === '-h' || a === '--help') {
      process.stdout.write('usage: server.js [--port 0] [--host 127.0.0.1] [--stream replay] ' +
        '[--shards 4] [--records 50000] [--page 1000] [--pad 40] [--shape flat|dlt] [--partition-keys 32] ' +
        '[--closed] [--latency-ms 0]\n');
      process.exit(0);
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m || !(m[1] in o) || m[1] === 'closed') fail(`unknown argument ${a}`);
    const v = m[2] !== undefined ? m[2] : argv[++i];
    if (v === undefined) fail(`--${m[1]} needs a value`);
    o[m[1]] = typeof o[m[1]] === 'number' ? Number(v) : v;
    if (typeof o[m[1]] === 'number' && !Number.isInteger(o[m[1]])) fail(`--${m[1]}: not an integer: ${v}`);
  }
  if (o.shards < 1 || o.shards > 1000 || o.records < 0 || o.page < 1 || o.page > 10000 ||
      o['partition-keys'] < 1 || o.pad < 0 || o['latency-ms'] < 0) {
    fail('need 1 <= shards <= 1000, records >= 0, 1 <= page <= 10000, partition-keys >= 1, pad >= 0, ' +
      'latency-ms >= 0');
  }
  if (!/^[a-zA-Z0-9_.-]{1,128}$/.test(o.stream)) fail(`invalid stream name ${o.stream}`);
  if (!SHAPES.includes(o.shape)) fail(`--shape must be ${SHAPES.join(' or ')}, not ${o.shape}`);
  return o;
}

function fail(msg) {
  process.stderr.write(`replay: ${msg}\n`);
  process.exit(2);
}

const opt = parseArgs(process.argv.slice(2));
const SHARDS = opt.shards;
const RECORDS = opt.records;
const PAGE = opt.page;
const ACCOUNT = '000000000000';
const REGION = 'us-east-1';
const ARN = `arn:aws:kinesis:${REGION}:${ACCOUNT}:stream/${opt.stream}`;
const CREATED_S = Math.floor(Date.now() / 1000) - 7200;
// The first record arrived an hour ago; each shard's records arrive 1 ms apart.
const FIRST_ARRIVAL_MS = Date.now() - 3600 * 1000;

// Sequence number of record p (0-based) of shard s: 56 digits, increasing in p.
const SEQ_BASE = 49650000000000000000000000000000000000000000000000000000n;
const SHARD_STEP = 10n ** 40n;
const REC_STEP = 1000n;
function seqOf(s, p) {
  return (SEQ_BASE + BigInt(s) * SHARD_STEP + BigInt(p + 1) * REC_STEP).toString();
}
// The position of the first record whose sequence number is >= seq (RECORDS if none).
function positionAtOrAfter(s, seq) {
  let n;
  try {
    n = BigInt(seq);
  } catch {
    return -1;
  }
  const rel = n - SEQ_BASE - BigInt(s) * SHARD_STEP;
  if (rel <= REC_STEP) return 0;
  const p = (rel + REC_STEP - 1n) / REC_STEP - 1n; // ceil(rel / step) - 1
  return p >= BigInt(RECORDS) ? RECORDS : Number(p);
}
function shardIdOf(s) {
  return `shardId-${String(s).padStart(12, '0')}`;
}
function arrivalMs(p) {
  return FIRST_ARRIVAL_MS + p;
}
// Behind the tip after record p: the last record's arrival minus p's.
function millisBehind(p) {
  return RECORDS === 0 ? 0 : arrivalMs(RECORDS - 1) - arrivalMs(p);
}

const MAX_HASH = (1n << 128n) - 1n;
function shardDoc(s) {
  const lo = (MAX_HASH + 1n) * BigInt(s) / BigInt(SHARDS);
  const hi = (MAX_HASH + 1n) * BigInt(s + 1) / BigInt(SHARDS) - 1n;
  const range = { StartingSequenceNumber: (SEQ_BASE + BigInt(s) * SHARD_STEP).toString() };
  if (opt.closed) range.EndingSequenceNumber = seqOf(s, RECORDS + 1000);
  return {
    ShardId: shardIdOf(s),
    HashKeyRange: { StartingHashKey: lo.toString(), EndingHashKey: hi.toString() },
    SequenceNumberRange: range,
  };
}

function iteratorOf(s, p) {
  return `replay:${opt.stream}:${s}:${p}`;
}
function parseIterator(it) {
  const m = typeof it === 'string' ? /^replay:([^:]+):(\d+):(\d+)$/.exec(it) : null;
  if (!m || m[1] !== opt.stream) return null;
  const s = Number(m[2]);
  const p = Number(m[3]);
  if (s >= SHARDS || p > RECORDS) return null;
  return { s, p };
}

// ---- building the pages ----------------------------------------------------

const built = Date.now();
// Per shard: every record's JSON text followed by a comma, in one buffer, and
// where each record starts (starts[RECORDS] = the buffer's length).
const shardText = [];
const shardStarts = [];
// Per shard: the record data bytes before each record (dataBefore[RECORDS] = all).
const shardData = [];
// GetRecords returns at most this much record data (AWS's limit).
const PAGE_DATA_MAX = 10 * 1024 * 1024;
// Per shard: position -> the whole response body of the page there.
const pages = [];
let pageCount = 0;

for (let s = 0; s < SHARDS; s++) {
  const parts = [];
  const starts = new Float64Array(RECORDS + 1);
  const dataBefore = new Float64Array(RECORDS + 1);
  let len = 0;
  for (let p = 0; p < RECORDS; p++) {
    const id = p * SHARDS + s;
    const data = Buffer.from(bodyTextOf(id, opt.shape, opt.pad));
    dataBefore[p + 1] = dataBefore[p] + data.length;
    const rec = JSON.stringify({
      SequenceNumber: seqOf(s, p),
      ApproximateArrivalTimestamp: arrivalMs(p) / 1000,
      Data: data.toString('base64'),
      PartitionKey: `pk-${id % opt['partition-keys']}`,
    }) + ',';
    starts[p] = len;
    len += Buffer.byteLength(rec);
    parts.push(rec);
  }
  starts[RECORDS] = len;
  shardText.push(Buffer.from(parts.join('')));
  shardStarts.push(starts);
  shardData.push(dataBefore);
  const built = new Map();
  for (let p = 0; p < RECORDS;) {
    const n = pageRecords(s, p, PAGE);
    built.set(p, pageBody(s, p, n));
    pageCount++;
    p += n;
  }
  pages.push(built);
}

// How many records a page of at most `limit` from position p of shard s holds.
function pageRecords(s, p, limit) {
  const before = shardData[s];
  let n = Math.min(limit, RECORDS - p);
  while (n > 1 && before[p + n] - before[p] > PAGE_DATA_MAX) n--;
  return n;
}
const buildMs = Date.now() - built;

// The GetRecords answer for n records of shard s from position p.
function pageBody(s, p, n) {
  const end = p + n;
  let tail;
  if (end === RECORDS && opt.closed) {
    // the end of a closed shard: no iterator, no children
    tail = '],"MillisBehindLatest":0,"ChildShards":[]}';
  } else if (n === 0) {
    // the tip of an open shard
    tail = `],"NextShardIterator":${JSON.stringify(iteratorOf(s, p))},"MillisBehindLatest":0}`;
  } else {
    tail = `],"NextShardIterator":${JSON.stringify(iteratorOf(s, end))},` +
      `"MillisBehindLatest":${millisBehind(end - 1)}}`;
  }
  const starts = shardStarts[s];
  const records = n === 0 ? Buffer.alloc(0) : shardText[s].subarray(starts[p], starts[end] - 1);
  return Buffer.concat([Buffer.from('{"Records":['), records, Buffer.from(tail)]);
}

// ---- the protocol ------------------------------------------------------------

const stats = { requests: {}, records: 0, prebuilt_pages: 0, cut_pages: 0, errors: 0 };

class AwsError extends Error {
  constructor(type, message, status = 400) {
    super(message);
    this.type = type;
    this.status = status;
  }
}
const notFound = (what) => new AwsError('ResourceNotFoundException',
  `${what} under account ${ACCOUNT} not found.`);
const invalid = (msg) => new AwsError('InvalidArgumentException', msg);

function checkStream(req) {
  const name = req.StreamName !== undefined ? req.StreamName
    : (typeof req.StreamARN === 'string' ? req.StreamARN.split('/').pop() : undefined);
  if (name === undefined) throw new AwsError('ValidationException', 'StreamName or StreamARN is required');
  if (name !== opt.stream) throw notFound(`Stream ${name}`);
}
function shardIndex(id) {
  const m = typeof id === 'string' ? /^shardId-(\d{12})$/.exec(id) : null;
  const s = m ? Number(m[1]) : -1;
  if (s < 0 || s >= SHARDS) throw notFound(`Shard ${id} in stream ${opt.stream}`);
  return s;
}

const ops = {
  ListStreams() {
    return {
      StreamNames: [opt.stream], HasMoreStreams: false,
      StreamSummaries: [{
        StreamName: opt.stream, StreamARN: ARN, StreamStatus: 'ACTIVE',
        StreamModeDetails: { StreamMode: 'PROVISIONED' }, StreamCreationTimestamp: CREATED_S,
      }],
    };
  },
  DescribeStreamSummary(req) {
    checkStream(req);
    return {
      StreamDescriptionSummary: {
        StreamName: opt.stream, StreamARN: ARN, StreamStatus: 'ACTIVE',
        StreamModeDetails: { StreamMode: 'PROVISIONED' }, RetentionPeriodHours: 24,
        StreamCreationTimestamp: CREATED_S, EnhancedMonitoring: [{ ShardLevelMetrics: [] }],
        EncryptionType: 'NONE', OpenShardCount: opt.closed ? 0 : SHARDS, ConsumerCount: 0,
      },
    };
  },
  ListShards(req) {
    // One page: every shard (after ExclusiveStartShardId when given).
    if (req.NextToken === undefined) checkStream(req);
    let first = 0;
    if (typeof req.ExclusiveStartShardId === 'string') {
      const m = /^shardId-(\d+)$/.exec(req.ExclusiveStartShardId);
      first = m ? Number(m[1]) + 1 : 0;
    }
    const shards = [];
    for (let s = first; s < SHARDS; s++) shards.push(shardDoc(s));
    return { Shards: shards };
  },
  GetShardIterator(req) {
    checkStream(req);
    const s = shardIndex(req.ShardId);
    let p;
    switch (req.ShardIteratorType) {
      case 'TRIM_HORIZON': p = 0; break;
      case 'LATEST': p = RECORDS; break;
      case 'AT_SEQUENCE_NUMBER':
      case 'AFTER_SEQUENCE_NUMBER': {
        p = positionAtOrAfter(s, req.StartingSequenceNumber);
        if (p < 0) throw invalid(`StartingSequenceNumber ${req.StartingSequenceNumber} is not a number`);
        if (req.ShardIteratorType === 'AFTER_SEQUENCE_NUMBER' && p < RECORDS &&
            seqOf(s, p) === String(req.StartingSequenceNumber)) p++;
        break;
      }
      case 'AT_TIMESTAMP': {
        const ms = Number(req.Timestamp) * 1000;
        if (!Number.isFinite(ms)) throw invalid('Timestamp is required for AT_TIMESTAMP');
        p = Math.max(0, Math.min(RECORDS, Math.ceil(ms - FIRST_ARRIVAL_MS)));
        break;
      }
      default:
        throw invalid(`unknown ShardIteratorType ${req.ShardIteratorType}`);
    }
    return { ShardIterator: iteratorOf(s, p) };
  },
  GetRecords(req) {
    const it = parseIterator(req.ShardIterator);
    if (it === null) throw invalid(`invalid ShardIterator ${String(req.ShardIterator).slice(0, 80)}`);
    const limit = req.Limit === undefined ? 10000 : Number(req.Limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10000) throw invalid(`Limit ${req.Limit} is not 1..10000`);
    const { s, p } = it;
    const n = p < RECORDS ? pageRecords(s, p, Math.min(limit, PAGE)) : 0;
    stats.records += n;
    if (n > 0 && n === pageRecords(s, p, PAGE) && pages[s].has(p)) {
      stats.prebuilt_pages++;
      return pages[s].get(p);
    }
    stats.cut_pages++;
    return pageBody(s, p, n);
  },
};

function send(res, status, body) {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    'Content-Type': 'application/x-amz-json-1.1',
    'Content-Length': buf.length,
    'x-amzn-RequestId': '00000000-0000-4000-8000-000000000000',
  });
  res.end(buf);
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/__stats') {
    send(res, 200, stats);
    req.resume();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const target = String(req.headers['x-amz-target'] || '');
    const op = target.startsWith('Kinesis_20131202.') ? target.slice(17) : '';
    stats.requests[op || '(none)'] = (stats.requests[op || '(none)'] || 0) + 1;
    try {
      if (req.method !== 'POST' || !Object.prototype.hasOwnProperty.call(ops, op)) {
        throw new AwsError('UnknownOperationException', `unknown operation ${target || '(no X-Amz-Target)'}`);
      }
      let body;
      try {
        body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
      } catch {
        throw new AwsError('SerializationException', 'the request body is not JSON');
      }
      const answer = ops[op](body || {});
      if (op === 'GetRecords' && opt['latency-ms'] > 0) {
        setTimeout(() => send(res, 200, answer), opt['latency-ms']);
      } else {
        send(res, 200, answer);
      }
    } catch (err) {
      if (!(err instanceof AwsError)) throw err;
      stats.errors++;
      send(res, err.status, { __type: err.type, message: err.message });
    }
  });
});
server.keepAliveTimeout = 120000;
server.headersTimeout = 130000;
server.listen(opt.port, opt.host, () => {
  process.stdout.write(JSON.stringify({
    port: server.address().port, stream: opt.stream, shards: SHARDS, records_per_shard: RECORDS,
    page: PAGE, shape: opt.shape, pages: pageCount, build_ms: buildMs,
  }) + '\n');
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
