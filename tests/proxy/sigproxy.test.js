/*
 * Tests of the signature proxy against the running services
 * (scripts/services.sh start; source .run/services.env):
 * node --test tests/proxy/sigproxy.test.js
 * Every test uses its own access key id, so counters and fault rules of
 * one test never leak into another.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const crypto = require('node:crypto');
const { SignatureV4 } = require('@smithy/signature-v4');
const { HttpRequest } = require('@smithy/protocol-http');
const { Sha256 } = require('@aws-crypto/sha256-js');

const PROXY = process.env.KL_TEST_PROXY_URL;
const PROXY_LOCAL = process.env.KL_TEST_PROXY_LOCAL_URL;
const SECRET = process.env.KL_TEST_PROXY_SECRET;
if (!PROXY || !PROXY_LOCAL || !SECRET) {
  throw new Error('KL_TEST_PROXY_URL, KL_TEST_PROXY_LOCAL_URL and KL_TEST_PROXY_SECRET must be set ' +
    '(scripts/services.sh start, then source .run/services.env)');
}

const newKey = () => `AKIDTEST${crypto.randomBytes(6).toString('hex').toUpperCase()}`;

// One HTTP exchange; resolves {status, headers, body, json} or rejects on a socket error.
function exchange(base, { method = 'POST', path = '/', headers = {}, body = '' } = {}) {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try {
          json = JSON.parse(text);
        } catch (e) {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

// A Kinesis JSON request signed by the SDK signer. `tamper` may change the
// signed request before it is sent.
async function kinesis(base, op, params, { key, secret = SECRET, token, date = new Date(), tamper } = {}) {
  const url = new URL(base);
  const body = JSON.stringify(params);
  const request = new HttpRequest({
    method: 'POST',
    protocol: 'http:',
    hostname: url.hostname,
    port: Number(url.port),
    path: '/',
    headers: {
      host: url.host,
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': `Kinesis_20131202.${op}`,
    },
    body,
  });
  const signer = new SignatureV4({
    credentials: { accessKeyId: key, secretAccessKey: secret, sessionToken: token },
    region: 'us-east-1',
    service: 'kinesis',
    sha256: Sha256,
  });
  const signed = await signer.sign(request, { signingDate: date });
  if (tamper) tamper(signed);
  return exchange(base, { headers: signed.headers, body: signed.body });
}

async function addFault(base, rule) {
  const res = await exchange(base, { path: '/__faults', body: JSON.stringify(rule) });
  assert.equal(res.status, 200, res.body);
}

async function statsOf(base, key) {
  return (await exchange(base, { method: 'GET', path: `/__stats?access_key=${key}` })).json;
}

for (const [name, base] of [['kinesalite', PROXY], ['kinesis-local', PROXY_LOCAL]]) {
  test(`${name}: a correctly signed request is forwarded`, async () => {
    const key = newKey();
    const res = await kinesis(base, 'ListStreams', {}, { key });
    assert.equal(res.status, 200, res.body);
    assert.ok(Array.isArray(res.json.StreamNames));
    assert.deepEqual(await statsOf(base, key),
      { requests: { ListStreams: 1 }, faults: {}, signature_failures: 0 });
  });

  test(`${name}: a wrong secret is an InvalidSignatureException with the canonical request`, async () => {
    const key = newKey();
    const res = await kinesis(base, 'ListStreams', {}, { key, secret: 'not-the-secret' });
    assert.equal(res.status, 400);
    assert.match(res.headers['content-type'], /^application\/x-amz-json-1\.1/);
    assert.equal(res.json.__type, 'InvalidSignatureException');
    assert.match(res.json.message, /^The request signature we calculated does not match/);
    assert.match(res.json.message, /The Canonical String for this request should have been\n'POST\n\/\n/);
    assert.equal((await statsOf(base, key)).signature_failures, 1);
  });
}

test('an unsigned request is a MissingAuthenticationTokenException', async () => {
  const res = await exchange(PROXY, {
    headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'Kinesis_20131202.ListStreams' },
    body: '{}',
  });
  assert.equal(res.status, 400);
  assert.equal(res.json.__type, 'MissingAuthenticationTokenException');
});

test('a garbled Authorization header is an IncompleteSignatureException', async () => {
  const res = await exchange(PROXY, {
    headers: {
      authorization: 'AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/kinesis/aws4_request',
      'x-amz-date': '20240101T000000Z',
    },
    body: '{}',
  });
  assert.equal(res.status, 400);
  assert.equal(res.json.__type, 'IncompleteSignatureException');
  assert.match(res.json.message, /requires 'Signature' parameter/);
});

test('a changed body after signing is rejected', async () => {
  const res = await kinesis(PROXY, 'ListStreams', { Limit: 5 }, {
    key: newKey(),
    tamper: (r) => { r.body = JSON.stringify({ Limit: 6 }); },
  });
  assert.equal(res.status, 400);
  assert.equal(res.json.__type, 'InvalidSignatureException');
});

test('a signature older than 15 minutes has expired', async () => {
  const res = await kinesis(PROXY, 'ListStreams', {}, { key: newKey(), date: new Date(Date.now() - 20 * 60000) });
  assert.equal(res.status, 400);
  assert.equal(res.json.__type, 'InvalidSignatureException');
  assert.match(res.json.message, /^Signature expired/);
});

test('a session token must be signed', async () => {
  const key = newKey();
  const ok = await kinesis(PROXY, 'ListStreams', {}, { key, token: 'session-token-1' });
  assert.equal(ok.status, 200, ok.body);
  const unsigned = await kinesis(PROXY, 'ListStreams', {}, {
    key,
    tamper: (r) => { r.headers['x-amz-security-token'] = 'added-after-signing'; },
  });
  assert.equal(unsigned.status, 400);
  assert.equal(unsigned.json.__type, 'IncompleteSignatureException');
});

test('throttle hits every 2nd matching request of its key and target only', async () => {
  const key = newKey();
  await addFault(PROXY, { access_key: key, fault: 'throttle', every: 2, target: 'ListStreams' });
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await kinesis(PROXY, 'ListStreams', {}, { key })).status);
  assert.deepEqual(statuses, [200, 400, 200, 400]);
  const other = await kinesis(PROXY, 'ListShards', { StreamName: 'no-such-stream' }, { key });
  assert.equal(other.json.__type, 'ResourceNotFoundException', 'another target is not affected');
  const throttled = await kinesis(PROXY, 'ListStreams', {}, { key: newKey() });
  assert.equal(throttled.status, 200, 'another key is not affected');
  const res = await kinesis(PROXY, 'ListStreams', {}, { key });
  assert.equal(res.status, 200);
  const fault = await kinesis(PROXY, 'ListStreams', {}, { key });
  assert.equal(fault.json.__type, 'ProvisionedThroughputExceededException');
  assert.match(fault.json.message, /^Rate exceeded for shard/);
  assert.deepEqual(await statsOf(PROXY, key), {
    requests: { ListStreams: 6, ListShards: 1 },
    faults: { throttle: 3 },
    signature_failures: 0,
  });
});

test('expired_iterator, http500, reset and slow', async () => {
  const key = newKey();
  await addFault(PROXY, { access_key: key, fault: 'expired_iterator', every: 1, target: 'GetRecords' });
  let res = await kinesis(PROXY, 'GetRecords', { ShardIterator: 'x' }, { key });
  assert.equal(res.status, 400);
  assert.equal(res.json.__type, 'ExpiredIteratorException');
  assert.match(res.json.message, /^Iterator expired/);

  await addFault(PROXY, { access_key: key, fault: 'http500', every: 1, target: 'ListShards' });
  res = await kinesis(PROXY, 'ListShards', { StreamName: 'x' }, { key });
  assert.equal(res.status, 500);
  assert.equal(res.json.__type, 'InternalFailure');

  await addFault(PROXY, { access_key: key, fault: 'reset', every: 1, target: 'DescribeLimits' });
  await assert.rejects(kinesis(PROXY, 'DescribeLimits', {}, { key }), /ECONNRESET|socket hang up/);

  await addFault(PROXY, { access_key: key, fault: 'slow', every: 1, target: 'ListStreams', delay_ms: 300 });
  const began = Date.now();
  res = await kinesis(PROXY, 'ListStreams', {}, { key });
  assert.equal(res.status, 200);
  assert.ok(Date.now() - began >= 290, 'slow waits delay_ms before forwarding');

  const cleared = await exchange(PROXY, { method: 'DELETE', path: `/__faults?access_key=${key}` });
  assert.equal(cleared.json.cleared, 4);
  res = await kinesis(PROXY, 'ListShards', { StreamName: 'x' }, { key });
  assert.notEqual(res.status, 500, 'no fault after DELETE /__faults');
  assert.deepEqual((await statsOf(PROXY, key)).faults,
    { expired_iterator: 1, http500: 1, reset: 1, slow: 1 });
});

test('the fault API validates its input', async () => {
  for (const rule of [{ fault: 'throttle' }, { access_key: 'A', fault: 'nope' },
    { access_key: 'A', fault: 'throttle', every: 0 }, { access_key: 'A', fault: 'slow' }]) {
    const res = await exchange(PROXY, { path: '/__faults', body: JSON.stringify(rule) });
    assert.equal(res.status, 400, JSON.stringify(rule));
    assert.ok(res.json.error);
  }
});

test('a body over the limit is refused with 413', async () => {
  const res = await exchange(PROXY, {
    headers: { 'content-type': 'application/x-amz-json-1.1' },
    body: Buffer.alloc(16 * 1024 * 1024 + 1, 0x20),
  });
  assert.equal(res.status, 413);
  assert.equal(res.json.__type, 'SerializationException');
});
