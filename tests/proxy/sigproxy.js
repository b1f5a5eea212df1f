#!/usr/bin/env node
/*
 * sigproxy: a reverse proxy that checks the SigV4 signature of every request
 * before handing it to a Kinesis emulator (the emulators check nothing), and
 * that injects faults on demand. The expected signature is computed by the
 * AWS SDK's own signer (@smithy/signature-v4), so our C signer is checked
 * against an independent implementation. Test infrastructure only: one
 * shared secret for every access key id, state in memory.
 *
 * usage: KL_PROXY_SECRET=... node sigproxy.js --port P --upstream http://127.0.0.1:U
 *          [--host 127.0.0.1] [--secret S] [--service kinesis] [--name NAME]
 *          [--max-body BYTES] [--max-skew-s SECONDS] [--verbose]
 *
 * Admin endpoints on the same port (not signed):
 *   POST   /__faults                 {"access_key","fault","every","target"?,"delay_ms"?}
 *   GET    /__faults?access_key=K    the key's rules
 *   DELETE /__faults[?access_key=K]  clear the key's rules (all keys without K)
 *   GET    /__stats?access_key=K     {"requests":{op:n},"faults":{fault:n},"signature_failures":n}
 *   DELETE /__stats[?access_key=K]   reset counters
 *   GET    /__health                 {"ok":true}
 */
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const { SignatureV4, getCanonicalHeaders, getPayloadHash } = require('@smithy/signature-v4');
const { HttpRequest } = require('@smithy/protocol-http');

const ALGORITHM = 'AWS4-HMAC-SHA256';
const JSON_TYPE = 'application/x-amz-json-1.1';
const FAULTS = ['throttle', 'expired_iterator', 'http500', 'reset', 'slow'];
const MISMATCH =
  'The request signature we calculated does not match the signature you provided. ' +
  'Check your AWS Secret Access Key and signing method. ' +
  'Consult the service documentation for details.';

// --- configuration ------------------------------------------------------------

function parseArgs(argv) {
  const opts = {
    host: '127.0.0.1',
    port: 0,
    upstream: '',
    secret: process.env.KL_PROXY_SECRET || '',
    service: 'kinesis',
    name: 'sigproxy',
    maxBody: 16 * 1024 * 1024,
    maxSkewS: 900, // AWS rejects requests more than 15 minutes off
    verbose: false,
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--host') opts.host = next();
    else if (a === '--port') opts.port = Number(next());
    else if (a === '--upstream') opts.upstream = next();
    else if (a === '--secret') opts.secret = next();
    else if (a === '--service') opts.service = next();
    else if (a === '--name') opts.name = next();
    else if (a === '--max-body') opts.maxBody = Number(next());
    else if (a === '--max-skew-s') opts.maxSkewS = Number(next());
    else if (a === '--verbose') opts.verbose = true;
    else throw new Error(`unknown option ${a}`);
  }
  if (!Number.isInteger(opts.port) || opts.port <= 0 || opts.port > 65535) {
    throw new Error('--port must be a TCP port number');
  }
  if (!opts.upstream) throw new Error('--upstream is required');
  if (!opts.secret) throw new Error('no secret: set KL_PROXY_SECRET or pass --secret');
  const up = new URL(opts.upstream);
  // Test infrastructure never listens or forwards beyond this machine.
  if (!isLoopback(opts.host) || !isLoopback(up.hostname)) {
    throw new Error('--host and --upstream must be loopback addresses');
  }
  opts.upstreamHost = up.hostname.replace(/^\[|\]$/g, '');
  opts.upstreamPort = Number(up.port || 80);
  return opts;
}

function isLoopback(host) {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

// SHA-256 / HMAC-SHA256 in the shape the SDK signer expects (a Checksum
// constructor), backed by node:crypto because it is much faster than the
// pure-JS implementation under benchmark load.
class NodeSha256 {
  constructor(secret) {
    this.h = secret === undefined ? crypto.createHash('sha256') : crypto.createHmac('sha256', secret);
  }
  update(data) {
    this.h.update(data);
  }
  async digest() {
    return new Uint8Array(this.h.digest());
  }
}

// --- logging and error replies -------------------------------------------------

let OPTS;

function logEvent(level, msg, fields) {
  const line = { ts: new Date().toISOString(), level, component: OPTS.name, msg, ...fields };
  process.stdout.write(JSON.stringify(line) + '\n');
}

function sendJson(res, status, obj, extraHeaders = {}) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': body.length,
    ...extraHeaders,
  });
  res.end(body);
}

// An error shaped like Kinesis's JSON protocol errors.
function sendAwsError(res, status, type, message) {
  const body = Buffer.from(JSON.stringify({ __type: type, message }));
  res.writeHead(status, {
    'content-type': JSON_TYPE,
    'content-length': body.length,
    'x-amzn-requestid': crypto.randomUUID(),
  });
  res.end(body);
}

class AuthError extends Error {
  constructor(type, message) {
    super(message);
    this.type = type;
  }
}

// --- per access key state: fault rules and counters ----------------------------

const rules = new Map(); // access key -> [{fault, every, target, delay_ms, seen}]
const stats = new Map(); // access key -> {requests, faults, signature_failures}

function statsFor(key) {
  if (!stats.has(key)) stats.set(key, { requests: {}, faults: {}, signature_failures: 0 });
  return stats.get(key);
}

function bump(obj, name) {
  obj[name] = (obj[name] || 0) + 1;
}

// Every rule counts the requests that match it (its key, and its target if
// set); on every `every`-th of them the rule fires. When several rules fire
// on the same request the first one added wins.
function pickFault(key, op) {
  let chosen = null;
  for (const rule of rules.get(key) || []) {
    if (rule.target && rule.target !== op) continue;
    rule.seen++;
    if (chosen === null && rule.seen % rule.every === 0) chosen = rule;
  }
  return chosen;
}

function parseFaultRule(obj) {
  if (obj === null || typeof obj !== 'object') throw new Error('body must be a JSON object');
  const { access_key: key, fault, every = 1, target, delay_ms: delayMs = 0 } = obj;
  if (typeof key !== 'string' || key === '') throw new Error('access_key is required');
  if (!FAULTS.includes(fault)) throw new Error(`fault must be one of ${FAULTS.join(', ')}`);
  if (!Number.isInteger(every) || every < 1) throw new Error('every must be an integer >= 1');
  if (target !== undefined && (typeof target !== 'string' || !/^[A-Za-z]+$/.test(target))) {
    throw new Error('target must be an operation name such as GetRecords');
  }
  if (!Number.isInteger(delayMs) || delayMs < 0 || delayMs > 600000) {
    throw new Error('delay_ms must be an integer in 0..600000');
  }
  if (fault === 'slow' && delayMs === 0) throw new Error('slow needs delay_ms > 0');
  return { access_key: key, fault, every, target: target || null, delay_ms: delayMs, seen: 0 };
}

// --- SigV4 verification ------------------------------------------------------

// "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/kinesis/aws4_request,
//  SignedHeaders=host;x-amz-date, Signature=<64 hex>"
function parseAuthorization(value) {
  if (value === undefined || value === '') return null;
  const text = value.trim();
  if (!text.startsWith(ALGORITHM + ' ')) {
    throw new AuthError('IncompleteSignatureException',
      `Unsupported AWS 'algorithm': only '${ALGORITHM}' is accepted. Authorization=${value}`);
  }
  const params = {};
  for (const part of text.slice(ALGORITHM.length).split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) params[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  let msg = '';
  for (const name of ['Credential', 'Signature', 'SignedHeaders']) {
    if (!params[name]) msg += `Authorization header requires '${name}' parameter. `;
  }
  if (msg) throw new AuthError('IncompleteSignatureException', `${msg}Authorization=${value}`);
  const cred = params.Credential.split('/');
  if (cred.length !== 5 || cred.some((p) => p === '') || cred[4] !== 'aws4_request') {
    throw new AuthError('IncompleteSignatureException',
      `Credential must have the form <key>/<date>/<region>/<service>/aws4_request. Authorization=${value}`);
  }
  return {
    accessKeyId: cred[0],
    date: cred[1],
    region: cred[2],
    service: cred[3],
    signedHeaders: params.SignedHeaders.split(';'),
    signedHeadersRaw: params.SignedHeaders,
    signature: params.Signature,
  };
}

// All values of a header, in arrival order (duplicates are joined with ','
// in the canonical form; node's req.headers would join some with ', ').
function headerValues(rawHeaders, name) {
  const values = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].toLowerCase() === name) values.push(rawHeaders[i + 1]);
  }
  return values;
}

function parseQuery(rawUrl) {
  const q = rawUrl.indexOf('?');
  const query = {};
  if (q < 0) return query;
  for (const pair of rawUrl.slice(q + 1).split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const k = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
    const v = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1));
    if (k in query) query[k] = [].concat(query[k], v);
    else query[k] = v;
  }
  return query;
}

function amzDateToDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) return null;
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
}

function amzDate(d) {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

// Throws AuthError unless the request carries a valid signature by `OPTS.secret`.
async function verify(req, body, auth) {
  const dateHeader = req.headers['x-amz-date'];
  if (!dateHeader) {
    throw new AuthError('IncompleteSignatureException',
      "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. " +
      `Authorization=${req.headers.authorization}`);
  }
  const date = amzDateToDate(dateHeader);
  if (date === null) {
    throw new AuthError('IncompleteSignatureException',
      `Date must be in ISO-8601 'basic format'. Got '${dateHeader}'.`);
  }
  if (auth.date !== dateHeader.slice(0, 8)) {
    throw new AuthError('InvalidSignatureException',
      'Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: ' +
      `'${auth.date}' != '${dateHeader.slice(0, 8)}', from '${dateHeader}'.`);
  }
  if (auth.service !== OPTS.service) {
    throw new AuthError('InvalidSignatureException',
      `Credential should be scoped to correct service: '${OPTS.service}'.`);
  }
  const now = Date.now();
  const skewMs = OPTS.maxSkewS * 1000;
  if (OPTS.maxSkewS > 0 && date.getTime() < now - skewMs) {
    throw new AuthError('InvalidSignatureException',
      `Signature expired: ${dateHeader} is now earlier than ${amzDate(new Date(now - skewMs))} ` +
      `(${amzDate(new Date(now))} - ${OPTS.maxSkewS / 60} min.)`);
  }
  if (OPTS.maxSkewS > 0 && date.getTime() > now + skewMs) {
    throw new AuthError('InvalidSignatureException',
      `Signature not yet current: ${dateHeader} is still later than ${amzDate(new Date(now + skewMs))} ` +
      `(${amzDate(new Date(now))} + ${OPTS.maxSkewS / 60} min.)`);
  }
  for (const must of ['host', 'x-amz-date']) {
    if (!auth.signedHeaders.includes(must)) {
      throw new AuthError('IncompleteSignatureException',
        `'${must}' must be a 'SignedHeader' in the AWS Authorization.`);
    }
  }
  const token = req.headers['x-amz-security-token'];
  if (token !== undefined && !auth.signedHeaders.includes('x-amz-security-token')) {
    throw new AuthError('IncompleteSignatureException',
      "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization.");
  }
  const bodyHash = crypto.createHash('sha256').update(body).digest('hex');
  const claimedHash = req.headers['x-amz-content-sha256'];
  if (claimedHash !== undefined && claimedHash !== bodyHash) {
    throw new AuthError('InvalidSignatureException',
      "The provided 'x-amz-content-sha256' header does not match what was computed.");
  }

  // The request as the client signed it: only the headers it named.
  const headers = {};
  for (const name of auth.signedHeaders) {
    const values = headerValues(req.rawHeaders, name);
    if (values.length === 0) {
      throw new AuthError('InvalidSignatureException',
        `${MISMATCH} Signed header '${name}' is not in the request.`);
    }
    headers[name] = values.join(',');
  }
  const q = req.url.indexOf('?');
  const request = new HttpRequest({
    method: req.method,
    protocol: 'http:',
    hostname: (headers.host || '').replace(/:\d+$/, ''),
    path: q < 0 ? req.url : req.url.slice(0, q),
    query: parseQuery(req.url),
    headers,
    body,
  });
  const signer = new SignatureV4({
    credentials: {
      accessKeyId: auth.accessKeyId,
      secretAccessKey: OPTS.secret,
      sessionToken: token,
    },
    region: auth.region,
    service: auth.service,
    sha256: NodeSha256,
    applyChecksum: false, // add no x-amz-content-sha256 the client did not sign
  });
  const signableHeaders = new Set(auth.signedHeaders); // even ones the SDK never signs
  const signed = await signer.sign(request, { signingDate: date, signableHeaders });
  const expected = parseAuthorization(signed.headers.authorization);
  const a = Buffer.from(auth.signature);
  const b = Buffer.from(expected.signature);
  const same = a.length === b.length && crypto.timingSafeEqual(a, b) &&
    expected.signedHeadersRaw === auth.signedHeadersRaw;
  if (!same) {
    throw new AuthError('InvalidSignatureException',
      MISMATCH + (await explain(signer, signed, signableHeaders, dateHeader, auth)));
  }
}

// The canonical request and string-to-sign the SDK computed, as AWS shows
// them in its InvalidSignatureException messages; a signer under test can
// diff its own against them.
async function explain(signer, signed, signableHeaders, dateHeader, auth) {
  try {
    const canonicalHeaders = getCanonicalHeaders(signed, undefined, signableHeaders);
    const payloadHash = await getPayloadHash(signed, NodeSha256);
    const canonical = signer.createCanonicalRequest(signed, canonicalHeaders, payloadHash);
    const scope = `${auth.date}/${auth.region}/${auth.service}/aws4_request`;
    const sts = await signer.createStringToSign(dateHeader, scope, canonical, ALGORITHM);
    return `\n\nThe Canonical String for this request should have been\n'${canonical}'\n\n` +
      `The String-to-Sign should have been\n'${sts}'\n`;
  } catch (e) {
    return '';
  }
}

// --- request handling --------------------------------------------------------

class TooLarge extends Error {}

// Reads the whole body, at most `max` bytes. A larger body is still read to
// its end (and dropped) so the client gets to read the 413 answer, up to
// 4 x max; past that the promise rejects at once and the caller closes.
function readBody(req, max) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > 4 * max) return reject(new TooLarge());
    const chunks = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > 4 * max) {
        req.pause();
        reject(new TooLarge());
      } else if (size > max) {
        tooLarge = true;
        chunks.length = 0;
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => (tooLarge ? reject(new TooLarge()) : resolve(Buffer.concat(chunks))));
    req.on('error', reject);
  });
}

// "Kinesis_20131202.GetRecords" -> "GetRecords"
function operationOf(target) {
  if (!target) return 'unknown';
  const dot = target.lastIndexOf('.');
  return dot < 0 ? target : target.slice(dot + 1);
}

function injectFault(req, res, rule, body) {
  let params = {};
  try {
    params = JSON.parse(body.toString('utf8'));
  } catch (e) {
    // The emulator will judge the body; the fault does not need it.
  }
  switch (rule.fault) {
  case 'throttle':
    return sendAwsError(res, 400, 'ProvisionedThroughputExceededException',
      `Rate exceeded for shard ${params.ShardId || 'shardId-000000000000'} in stream ` +
      `${params.StreamName || 'unknown'} under account 000000000000.`);
  case 'expired_iterator': {
    const now = Date.now();
    return sendAwsError(res, 400, 'ExpiredIteratorException',
      `Iterator expired. The iterator was created at time ${new Date(now - 301000).toUTCString()} ` +
      `while right now it is ${new Date(now).toUTCString()} which is further in the future ` +
      'than the tolerated delay of 300000 milliseconds.');
  }
  case 'http500':
    return sendAwsError(res, 500, 'InternalFailure',
      'We encountered an internal error. Please try again. (injected by sigproxy)');
  case 'reset':
    // A TCP reset where the platform supports it, else a plain close.
    if (typeof req.socket.resetAndDestroy === 'function') req.socket.resetAndDestroy();
    else req.socket.destroy();
    return undefined;
  default:
    throw new Error(`unhandled fault ${rule.fault}`);
  }
}

// Hop-by-hop headers are the proxy's business, everything else passes unchanged.
// 'expect' too: the proxy holds the whole body already.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'expect']);

function stripHopByHop(rawHeaders) {
  const out = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (!HOP_BY_HOP.has(rawHeaders[i].toLowerCase())) out.push(rawHeaders[i], rawHeaders[i + 1]);
  }
  return out;
}

const upstreamAgent = new http.Agent({ keepAlive: true, maxSockets: 512 });

function forward(req, res, body) {
  const headers = stripHopByHop(req.rawHeaders);
  if (headerValues(headers, 'content-length').length === 0) {
    headers.push('content-length', String(body.length));
  }
  const up = http.request({
    host: OPTS.upstreamHost,
    port: OPTS.upstreamPort,
    method: req.method,
    path: req.url,
    headers,
    agent: upstreamAgent,
  });
  up.on('response', (upRes) => {
    res.writeHead(upRes.statusCode, stripHopByHop(upRes.rawHeaders));
    upRes.pipe(res);
  });
  up.on('error', (err) => {
    logEvent('error', 'upstream request failed', { error: err.message });
    if (!res.headersSent) {
      sendAwsError(res, 503, 'ServiceUnavailable', `Upstream emulator unavailable: ${err.message}`);
    } else {
      res.destroy();
    }
  });
  res.on('close', () => {
    if (!res.writableFinished) up.destroy();
  });
  up.end(body);
}

async function handleKinesis(req, res) {
  let body;
  try {
    body = await readBody(req, OPTS.maxBody);
  } catch (e) {
    if (!(e instanceof TooLarge)) throw e;
    res.setHeader('connection', 'close');
    return sendAwsError(res, 413, 'SerializationException',
      `Request body exceeds the proxy limit of ${OPTS.maxBody} bytes.`);
  }
  const op = operationOf(req.headers['x-amz-target']);
  let auth;
  try {
    auth = parseAuthorization(req.headers.authorization);
  } catch (e) {
    if (!(e instanceof AuthError)) throw e;
    logEvent('warn', 'malformed Authorization', { op, type: e.type, message: e.message });
    return sendAwsError(res, 400, e.type, e.message);
  }
  if (auth === null) {
    logEvent('warn', 'unsigned request', { op });
    return sendAwsError(res, 400, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
  }
  const st = statsFor(auth.accessKeyId);
  bump(st.requests, op);
  try {
    await verify(req, body, auth);
  } catch (e) {
    if (!(e instanceof AuthError)) throw e;
    st.signature_failures++;
    logEvent('warn', 'signature rejected', {
      access_key: auth.accessKeyId, op, type: e.type, message: e.message,
    });
    return sendAwsError(res, 400, e.type, e.message);
  }
  const rule = pickFault(auth.accessKeyId, op);
  if (rule !== null) {
    bump(st.faults, rule.fault);
    logEvent('info', 'fault injected', { access_key: auth.accessKeyId, op, fault: rule.fault });
    if (rule.fault !== 'slow') return injectFault(req, res, rule, body);
    await new Promise((resolve) => setTimeout(resolve, rule.delay_ms));
  }
  if (OPTS.verbose) logEvent('debug', 'forward', { access_key: auth.accessKeyId, op });
  return forward(req, res, body);
}

async function handleAdmin(req, res, url) {
  const key = url.searchParams.get('access_key');
  const route = `${req.method} ${url.pathname}`;
  if (route === 'GET /__health') return sendJson(res, 200, { ok: true, upstream: OPTS.upstream });
  if (route === 'POST /__faults') {
    let rule;
    try {
      rule = parseFaultRule(JSON.parse((await readBody(req, 65536)).toString('utf8')));
    } catch (e) {
      return sendJson(res, 400, { error: e instanceof TooLarge ? 'body too large' : e.message });
    }
    if (!rules.has(rule.access_key)) rules.set(rule.access_key, []);
    rules.get(rule.access_key).push(rule);
    return sendJson(res, 200, { ok: true, rules: rules.get(rule.access_key) });
  }
  if (route === 'GET /__faults') {
    if (!key) return sendJson(res, 400, { error: 'access_key is required' });
    return sendJson(res, 200, { rules: rules.get(key) || [] });
  }
  if (route === 'DELETE /__faults') {
    let cleared = 0;
    if (key) {
      cleared = (rules.get(key) || []).length;
      rules.delete(key);
    } else {
      for (const list of rules.values()) cleared += list.length;
      rules.clear();
    }
    return sendJson(res, 200, { ok: true, cleared });
  }
  if (route === 'GET /__stats') {
    if (!key) return sendJson(res, 200, Object.fromEntries(stats));
    return sendJson(res, 200, stats.get(key) || { requests: {}, faults: {}, signature_failures: 0 });
  }
  if (route === 'DELETE /__stats') {
    if (key) stats.delete(key);
    else stats.clear();
    return sendJson(res, 200, { ok: true });
  }
  return sendJson(res, 404, { error: `no admin route ${route}` });
}

function handle(req, res) {
  const url = new URL(req.url, 'http://proxy.invalid');
  const work = url.pathname.startsWith('/__') ? handleAdmin(req, res, url) : handleKinesis(req, res);
  work.catch((err) => {
    logEvent('error', 'request failed', { error: err.stack || String(err) });
    if (!res.headersSent) sendAwsError(res, 500, 'InternalFailure', 'sigproxy internal error');
    else res.destroy();
  });
}

function main() {
  try {
    OPTS = parseArgs(process.argv);
  } catch (e) {
    process.stderr.write(`sigproxy: ${e.message}\n`);
    process.exit(2);
  }
  const server = http.createServer(handle);
  server.keepAliveTimeout = 60000; // outlive the clients' idle connection reuse
  server.headersTimeout = 65000;
  server.listen({ host: OPTS.host, port: OPTS.port }, () => {
    logEvent('info', 'listening', { address: `http://${OPTS.host}:${OPTS.port}`, upstream: OPTS.upstream });
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 2000).unref(); // do not wait for busy clients
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
