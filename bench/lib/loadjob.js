#!/usr/bin/env node
/*
 * Runs one load job through a running kinesis-loader service, the way an
 * orchestrator does: POST /streams/<stream>/loads, then GET /jobs/<id> until
 * the job has finished. Optionally runs wrk against GET /jobs/<id> right
 * after the POST, while the job runs. Prints one JSON line:
 *   {"job_id","status","seconds" (POST to the poll that saw it finished),
 *    "server_seconds" (created_at to finished_at), "messages" (progress),
 *    "row_counts","polls","wrk":{...}|null,"wrk_during_load" (seconds of wrk
 *    that overlapped the job)}
 * Exits 1 when the job did not succeed, or when --table and --expect are
 * given and row_counts[table] differs (the JSON line is printed all the
 * same). Benchmark tooling only; plain Node.js, no packages.
 *
 * usage: loadjob.js --base http://127.0.0.1:PORT --stream S --body JSON
 *          [--table T --expect N] [--poll-ms 50] [--timeout-s 900]
 *          [--wrk-seconds 0] [--wrk-threads 2] [--wrk-connections 32] [--wrk wrk]
 */
'use strict';

const http = require('http');
const path = require('path');
const { spawn } = require('child_process');

const opt = {
  base: '', stream: '', body: '{}', table: '', expect: -1, 'poll-ms': 50, 'timeout-s': 900,
  'wrk-seconds': 0, 'wrk-threads': 2, 'wrk-connections': 32, wrk: 'wrk',
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const k = argv[i].replace(/^--/, '');
  if (!(k in opt) || argv[i + 1] === undefined) {
    process.stderr.write(`loadjob: bad argument ${argv[i]}\n`);
    process.exit(2);
  }
  opt[k] = typeof opt[k] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
}
if (!opt.base || !opt.stream) {
  process.stderr.write('loadjob: --base and --stream are required\n');
  process.exit(2);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const now = () => Number(process.hrtime.bigint()) / 1e9;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function request(method, url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method, agent,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'),
      }));
    });
    req.on('error', reject);
    req.setTimeout(30000, () => req.destroy(new Error(`${method} ${url}: no answer in 30 s`)));
    req.end(body);
  });
}

function runWrk(url) {
  const lua = path.join(__dirname, 'wrk-report.lua');
  const args = ['-t', String(opt['wrk-threads']), '-c', String(opt['wrk-connections']),
    '-d', `${opt['wrk-seconds']}s`, '--latency', '-s', lua, url];
  return new Promise((resolve) => {
    const started = now();
    const child = spawn(opt.wrk, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let errText = '';
    child.stdout.on('data', (c) => { out += c; });
    child.stderr.on('data', (c) => { errText += c; });
    child.on('error', (e) => resolve({ error: `wrk: ${e.message}`, started, ended: now() }));
    child.on('close', (code) => {
      const ended = now();
      const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (code !== 0 || !line) {
        resolve({ error: `wrk exited ${code}: ${errText.trim() || out.trim()}`, started, ended });
        return;
      }
      resolve({ ...JSON.parse(line.slice(9)), started, ended });
    });
  });
}

(async () => {
  const t0 = now();
  const post = await request('POST', `${opt.base}/streams/${encodeURIComponent(opt.stream)}/loads`, opt.body);
  if (post.status !== 202) throw new Error(`POST answered ${post.status}: ${post.text}`);
  const loc = post.headers.location;
  const jobUrl = `${opt.base}${loc}`;
  const wrk = opt['wrk-seconds'] > 0 ? runWrk(jobUrl) : null;
  let job;
  let polls = 0;
  let t1;
  for (;;) {
    const r = await request('GET', jobUrl);
    polls++;
    if (r.status !== 200) throw new Error(`GET ${loc} answered ${r.status}: ${r.text}`);
    job = JSON.parse(r.text);
    if (['succeeded', 'failed', 'cancelled'].includes(job.status)) {
      t1 = now();
      break;
    }
    if (now() - t0 > opt['timeout-s']) throw new Error(`job ${job.id} still ${job.status} after ${opt['timeout-s']} s`);
    await sleep(opt['poll-ms']);
  }
  const w = wrk ? await wrk : null;
  const rowCounts = (job.last_normalize_info && job.last_normalize_info.row_counts) || {};
  const out = {
    job_id: job.id,
    status: job.status,
    seconds: Number((t1 - t0).toFixed(3)),
    server_seconds: job.finished_at && job.created_at
      ? (Date.parse(job.finished_at) - Date.parse(job.created_at)) / 1000 : null,
    messages: job.progress ? job.progress.messages : null,
    row_counts: rowCounts,
    polls,
    error: job.error,
    wrk: w ? (({ started, ended, ...rest }) => rest)(w) : null,
    wrk_during_load: w && !w.error
      ? Number(Math.min(w.seconds, Math.max(0, t1 - w.started)).toFixed(3)) : null,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
  agent.destroy();
  if (job.status !== 'succeeded') {
    process.stderr.write(`loadjob: job ${job.id} ${job.status}: ${JSON.stringify(job.error)}\n`);
    process.exit(1);
  }
  if (opt.table && opt.expect >= 0 && rowCounts[opt.table] !== opt.expect) {
    process.stderr.write(`loadjob: row_counts.${opt.table} is ${rowCounts[opt.table]}, not ${opt.expect}\n`);
    process.exit(1);
  }
})().catch((e) => {
  process.stderr.write(`loadjob: ${e.message}\n`);
  process.exit(1);
});
