// Tests of the Helm chart (helm/kinesis-loader) and the Dockerfile: helm lint
// (also --strict), helm template with the default values and the value sets
// in tests/chart/values/, and checks on what is rendered: every environment
// variable is one `kinesis-loader --help` lists, the probes point at /healthz
// and /readyz, the container port is the one of KL_LISTEN, the pods run
// locked down, the autoscalers scale the chart's Deployment, every PromQL
// query (KEDA's, the alerts', the dashboard's) parses and names only metrics
// the service's /metrics exports (read from the C sources that print them),
// and the combinations that cannot work fail to render.
//
// helm comes from the npm package @aws-cdk/asset-kubectl-v20 (a zip with
// helm and kubectl for linux x64, installed by `npm ci` in tests/); it is
// unpacked into a temporary directory per run. KL_HELM=/path/to/helm uses
// another helm instead.
//
// usage: node tests/chart/test_chart.mjs --binary BUILD/kinesis-loader
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const CHART = path.join(ROOT, 'helm', 'kinesis-loader');
const VALUES_DIR = path.join(HERE, 'values');
const HELM_ZIP = path.join(ROOT, 'tests', 'node_modules', '@aws-cdk', 'asset-kubectl-v20', 'lib',
    'layer.zip');

function argValue(name) {
    const i = process.argv.indexOf(name);
    return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : undefined;
}

// The YAML parser is an npm package of tests/ too.
let YAML;
try {
    YAML = await import('yaml');
} catch (e) {
    throw new Error(`the npm package "yaml" is missing: run \`npm ci\` in tests/ ` +
        `(scripts/install-deps.sh does it) (${e.message})`);
}

// The PromQL grammar of Prometheus' own web UI, for parsing the chart's queries.
let promql;
try {
    promql = (await import('@prometheus-io/lezer-promql')).parser;
} catch (e) {
    throw new Error('the npm package "@prometheus-io/lezer-promql" is missing: run `npm ci` in ' +
        `tests/ (scripts/install-deps.sh does it) (${e.message})`);
}

// ---- the metrics /metrics exports, from the sources ----

const METRIC_NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';

// Name -> type of every metric the service prints, read from the C files
// under core/, api/ and server/: each `# TYPE NAME TYPE` in a string
// literal, and for a function that prints `# TYPE %s TYPE` (a helper such as
// render_counter), the literal name each call of it passes first after its
// output argument. Renaming a metric in the C code changes this list, and so
// fails every query below that still uses the old name.
function exportedMetrics() {
    const texts = [];
    const walk = (dir) => {
        for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
            const p = path.join(dir, e.name);
            if (e.isDirectory())
                walk(p);
            else if (e.name.endsWith('.c'))
                texts.push(fs.readFileSync(p, 'utf8'));
        }
    };
    for (const d of ['core', 'api', 'server'])
        walk(path.join(ROOT, d));
    const types = new Map();
    const helpers = [];
    const typeLine = new RegExp(`# TYPE (${METRIC_NAME}|%s) (counter|gauge|histogram|summary|untyped)`,
        'g');
    for (const t of texts) {
        for (const m of t.matchAll(typeLine)) {
            if (m[1] !== '%s') {
                types.set(m[1], m[2]);
                continue;
            }
            // the function definition the literal is in: the last one before it
            const defs = [...t.slice(0, m.index).matchAll(/^[a-z][\w \t*]*?\b(\w+)\([^)]*\)\s*\n\{/gm)];
            assert.ok(defs.length > 0, `no function around "# TYPE %s" in the sources`);
            helpers.push({ fn: defs.at(-1)[1], type: m[2] });
        }
    }
    for (const { fn, type } of helpers) {
        const call = new RegExp(`\\b${fn}\\s*\\(\\s*[^,()]+,\\s*"(${METRIC_NAME})"`, 'g');
        for (const t of texts) {
            for (const m of t.matchAll(call))
                types.set(m[1], type);
        }
    }
    return types;
}

let metrics;

// Whether /metrics has a series of this name: a metric, or the _bucket, _sum
// and _count series of a histogram (_sum and _count of a summary).
function isExported(name) {
    if (metrics.has(name))
        return true;
    const m = name.match(/^(.*)_(bucket|sum|count)$/);
    const type = m && metrics.get(m[1]);
    return type === 'histogram' || (type === 'summary' && m[2] !== 'bucket');
}

// The metric names a PromQL expression selects; fails on a syntax error.
function promqlMetricNames(expr, what) {
    const tree = promql.parse(expr);
    const names = [];
    let bad;
    tree.iterate({
        enter(n) {
            if (n.type.isError && bad === undefined)
                bad = n.from;
            if (n.name === 'Identifier' && n.node.parent?.name === 'VectorSelector')
                names.push(expr.slice(n.from, n.to));
        },
    });
    assert.equal(bad, undefined, `${what}: PromQL syntax error at offset ${bad} of: ${expr}`);
    return names;
}

// Fails unless the expression parses, selects at least one metric and only
// metrics /metrics exports. Returns the names.
function checkPromql(expr, what) {
    assert.equal(typeof expr, 'string', `${what}: no query`);
    const names = promqlMetricNames(expr, what);
    assert.ok(names.length > 0, `${what}: the query selects no metric by name: ${expr}`);
    for (const n of names) {
        assert.ok(isExported(n), `${what}: ${n} is not a metric kinesis-loader's /metrics ` +
            `exports (server/metrics.c and the other files printing "# TYPE"): ${expr}`);
    }
    return names;
}

// ---- helm from the zip ----

// Extracts one file from a zip archive with node's zlib (no unzip needed).
function extractFromZip(zipPath, member, dest) {
    const buf = fs.readFileSync(zipPath);
    let eocd = -1;
    for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) {
        if (buf.readUInt32LE(i) === 0x06054b50) {
            eocd = i;
            break;
        }
    }
    if (eocd < 0)
        throw new Error(`${zipPath}: not a zip archive`);
    const entries = buf.readUInt16LE(eocd + 10);
    let p = buf.readUInt32LE(eocd + 16);
    for (let n = 0; n < entries; n++) {
        if (buf.readUInt32LE(p) !== 0x02014b50)
            throw new Error(`${zipPath}: broken central directory`);
        const method = buf.readUInt16LE(p + 10);
        const csize = buf.readUInt32LE(p + 20);
        const nameLen = buf.readUInt16LE(p + 28);
        const extraLen = buf.readUInt16LE(p + 30);
        const commentLen = buf.readUInt16LE(p + 32);
        const local = buf.readUInt32LE(p + 42);
        const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
        if (name === member) {
            const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
            const data = buf.subarray(start, start + csize);
            if (method !== 0 && method !== 8)
                throw new Error(`${zipPath}: ${member}: compression method ${method}`);
            fs.writeFileSync(dest, method === 8 ? zlib.inflateRawSync(data) : data, { mode: 0o755 });
            return;
        }
        p += 46 + nameLen + extraLen + commentLen;
    }
    throw new Error(`${zipPath}: no ${member} inside`);
}

let tmp;
let helm;
let helpNames;
let notesChart;

function helmEnv() {
    return {
        ...process.env,
        HELM_CACHE_HOME: path.join(tmp, 'cache'),
        HELM_CONFIG_HOME: path.join(tmp, 'config'),
        HELM_DATA_HOME: path.join(tmp, 'data'),
        KUBECONFIG: path.join(tmp, 'kubeconfig'),
    };
}

function runHelm(args) {
    const r = spawnSync(helm, args, { env: helmEnv(), encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.error)
        throw r.error;
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function valuesArgs(sets) {
    const args = [];
    for (const s of sets) {
        if (s.endsWith('.yaml'))
            args.push('-f', path.join(VALUES_DIR, s));
        else if (s.startsWith('string:'))
            args.push('--set-string', s.slice('string:'.length));
        else
            args.push('--set', s);
    }
    return args;
}

// Renders the chart; returns the manifests as objects (NOTES included under
// `notes` when asked for, through a copy of the chart that wraps NOTES.txt).
function render(sets = [], { notes = false } = {}) {
    const chart = notes ? notesChart : CHART;
    const r = runHelm(['template', 'rel', chart, '--namespace', 'data', ...valuesArgs(sets)]);
    assert.equal(r.status, 0, `helm template ${sets.join(' ')} failed:\n${r.stderr}`);
    const docs = YAML.parseAllDocuments(r.stdout).map((d) => {
        assert.equal(d.errors.length, 0, `invalid YAML rendered: ${d.errors.join('; ')}`);
        return d.toJSON();
    }).filter((d) => d != null);
    const out = { docs, notes: undefined };
    if (notes) {
        out.notes = docs.find((d) => d.kind === undefined && typeof d.notes === 'string')?.notes;
        out.docs = docs.filter((d) => d.kind !== undefined);
    }
    for (const d of out.docs)
        checkCommon(d);
    return out;
}

function renderFails(sets, message) {
    const r = runHelm(['template', 'rel', CHART, ...valuesArgs(sets)]);
    assert.notEqual(r.status, 0, `helm template ${sets.join(' ')} should have failed`);
    assert.match(r.stderr, message);
}

function byKind(docs, kind) {
    return docs.filter((d) => d.kind === kind);
}

function one(docs, kind) {
    const list = byKind(docs, kind);
    assert.equal(list.length, 1, `expected one ${kind}, got ${list.length}`);
    return list[0];
}

function envOf(container) {
    return Object.fromEntries((container.env ?? []).map((e) => [e.name, e]));
}

// ---- checks every rendered object must pass ----

function checkPodSpec(spec, what) {
    const containers = spec.containers;
    assert.ok(containers.length >= 1, `${what}: no container`);
    const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
    assert.equal(spec.securityContext?.runAsNonRoot, true, `${what}: pod runAsNonRoot`);
    assert.equal(spec.automountServiceAccountToken, false, `${what}: automountServiceAccountToken`);
    for (const c of containers) {
        const names = (c.env ?? []).map((e) => e.name);
        assert.equal(new Set(names).size, names.length, `${what}: duplicate env names ${names}`);
        for (const name of names) {
            assert.ok(helpNames.has(name),
                `${what}: env ${name} is not a variable \`kinesis-loader --help\` lists`);
        }
        for (const e of c.env ?? []) {
            assert.ok(('value' in e && typeof e.value === 'string') || e.valueFrom,
                `${what}: env ${e.name} needs a string value or valueFrom`);
        }
        const sc = c.securityContext ?? {};
        assert.equal(sc.readOnlyRootFilesystem, true, `${what}: readOnlyRootFilesystem`);
        assert.equal(sc.allowPrivilegeEscalation, false, `${what}: allowPrivilegeEscalation`);
        assert.ok(sc.capabilities?.drop?.includes('ALL'), `${what}: capabilities drop ALL`);
        for (const m of c.volumeMounts ?? [])
            assert.ok(volumes.has(m.name), `${what}: volumeMount ${m.name} without a volume`);
        assert.ok((c.volumeMounts ?? []).some((m) => m.mountPath === '/tmp'),
            `${what}: /tmp must be writable`);
    }
}

function checkDeployment(d) {
    const spec = d.spec.template.spec;
    const what = `Deployment ${d.metadata.name}`;
    checkPodSpec(spec, what);
    for (const [k, v] of Object.entries(d.spec.selector.matchLabels))
        assert.equal(d.spec.template.metadata.labels[k], v, `${what}: selector label ${k}`);
    const c = spec.containers[0];
    assert.deepEqual(c.args, ['serve'], `${what}: the container runs serve`);
    const env = envOf(c);
    const listen = env.KL_LISTEN?.value;
    assert.ok(listen, `${what}: KL_LISTEN`);
    const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
    const http = (c.ports ?? []).find((p) => p.name === 'http');
    assert.ok(http, `${what}: a port named http`);
    assert.equal(http.containerPort, port, `${what}: containerPort is the port of KL_LISTEN`);
    const probes = {
        livenessProbe: '/healthz', readinessProbe: '/readyz', startupProbe: '/healthz',
    };
    for (const [probe, p] of Object.entries(probes)) {
        if (probe === 'startupProbe' && !c.startupProbe)
            continue;
        assert.equal(c[probe]?.httpGet?.path, p, `${what}: ${probe} path`);
        assert.ok(c[probe].httpGet.port === 'http' || c[probe].httpGet.port === port,
            `${what}: ${probe} port`);
    }
    const ann = d.spec.template.metadata.annotations ?? {};
    if (ann['prometheus.io/scrape'] !== undefined) {
        assert.equal(ann['prometheus.io/port'], String(port), `${what}: prometheus.io/port`);
        assert.equal(ann['prometheus.io/path'], '/metrics', `${what}: prometheus.io/path`);
    }
    // Kubernetes counts the preStop wait against the grace period.
    const grace = Number(env.KL_SHUTDOWN_GRACE_S?.value);
    assert.ok(Number.isInteger(grace), `${what}: KL_SHUTDOWN_GRACE_S`);
    const pre = c.lifecycle?.preStop;
    const sleep = pre ? Number(pre.sleep?.seconds ?? pre.exec?.command?.at(-1)) : 0;
    assert.ok(Number.isInteger(sleep), `${what}: preStop sleep`);
    if (pre?.exec)
        assert.deepEqual(pre.exec.command, ['sleep', String(sleep)]);
    assert.ok(spec.terminationGracePeriodSeconds >= sleep + grace,
        `${what}: terminationGracePeriodSeconds ${spec.terminationGracePeriodSeconds} < ` +
        `preStop ${sleep} + KL_SHUTDOWN_GRACE_S ${grace}`);
    // The SQLite file must be on a mounted volume when there is no PostgreSQL.
    if (!env.DATABASE_URL) {
        const file = env.KL_SQLITE_PATH?.value;
        assert.ok(file, `${what}: KL_SQLITE_PATH without DATABASE_URL`);
        assert.ok(c.volumeMounts.some((m) => m.mountPath === path.posix.dirname(file)),
            `${what}: the directory of ${file} is not a volume`);
    } else {
        assert.equal(env.KL_SQLITE_PATH, undefined, `${what}: KL_SQLITE_PATH with DATABASE_URL`);
    }
}

function checkCronJob(cj) {
    const what = `CronJob ${cj.metadata.name}`;
    assert.ok(cj.metadata.name.length <= 52, `${what}: name longer than 52 characters`);
    const spec = cj.spec.jobTemplate.spec.template.spec;
    checkPodSpec(spec, what);
    assert.equal(spec.restartPolicy, 'Never');
    const c = spec.containers[0];
    assert.equal(c.args[0], 'load', `${what}: runs kinesis-loader load`);
    assert.ok(c.args[1] && !c.args[1].startsWith('-'), `${what}: the stream follows load`);
    assert.ok(envOf(c).DATABASE_URL, `${what}: a scheduled load needs DATABASE_URL`);
}

function checkCommon(d) {
    assert.ok(d.apiVersion && d.kind && d.metadata?.name, 'apiVersion, kind and name');
    assert.ok(d.metadata.name.length <= 63, `${d.kind} ${d.metadata.name}: name too long`);
    assert.match(d.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${d.kind} name`);
    assert.equal(d.metadata.labels?.['app.kubernetes.io/name'], 'kinesis-loader');
    if (d.kind === 'Deployment')
        checkDeployment(d);
    if (d.kind === 'CronJob')
        checkCronJob(d);
}

// Checks across objects: the Service reaches the Deployment's pods on its
// http port, secretKeyRefs to the chart's Secret name keys it holds.
function checkRelations(docs) {
    const dep = one(docs, 'Deployment');
    const podLabels = dep.spec.template.metadata.labels;
    for (const svc of byKind(docs, 'Service')) {
        for (const [k, v] of Object.entries(svc.spec.selector))
            assert.equal(podLabels[k], v, `Service selector ${k}`);
        assert.equal(svc.spec.ports[0].targetPort, 'http');
    }
    const secrets = Object.fromEntries(byKind(docs, 'Secret').map((s) => [s.metadata.name, s]));
    const pods = [dep.spec.template.spec,
        ...byKind(docs, 'CronJob').map((c) => c.spec.jobTemplate.spec.template.spec)];
    // the autoscalers scale this Deployment
    for (const a of [...byKind(docs, 'HorizontalPodAutoscaler'), ...byKind(docs, 'ScaledObject')]) {
        assert.deepEqual(a.spec.scaleTargetRef,
            { apiVersion: 'apps/v1', kind: 'Deployment', name: dep.metadata.name },
            `${a.kind} ${a.metadata.name} scales the chart's Deployment`);
        assert.equal(a.metadata.namespace, dep.metadata.namespace, `${a.kind} namespace`);
        assert.equal(dep.spec.replicas, undefined,
            `the Deployment leaves its replicas to the ${a.kind}`);
    }
    for (const spec of pods) {
        for (const e of spec.containers[0].env ?? []) {
            const ref = e.valueFrom?.secretKeyRef;
            if (ref && secrets[ref.name])
                assert.ok(ref.key in secrets[ref.name].stringData, `Secret ${ref.name} has no ${ref.key}`);
        }
        const sa = spec.serviceAccountName;
        const made = byKind(docs, 'ServiceAccount').map((s) => s.metadata.name);
        assert.ok(made.length === 0 || made.includes(sa), `serviceAccountName ${sa}`);
    }
}

// ---- setup ----

before(() => {
    metrics = exportedMetrics();
    for (const [name, type] of [['kl_shard_millis_behind_latest', 'gauge'], ['kl_jobs', 'gauge'],
        ['kl_dead_letters_total', 'counter'], ['kl_http_request_duration_seconds', 'histogram']]) {
        assert.equal(metrics.get(name), type, `the metric names read from the sources lack ${name} ` +
            `(${[...metrics.keys()].join(' ')}): has the way server/metrics.c prints them changed?`);
    }

    const binary = argValue('--binary');
    assert.ok(binary, 'usage: node test_chart.mjs --binary PATH/TO/kinesis-loader');
    const help = execFileSync(binary, ['--help'], { encoding: 'utf8' });
    helpNames = new Set([...help.matchAll(/^ {2}([A-Z][A-Z0-9_]*)\b/gm)].map((m) => m[1]));
    assert.ok(helpNames.has('KL_LISTEN') && helpNames.has('DATABASE_URL') &&
        helpNames.has('REDIS_URL'), `\`${binary} --help\` does not list the variables`);

    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kl-chart-'));
    // helm template needs no cluster: an empty kubeconfig keeps any real one out
    fs.writeFileSync(path.join(tmp, 'kubeconfig'), '');
    if (process.env.KL_HELM) {
        helm = process.env.KL_HELM;
    } else {
        assert.ok(fs.existsSync(HELM_ZIP), `${HELM_ZIP} is missing: run \`npm ci\` in tests/ ` +
            '(scripts/install-deps.sh does it) to install @aws-cdk/asset-kubectl-v20');
        helm = path.join(tmp, 'helm');
        extractFromZip(HELM_ZIP, 'helm/helm', helm);
    }
    const v = runHelm(['version', '--short']);
    assert.equal(v.status, 0, `${helm} version failed: ${v.stderr}`);
    console.log(`# helm ${v.stdout.trim()}`);

    // A copy of the chart whose extra template renders NOTES.txt as a YAML
    // string, since helm template leaves NOTES.txt out.
    notesChart = path.join(tmp, 'kinesis-loader');
    fs.cpSync(CHART, notesChart, { recursive: true });
    fs.writeFileSync(path.join(notesChart, 'templates', 'zz-notes.yaml'),
        'notes: |\n{{ include (print $.Template.BasePath "/NOTES.txt") . | indent 2 }}\n');
});

after(() => {
    if (tmp)
        fs.rmSync(tmp, { recursive: true, force: true });
});

// ---- the tests ----

const VALUE_SETS = fs.readdirSync(VALUES_DIR).filter((f) => f.endsWith('.yaml')).sort();

describe('helm lint', () => {
    test('default values, --strict', () => {
        const r = runHelm(['lint', '--strict', CHART]);
        assert.equal(r.status, 0, r.stdout + r.stderr);
    });
    for (const f of VALUE_SETS) {
        test(`${f}, --strict`, () => {
            const r = runHelm(['lint', '--strict', CHART, ...valuesArgs([f])]);
            assert.equal(r.status, 0, r.stdout + r.stderr);
            // lint reports a template's `fail` as [INFO] only
            assert.doesNotMatch(r.stdout + r.stderr, /Fail:/);
        });
    }
});

describe('values.yaml', () => {
    const text = fs.readFileSync(path.join(CHART, 'values.yaml'), 'utf8');

    test('parses', () => {
        const doc = YAML.parseDocument(text);
        assert.equal(doc.errors.length, 0, doc.errors.join('; '));
    });

    test('every value has a comment right above it', () => {
        const lines = text.split('\n');
        const missing = [];
        lines.forEach((line, i) => {
            const m = line.match(/^(\s*)([A-Za-z_][\w.-]*):(\s|$)/);
            if (!m)
                return;
            let j = i - 1;
            while (j >= 0 && lines[j].trim() === '')
                j--;
            const prev = j >= 0 ? lines[j] : '';
            if (!(prev.startsWith(`${m[1]}#`)))
                missing.push(`line ${i + 1}: ${line.trim()}`);
        });
        assert.deepEqual(missing, [], 'values without a comment above them');
    });

    test('the defaults match the service\'s own defaults where they claim to', () => {
        const v = YAML.parse(text);
        const help = execFileSync(argValue('--binary'), ['--help'], { encoding: 'utf8' });
        const def = (name) => help.match(new RegExp(`^ {2}${name} {2}\\(default ([^,;)]+)`, 'm'))?.[1];
        assert.equal(String(v.config.workers), def('KL_WORKERS'));
        assert.equal(v.config.logLevel, def('KL_LOG_LEVEL'));
        assert.equal(String(v.shutdown.graceSeconds), def('KL_SHUTDOWN_GRACE_S'));
        assert.equal(`${v.listen.host}:${v.listen.port}`, def('KL_LISTEN'));
    });
});

describe('the PromQL check', () => {
    test('knows the metrics the sources print, with their types', () => {
        for (const [name, type] of Object.entries({
            kl_store_up: 'gauge', kl_tasks: 'gauge', kl_rows_loaded_total: 'counter',
            kl_kinesis_throttles_total: 'counter', kl_http_requests_total: 'counter',
            kl_engine_metrics_ok: 'gauge', process_resident_memory_bytes: 'gauge',
        }))
            assert.equal(metrics.get(name), type, name);
    });
    test('accepts histogram series and exported names', () => {
        assert.deepEqual(checkPromql('histogram_quantile(0.99, sum by (le) (rate(' +
            'kl_http_request_duration_seconds_bucket{route="/jobs/{id}"}[5m])))', 'q'),
        ['kl_http_request_duration_seconds_bucket']);
        assert.deepEqual(checkPromql('sum(kl_jobs{status="failed"}) - kl_jobs offset 5m', 'q'),
            ['kl_jobs', 'kl_jobs']);
    });
    test('refuses a renamed metric, a _bucket of a gauge, no metric, and bad syntax', () => {
        assert.throws(() => checkPromql('rate(kl_rows_loaded{a="b"}[5m])', 'q'),
            /kl_rows_loaded is not a metric/);
        assert.throws(() => checkPromql('kl_jobs_bucket', 'q'), /kl_jobs_bucket is not a metric/);
        assert.throws(() => checkPromql('vector(1)', 'q'), /selects no metric/);
        assert.throws(() => checkPromql('sum(rate(kl_rows_loaded_total[5m]) by', 'q'), /syntax error/);
    });
});

describe('helm template', () => {
    test('default values: one replica, SQLite on a volume, in-process state', () => {
        const { docs, notes } = render([], { notes: true });
        checkRelations(docs);
        assert.deepEqual(docs.map((d) => d.kind).sort(),
            ['Deployment', 'Service', 'ServiceAccount']);
        const dep = one(docs, 'Deployment');
        assert.equal(dep.spec.replicas, 1);
        const c = dep.spec.template.spec.containers[0];
        const env = envOf(c);
        assert.equal(env.KL_LISTEN.value, '0.0.0.0:8080');
        assert.equal(env.KL_WORKERS.value, '4');
        assert.equal(env.DATABASE_URL, undefined);
        assert.equal(env.REDIS_URL, undefined);
        assert.equal(env.KL_API_TOKEN, undefined);
        assert.equal(dep.spec.template.spec.terminationGracePeriodSeconds, 35);
        assert.deepEqual(c.lifecycle.preStop.exec.command, ['sleep', '5']);
        assert.equal(dep.spec.template.metadata.annotations['prometheus.io/scrape'], 'true');
        assert.equal(dep.spec.strategy.type, 'RollingUpdate');
        assert.match(notes, /curl -si -X POST http:\/\/localhost:8080\/streams\/STREAM\/loads/);
        assert.match(notes, /curl -s http:\/\/localhost:8080\/jobs\/JOB_ID/);
        assert.match(notes, /port-forward svc\/rel-kinesis-loader 8080:8080/);
        assert.match(notes, /WARNING: no apiToken/);
    });

    test('redis-postgres-3.yaml: three replicas on Redis and PostgreSQL from existing Secrets', () => {
        const { docs, notes } = render(['redis-postgres-3.yaml'], { notes: true });
        checkRelations(docs);
        const dep = one(docs, 'Deployment');
        assert.equal(dep.spec.replicas, 3);
        const env = envOf(dep.spec.template.spec.containers[0]);
        assert.deepEqual(env.DATABASE_URL.valueFrom.secretKeyRef,
            { name: 'kinesis-loader-db', key: 'url' });
        assert.deepEqual(env.REDIS_URL.valueFrom.secretKeyRef,
            { name: 'kinesis-loader-redis', key: 'url' });
        assert.deepEqual(env.KL_API_TOKEN.valueFrom.secretKeyRef,
            { name: 'kinesis-loader-api', key: 'KL_API_TOKEN' });
        assert.equal(env.AWS_REGION.value, 'eu-west-1');
        assert.equal(byKind(docs, 'Secret').length, 0, 'no Secret of the chart');
        assert.equal(one(docs, 'PodDisruptionBudget').spec.maxUnavailable, 1);
        const tsc = dep.spec.template.spec.topologySpreadConstraints;
        assert.equal(tsc.length, 1);
        assert.deepEqual(tsc[0].labelSelector.matchLabels, dep.spec.selector.matchLabels,
            'a constraint without labelSelector gets the pod selector');
        assert.match(notes, /Authorization: Bearer \$KL_API_TOKEN/);
        assert.match(notes, /get secret kinesis-loader-api/);
    });

    test('irsa.yaml: role annotation, plain values in the chart\'s Secret', () => {
        const { docs } = render(['irsa.yaml']);
        checkRelations(docs);
        const sa = one(docs, 'ServiceAccount');
        assert.equal(sa.metadata.annotations['eks.amazonaws.com/role-arn'],
            'arn:aws:iam::123456789012:role/kinesis-loader');
        const dep = one(docs, 'Deployment');
        assert.equal(dep.spec.template.spec.serviceAccountName, sa.metadata.name);
        const secret = one(docs, 'Secret');
        assert.deepEqual(Object.keys(secret.stringData).sort(),
            ['DATABASE_URL', 'KL_API_TOKEN', 'REDIS_URL']);
        const env = envOf(dep.spec.template.spec.containers[0]);
        for (const name of ['DATABASE_URL', 'REDIS_URL', 'KL_API_TOKEN'])
            assert.deepEqual(env[name].valueFrom.secretKeyRef, { name: secret.metadata.name, key: name });
        assert.match(env.AWS_ENDPOINT_URL_KINESIS.value, /^https:\/\/vpce-/);
        assert.match(dep.spec.template.metadata.annotations['checksum/secret'], /^[0-9a-f]{64}$/);
        // the values must not leak into the Deployment
        assert.doesNotMatch(JSON.stringify(dep), /s3cr3t-token|loader:secret@/);
    });

    test('cronjob.yaml: one CronJob per load, running kinesis-loader load', () => {
        const { docs, notes } = render(['cronjob.yaml'], { notes: true });
        checkRelations(docs);
        const cjs = byKind(docs, 'CronJob');
        assert.deepEqual(cjs.map((c) => c.metadata.name),
            ['rel-kinesis-loader-load-orders', 'rel-kinesis-loader-load-click-stream-v2']);
        const [orders, clicks] = cjs;
        assert.equal(orders.spec.schedule, '*/15 * * * *');
        assert.equal(clicks.spec.schedule, '0 * * * *');
        assert.equal(orders.spec.timeZone, 'Europe/Berlin');
        assert.equal(orders.spec.concurrencyPolicy, 'Forbid');
        const c = orders.spec.jobTemplate.spec.template.spec.containers[0];
        assert.deepEqual(c.args, ['load', 'orders', '--workers', '4', '--timeout', '3300',
            '--dataset-name', 'raw', '--write-disposition', 'merge']);
        assert.equal(clicks.spec.jobTemplate.spec.template.spec.containers[0].args[1],
            'click_stream.v2');
        const env = envOf(c);
        assert.deepEqual(Object.keys(env).sort(),
            ['AWS_REGION', 'DATABASE_URL', 'KL_LOG_LEVEL', 'REDIS_URL']);
        assert.match(notes, /rel-kinesis-loader-load-orders: stream orders/);
    });

    test('servicemonitor.yaml: a ServiceMonitor on /metrics instead of pod annotations', () => {
        const { docs } = render(['servicemonitor.yaml']);
        checkRelations(docs);
        const sm = one(docs, 'ServiceMonitor');
        assert.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
        assert.equal(sm.metadata.namespace, 'monitoring');
        assert.equal(sm.metadata.labels.release, 'prometheus');
        assert.deepEqual(sm.spec.namespaceSelector.matchNames, ['data']);
        assert.deepEqual(sm.spec.endpoints, [
            { port: 'http', path: '/metrics', interval: '15s', scrapeTimeout: '10s' }]);
        const svc = one(docs, 'Service');
        for (const [k, v] of Object.entries(sm.spec.selector.matchLabels))
            assert.equal(svc.metadata.labels[k], v, `ServiceMonitor selects the Service by ${k}`);
        const ann = one(docs, 'Deployment').spec.template.metadata.annotations ?? {};
        assert.equal(ann['prometheus.io/scrape'], undefined);
    });

    test('sqlite-pvc.yaml: the SQLite file on a claim, Recreate updates', () => {
        const { docs } = render(['sqlite-pvc.yaml']);
        checkRelations(docs);
        const pvc = one(docs, 'PersistentVolumeClaim');
        assert.equal(pvc.spec.resources.requests.storage, '5Gi');
        const dep = one(docs, 'Deployment');
        assert.equal(dep.spec.strategy.type, 'Recreate');
        const vol = dep.spec.template.spec.volumes.find((v) => v.name === 'sqlite');
        assert.equal(vol.persistentVolumeClaim.claimName, pvc.metadata.name);
    });

    test('keda.yaml: a KEDA ScaledObject scales the Deployment on shard lag', () => {
        const { docs, notes } = render(['keda.yaml'], { notes: true });
        checkRelations(docs);
        const so = one(docs, 'ScaledObject');
        assert.equal(so.apiVersion, 'keda.sh/v1alpha1');
        assert.equal(byKind(docs, 'HorizontalPodAutoscaler').length, 0, 'KEDA makes its own HPA');
        assert.equal(so.spec.minReplicaCount, 2);
        assert.equal(so.spec.maxReplicaCount, 10);
        assert.equal(so.spec.pollingInterval, 30);
        assert.deepEqual(so.spec.advanced.horizontalPodAutoscalerConfig.behavior,
            { scaleDown: { stabilizationWindowSeconds: 600 } });
        assert.equal(so.spec.triggers.length, 1);
        const [t] = so.spec.triggers;
        assert.equal(t.type, 'prometheus');
        assert.deepEqual(t.authenticationRef, { name: 'prometheus-auth' });
        assert.equal(t.metadata.serverAddress, 'http://prometheus-operated.monitoring.svc:9090');
        assert.equal(t.metadata.threshold, '120000', 'KEDA wants the threshold as a string');
        assert.equal(t.metadata.query, 'max(kl_shard_millis_behind_latest{namespace="data"})');
        assert.deepEqual(checkPromql(t.metadata.query, 'the KEDA trigger'),
            ['kl_shard_millis_behind_latest']);
        assert.match(notes, /2 to 10 replicas scaled by KEDA on shard lag/);
        // metrics.selector and a query of one's own
        const own = one(render(['keda.yaml', 'string:metrics.selector=job="loader"']).docs,
            'ScaledObject').spec.triggers[0].metadata.query;
        assert.equal(own, 'max(kl_shard_millis_behind_latest{job="loader"})');
        const q = 'sum(kl_tasks{state="queued"})';
        assert.equal(one(render(['keda.yaml', `string:keda.prometheus.query=${q}`]).docs,
            'ScaledObject').spec.triggers[0].metadata.query, q);
    });

    test('hpa.yaml: a HorizontalPodAutoscaler scales the Deployment on CPU', () => {
        const { docs, notes } = render(['hpa.yaml'], { notes: true });
        checkRelations(docs);
        const hpa = one(docs, 'HorizontalPodAutoscaler');
        assert.equal(hpa.apiVersion, 'autoscaling/v2');
        assert.equal(byKind(docs, 'ScaledObject').length, 0);
        assert.equal(hpa.spec.minReplicas, 2);
        assert.equal(hpa.spec.maxReplicas, 4);
        assert.deepEqual(hpa.spec.metrics, [{ type: 'Resource',
            resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 60 } } }]);
        assert.equal(hpa.spec.behavior, undefined);
        assert.match(notes, /2 to 4 replicas scaled on CPU/);
    });

    // What every alert must have, and its queries checked as PromQL.
    function checkRules(pr, selector) {
        assert.equal(pr.apiVersion, 'monitoring.coreos.com/v1');
        const rules = pr.spec.groups.flatMap((g) => g.rules);
        for (const r of rules) {
            const what = `alert ${r.alert}`;
            assert.match(r.alert, /^KinesisLoader[A-Z][A-Za-z]+$/, what);
            assert.match(r.for, /^[0-9]+[smhdw]$/, `${what}: for`);
            assert.ok(r.labels.severity, `${what}: severity`);
            for (const a of ['summary', 'description', 'runbook']) {
                const text = r.annotations[a];
                assert.ok(typeof text === 'string' && text.length > 20, `${what}: annotation ${a}`);
                assert.equal(text.split('{{').length, text.split('}}').length,
                    `${what}: ${a}: unbalanced template braces`);
                assert.doesNotMatch(text, /%!|<no value>/, `${what}: ${a}: a broken printf`);
            }
            const names = checkPromql(r.expr, what);
            for (const n of names) {
                assert.ok(r.expr.includes(`${n}{${selector}`),
                    `${what}: ${n} without the selector ${selector}: ${r.expr}`);
            }
        }
        return Object.fromEntries(rules.map((r) => [r.alert, r]));
    }

    // The dashboard: every panel queries, every query parses and names only
    // exported metrics, filtered by the dashboard's namespace and job.
    function checkDashboard(dash) {
        assert.equal(dash.uid, 'kinesis-loader');
        assert.ok(dash.title && Number.isInteger(dash.schemaVersion), 'title and schemaVersion');
        const vars = Object.fromEntries(dash.templating.list.map((v) => [v.name, v]));
        assert.deepEqual(Object.keys(vars), ['datasource', 'namespace', 'job']);
        assert.equal(vars.datasource.type, 'datasource');
        assert.equal(vars.datasource.query, 'prometheus');
        // Grafana's variables, as Prometheus would see them after Grafana
        const grafana = (e) => e.replaceAll('$__rate_interval', '5m').replaceAll('$__interval', '1m');
        for (const v of [vars.namespace, vars.job]) {
            const m = v.query.query.match(/^label_values\((.+), *([a-z_]+)\)$/);
            assert.ok(m, `variable ${v.name}: a label_values query`);
            checkPromql(grafana(m[1]), `variable ${v.name}`);
            assert.equal(m[2], v.name);
        }
        const panels = dash.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
        const ids = panels.map((p) => p.id);
        assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
        const used = new Set();
        for (const p of panels.filter((x) => x.type !== 'row')) {
            const what = `panel "${p.title}"`;
            assert.ok(p.description, `${what}: a description`);
            assert.equal(p.datasource?.uid, '${datasource}', `${what}: the datasource variable`);
            assert.ok(p.targets?.length > 0, `${what}: no query`);
            for (const t of p.targets) {
                assert.equal(t.datasource?.uid, '${datasource}', `${what}: target datasource`);
                const expr = grafana(t.expr);
                for (const n of checkPromql(expr, what)) {
                    used.add(n);
                    assert.ok(expr.includes(`${n}{namespace=~"$namespace",job=~"$job"`),
                        `${what}: ${n} without the namespace and job filters: ${t.expr}`);
                }
            }
        }
        for (const n of ['kl_jobs', 'kl_rows_loaded_total', 'kl_messages_loaded_total',
            'kl_shard_millis_behind_latest', 'kl_kinesis_throttles_total', 'kl_kinesis_retries_total',
            'kl_http_request_duration_seconds_bucket', 'kl_dead_letters_total'])
            assert.ok(used.has(n), `no panel shows ${n}`);
    }

    test('grafana-dashboard.yaml: the dashboard JSON in a ConfigMap with the sidecar\'s label', () => {
        const { docs } = render(['grafana-dashboard.yaml']);
        const cm = one(docs, 'ConfigMap');
        assert.equal(cm.metadata.name, 'rel-kinesis-loader-dashboard');
        assert.equal(cm.metadata.namespace, 'monitoring');
        assert.equal(cm.metadata.labels['kinesis-loader/dashboard'], 'kinesis');
        assert.equal(cm.metadata.labels.grafana_dashboard, undefined);
        assert.equal(cm.metadata.annotations.grafana_folder, 'Data');
        assert.deepEqual(Object.keys(cm.data), ['kinesis-loader.json']);
        const file = fs.readFileSync(path.join(CHART, 'dashboards', 'kinesis-loader.json'), 'utf8');
        assert.equal(cm.data['kinesis-loader.json'], file.trim(), 'the chart\'s file as it is');
        checkDashboard(JSON.parse(cm.data['kinesis-loader.json']));
        const dflt = one(render(['grafanaDashboard.enabled=true']).docs, 'ConfigMap');
        assert.equal(dflt.metadata.labels.grafana_dashboard, '1');
        assert.equal(dflt.metadata.namespace, 'data');
    });

    const ALERTS = ['KinesisLoaderShardLagHigh', 'KinesisLoaderJobsFailing', 'KinesisLoaderDeadLetters',
        'KinesisLoaderStoreDown', 'KinesisLoaderNotReady', 'KinesisLoaderKinesisFailing',
        'KinesisLoaderNoJobSucceeded', 'KinesisLoaderPipelineNotRead'];

    test('prometheusRule.enabled: every alert, on the release\'s namespace', () => {
        const { docs } = render(['prometheusRule.enabled=true']);
        const pr = one(docs, 'PrometheusRule');
        assert.equal(pr.metadata.namespace, 'data');
        const rules = checkRules(pr, 'namespace="data"');
        assert.deepEqual(Object.keys(rules), ALERTS);
        assert.match(rules.KinesisLoaderShardLagHigh.expr,
            /^max by \(namespace, job, pipeline, stream, shard\) \(kl_shard_millis_behind_latest\{namespace="data"\}\) \/ 1000 > 600$/);
        assert.equal(rules.KinesisLoaderShardLagHigh.for, '15m');
        assert.match(rules.KinesisLoaderJobsFailing.expr, /increase\(kl_task_failures_total\{[^}]*\}\[30m\]\)/);
        assert.match(rules.KinesisLoaderJobsFailing.expr, /kl_jobs\{namespace="data",status="failed"\}/);
        assert.match(rules.KinesisLoaderStoreDown.expr, /kl_store_up\{namespace="data"\}\) == 0/);
        assert.match(rules.KinesisLoaderNotReady.expr, /route="\/readyz",code="503"/);
        assert.match(rules.KinesisLoaderNoJobSucceeded.expr, /status="succeeded"\} offset 6h/);
        assert.equal(rules.KinesisLoaderStoreDown.labels.severity, 'critical');
        assert.equal(rules.KinesisLoaderDeadLetters.labels.severity, 'warning');
        assert.equal(rules.KinesisLoaderDeadLetters.annotations.runbook_url, undefined);
        // the routes and statuses the queries match are ones the service has
        const routes = fs.readFileSync(path.join(ROOT, 'api', 'routes.c'), 'utf8');
        assert.match(routes, /"GET", +"\/readyz"/);
        const statuses = fs.readFileSync(path.join(ROOT, 'core', 'store', 'store.c'), 'utf8');
        assert.match(statuses, /status_names\[\] = \{[^}]*"succeeded", "failed"/);
    });

    test('prometheusrule.yaml: labels, runbook links, thresholds, metrics.selector', () => {
        const { docs } = render(['prometheusrule.yaml']);
        const pr = one(docs, 'PrometheusRule');
        assert.equal(pr.metadata.namespace, 'monitoring');
        assert.equal(pr.metadata.labels.release, 'prometheus');
        const rules = checkRules(pr, 'job="loader"');
        assert.deepEqual(Object.keys(rules), ALERTS.filter((a) => a !== 'KinesisLoaderKinesisFailing'));
        for (const r of Object.values(rules)) {
            assert.equal(r.labels.team, 'data');
            assert.equal(r.annotations.runbook_url,
                `https://runbooks.example.com/kinesis-loader#${r.alert.toLowerCase()}`);
        }
        assert.match(rules.KinesisLoaderShardLagHigh.expr, / > 120$/);
        assert.equal(rules.KinesisLoaderShardLagHigh.for, '5m');
        assert.match(rules.KinesisLoaderShardLagHigh.annotations.description, /threshold of 120 seconds/);
        assert.match(rules.KinesisLoaderDeadLetters.expr,
            /^sum by \(namespace, job\) \(increase\(kl_dead_letters_total\{job="loader"\}\[1h\]\)\) > 10$/);
        assert.match(rules.KinesisLoaderPipelineNotRead.expr, /\[7d\]\)\)\nunless on .*\n.*\[25h\]\)\)$/);
    });

    test('all-options.yaml: every optional setting renders', () => {
        const { docs, notes } = render(['all-options.yaml'], { notes: true });
        checkRelations(docs);
        assert.deepEqual(docs.map((d) => d.kind).sort(), ['ConfigMap', 'CronJob', 'Deployment',
            'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'PrometheusRule', 'Secret', 'Service',
            'ServiceAccount', 'ServiceMonitor']);
        const hpa = one(docs, 'HorizontalPodAutoscaler');
        assert.deepEqual([hpa.spec.minReplicas, hpa.spec.maxReplicas], [3, 12]);
        assert.deepEqual(hpa.spec.behavior, { scaleDown: { stabilizationWindowSeconds: 900 } });
        checkRules(one(docs, 'PrometheusRule'), 'namespace="data"');
        checkDashboard(JSON.parse(one(docs, 'ConfigMap').data['kinesis-loader.json']));
        assert.match(notes, /3 to 12 replicas scaled on CPU/);
        const dep = one(docs, 'Deployment');
        const spec = dep.spec.template.spec;
        const c = spec.containers[0];
        const env = envOf(c);
        assert.equal(env.KL_LISTEN.value, '[::]:9090');
        assert.equal(c.image, 'registry.example.com/data/kinesis-loader@sha256:' +
            '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef');
        for (const [name, value] of Object.entries({
            KL_WORKERS: '16', KL_LEASE_TTL_S: '60', KL_TASK_SLICE_S: '120', KL_KINESIS_CALL_TIMEOUT_S: '90',
            KL_JOB_RETENTION_HOURS: '72', KL_KINESIS_PACING: 'on', KL_MEMORY_MAX: '48MiB', KL_LOG_LEVEL: 'debug',
            KL_SHUTDOWN_GRACE_S: '60', KL_HTTP_THREADS: '8', KL_MAX_BODY: '2MiB',
        }))
            assert.equal(env[name]?.value, value, name);
        assert.deepEqual(JSON.parse(env.KL_CONTINUOUS_LOADS.value),
            [{ stream: 'orders', dataset_name: 'raw', initial_at_timestamp: null, poll_interval_ms: 500 }]);
        assert.deepEqual(c.lifecycle.preStop, { sleep: { seconds: 10 } });
        assert.equal(spec.terminationGracePeriodSeconds, 90);
        assert.equal(c.startupProbe, undefined);
        assert.equal(c.livenessProbe.initialDelaySeconds, 20);
        assert.equal(one(docs, 'Service').spec.ports[0].nodePort, 30080);
        assert.equal(one(docs, 'PodDisruptionBudget').spec.minAvailable, 2);
        assert.equal(spec.topologySpreadConstraints[0].labelSelector.matchLabels[
            'app.kubernetes.io/instance'], 'custom', 'an explicit labelSelector stays');
        const cj = one(docs, 'CronJob');
        assert.equal(cj.metadata.name, 'loader-load-nightly-events');
        assert.equal(cj.spec.suspend, true);
        assert.deepEqual(cj.spec.jobTemplate.spec.template.spec.containers[0].args,
            ['load', 'events', '--workers', '2']);
        assert.match(notes, /port-forward svc\/loader 8080:80/);
    });

    test('a long release name stays within the name limits', () => {
        const long = 'a-release-name-that-is-as-long-as-helm-allows-53-char';
        assert.equal(long.length, 53);
        const r = runHelm(['template', long, CHART, ...valuesArgs(['cronjob.yaml'])]);
        assert.equal(r.status, 0, r.stderr);
        for (const d of YAML.parseAllDocuments(r.stdout).map((x) => x.toJSON()).filter(Boolean))
            checkCommon(d);
    });
});

describe('combinations that cannot work fail to render', () => {
    test('replicas 2 without Redis', () => renderFails(['replicaCount=2',
        'database.url=postgresql://db/x'], /replicaCount=2 needs shared state: set redis\.url or redis\.existingSecret/));
    test('replicas 2 without Redis and PostgreSQL', () => renderFails(['replicaCount=2'],
        /needs shared state/));
    test('replicas 2 with Redis but SQLite', () => renderFails(['replicaCount=2',
        'redis.url=redis://r:6379'], /replicaCount=2 needs PostgreSQL/));
    test('a URL both inline and from a Secret', () => renderFails(['database.url=postgresql://db/x',
        'database.existingSecret=db'], /database\.url and database\.existingSecret are both set/));
    test('rediss:// (no TLS in this build)', () => renderFails(['redis.url=rediss://r:6380'],
        /rediss:\/\/ \(TLS\) is not supported/));
    test('a grace period shorter than preStop + shutdown', () => renderFails(
        ['terminationGracePeriodSeconds=20'], /terminationGracePeriodSeconds=20 is shorter than/));
    test('extraEnv repeating a variable the chart sets', () => renderFails(
        ['extraEnv[0].name=KL_WORKERS', 'extraEnv[0].value=8'], /extraEnv sets KL_WORKERS/));
    test('scheduled loads without PostgreSQL', () => renderFails(['cronJob.enabled=true',
        'cronJob.loads[0].stream=s'], /cronJob\.enabled needs PostgreSQL/));
    test('scheduled loads without loads', () => renderFails(['cronJob.enabled=true',
        'database.existingSecret=db'], /cronJob\.loads is empty/));
    test('a scheduled load without a stream', () => renderFails(['cronJob.enabled=true',
        'database.existingSecret=db', 'cronJob.loads[0].schedule=@daily'],
    /stream is required/));
    test('two scheduled loads with one name', () => renderFails(['cronJob.enabled=true',
        'database.existingSecret=db', 'cronJob.loads[0].stream=a_b', 'cronJob.loads[1].stream=a.b'],
    /already taken/));
    test('a relative SQLite path', () => renderFails(['sqlite.path=kinesis-loader.db'],
        /sqlite\.path=kinesis-loader\.db: expected an absolute path/));
    const shared = ['redis.url=redis://r:6379', 'database.url=postgresql://db/x'];
    const keda = ['keda.enabled=true', 'keda.prometheus.serverAddress=http://prometheus:9090'];
    test('KEDA and the HorizontalPodAutoscaler both', () => renderFails(
        [...shared, ...keda, 'autoscaling.enabled=true'],
        /autoscaling\.enabled and keda\.enabled are both set/));
    test('KEDA without Redis', () => renderFails(['database.url=postgresql://db/x', ...keda],
        /keda\.enabled \(up to keda\.maxReplicas=6 pods\) needs shared state: set redis\.url/));
    test('KEDA with Redis but SQLite', () => renderFails(['redis.url=redis://r:6379', ...keda],
        /keda\.enabled \(up to keda\.maxReplicas=6 pods\) needs PostgreSQL/));
    test('the HorizontalPodAutoscaler without Redis', () => renderFails(['autoscaling.enabled=true'],
        /autoscaling\.enabled \(up to autoscaling\.maxReplicas=6 pods\) needs shared state/));
    test('the HorizontalPodAutoscaler with Redis but SQLite', () => renderFails(
        ['autoscaling.enabled=true', 'redis.url=redis://r:6379'],
        /autoscaling\.enabled \(up to autoscaling\.maxReplicas=6 pods\) needs PostgreSQL/));
    test('KEDA without a Prometheus to ask', () => renderFails([...shared, 'keda.enabled=true'],
        /keda\.enabled needs keda\.prometheus\.serverAddress/));
    test('the HorizontalPodAutoscaler without a CPU request', () => renderFails(
        [...shared, 'autoscaling.enabled=true', 'resources.requests.cpu=null'],
        /autoscaling\.enabled scales on CPU utilisation, .*set resources\.requests\.cpu/));
    test('an alert about pipelines not read that forgets them sooner than it looks', () => renderFails(
        ['prometheusRule.enabled=true', 'prometheusRule.alerts.pipelineNotRead.seenWithin=6h'],
        /pipelineNotRead\.seenWithin=6h must be longer than its window=6h/));
    test('more pods at least than at most', () => renderFails(
        [...shared, 'autoscaling.enabled=true', 'autoscaling.minReplicas=5', 'autoscaling.maxReplicas=3'],
        /autoscaling\.minReplicas=5 is above autoscaling\.maxReplicas=3/));
});

describe('values.schema.json refuses values of the wrong shape', () => {
    test('a misspelt top-level value', () => renderFails(['replicas=3'],
        /Additional property replicas is not allowed/));
    test('an unknown log level', () => renderFails(['config.logLevel=verbose'], /logLevel/));
    test('no workers', () => renderFails(['config.workers=0'], /workers/));
    test('a port out of range', () => renderFails(['listen.port=70000'], /port/));
    test('a token with a space', () => renderFails(['apiToken.value=a b'], /apiToken\.value/));
    test('a stream name Kinesis does not allow', () => renderFails(['cronJob.enabled=true',
        'database.existingSecret=db', 'cronJob.loads[0].stream=a/b'], /stream/));
    test('a string where a number belongs', () => renderFails(['string:shutdown.graceSeconds=25'],
        /graceSeconds/));
    test('an alert duration that is not one', () => renderFails(
        ['prometheusRule.enabled=true', 'prometheusRule.alerts.shardLag.for=15 minutes'], /for/));
    test('KEDA scaling to zero', () => renderFails(['keda.minReplicas=0'], /minReplicas/));
    test('a KEDA threshold that is not a number', () => renderFails(
        ['string:keda.prometheus.threshold=1m'], /threshold/));
});

describe('Dockerfile', () => {
    const text = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    const values = YAML.parse(fs.readFileSync(path.join(CHART, 'values.yaml'), 'utf8'));

    test('builds on debian:12-slim and runs kinesis-loader as the chart\'s user', () => {
        assert.match(text, /^ARG DEBIAN_IMAGE=debian:12-slim$/m);
        assert.equal([...text.matchAll(/^FROM /gm)].length, 2, 'a build and a runtime stage');
        assert.match(text, /^ENTRYPOINT \["kinesis-loader"\]$/m);
        assert.match(text, /^CMD \["serve"\]$/m);
        const user = text.match(/^USER (\d+):(\d+)$/m);
        assert.ok(user, 'USER uid:gid');
        assert.equal(Number(user[1]), values.podSecurityContext.runAsUser);
        assert.equal(Number(user[2]), values.podSecurityContext.runAsGroup);
        assert.match(text, new RegExp(`^EXPOSE ${values.listen.port}$`, 'm'));
    });
});
