#!/usr/bin/env node
// Checks recorded HTTP exchanges against openapi.yaml (the contract test of
// the REST API). Usage:
//   node tests/tools/check-contract.js openapi.yaml exchanges.json
// exchanges.json is an array of {method, url, status, headers: {Name: value},
// json?, body_length}, as tests/unit/test_httpd.c records them. For each
// exchange: the operation is found by path template and method; the status
// must be one the operation declares (unmatched paths may answer 401, 404 or
// 405 with a Problem; any operation may answer 500 with a Problem); the
// Content-Type must be the declared media type; a JSON body must satisfy the
// declared schema; declared headers (Location, Retry-After, WWW-Authenticate)
// must be present; every response carries X-Request-Id, and a problem's
// `status` and `request_id` agree with the response.
//
// openapi.yaml is bundled and dereferenced by @redocly/cli from
// tests/node_modules; the schema check is a small JSON Schema subset (type,
// const, enum, required, properties, additionalProperties, items, oneOf,
// anyOf, allOf, pattern, min/max, min/maxLength, format date-time), which is
// all openapi.yaml uses.
'use strict';

const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

function bundle(specPath) {
  const cli = path.join(__dirname, '..', 'node_modules', '@redocly', 'cli', 'bin', 'cli.js');
  const out = path.join(os.tmpdir(), `kl-openapi-${process.pid}.json`);
  const r = spawnSync(process.execPath,
    [cli, 'bundle', specPath, '--dereferenced', '--ext', 'json', '-o', out],
    { encoding: 'utf8',
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' } });
  if (r.status !== 0) {
    process.stderr.write(`redocly bundle failed:\n${r.stdout}\n${r.stderr}\n`);
    process.exit(2);
  }
  const spec = JSON.parse(fs.readFileSync(out, 'utf8'));
  fs.unlinkSync(out);
  return spec;
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function deepEqual(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function hasType(v, t) {
  switch (t) {
    case 'null': return v === null;
    case 'boolean': return typeof v === 'boolean';
    case 'integer': return typeof v === 'number' && Number.isInteger(v);
    case 'number': return typeof v === 'number';
    case 'string': return typeof v === 'string';
    case 'array': return Array.isArray(v);
    case 'object': return isObject(v);
    default: return false;
  }
}

const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function validate(schema, v, where, errors) {
  if (schema === undefined || schema === true) return;
  if (schema === false) { errors.push(`${where}: not allowed`); return; }
  for (const s of schema.allOf || []) validate(s, v, where, errors);
  if (schema.oneOf) {
    const n = schema.oneOf.filter((s) => { const e = []; validate(s, v, where, e); return e.length === 0; }).length;
    if (n !== 1) errors.push(`${where}: ${JSON.stringify(v)} matches ${n} of oneOf`);
  }
  if (schema.anyOf) {
    const n = schema.anyOf.filter((s) => { const e = []; validate(s, v, where, e); return e.length === 0; }).length;
    if (n === 0) errors.push(`${where}: matches none of anyOf`);
  }
  if ('const' in schema && !deepEqual(v, schema.const)) errors.push(`${where}: expected ${JSON.stringify(schema.const)}`);
  if (schema.enum && !schema.enum.some((e) => deepEqual(e, v))) errors.push(`${where}: ${JSON.stringify(v)} not in ${JSON.stringify(schema.enum)}`);
  if (schema.type) {
    const types = [].concat(schema.type);
    if (!types.some((t) => hasType(v, t))) {
      errors.push(`${where}: ${JSON.stringify(v)} is not ${types.join(' or ')}`);
      return;
    }
  }
  if (typeof v === 'string') {
    if (schema.minLength !== undefined && [...v].length < schema.minLength) errors.push(`${where}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && [...v].length > schema.maxLength) errors.push(`${where}: longer than ${schema.maxLength}`);
    if (schema.pattern && !new RegExp(schema.pattern, 'u').test(v)) errors.push(`${where}: '${v}' does not match ${schema.pattern}`);
    if (schema.format === 'date-time' && !(DATE_TIME.test(v) && !Number.isNaN(Date.parse(v)))) errors.push(`${where}: '${v}' is not a date-time`);
  }
  if (typeof v === 'number') {
    if (schema.minimum !== undefined && v < schema.minimum) errors.push(`${where}: below ${schema.minimum}`);
    if (schema.maximum !== undefined && v > schema.maximum) errors.push(`${where}: above ${schema.maximum}`);
  }
  if (Array.isArray(v) && schema.items) v.forEach((x, i) => validate(schema.items, x, `${where}[${i}]`, errors));
  if (isObject(v)) {
    for (const k of schema.required || []) if (!(k in v)) errors.push(`${where}: '${k}' is required`);
    const props = schema.properties || {};
    for (const [k, x] of Object.entries(v)) {
      if (k in props) validate(props[k], x, `${where}.${k}`, errors);
      else if (schema.additionalProperties === false) errors.push(`${where}: unexpected property '${k}'`);
      else if (isObject(schema.additionalProperties)) validate(schema.additionalProperties, x, `${where}.${k}`, errors);
    }
  }
}

function main() {
  const [specPath, exchangesPath] = process.argv.slice(2);
  if (!specPath || !exchangesPath) {
    process.stderr.write('usage: check-contract.js openapi.yaml exchanges.json\n');
    process.exit(2);
  }
  const spec = bundle(specPath);
  const exchanges = JSON.parse(fs.readFileSync(exchangesPath, 'utf8'));
  const problemSchema = spec.components.schemas.Problem;
  const routes = Object.entries(spec.paths).map(([tpl, item]) => ({
    tpl, item, re: new RegExp(`^${tpl.replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+')}$`),
  }));
  const failures = [];
  const seen = new Set();

  for (const ex of exchanges) {
    const errors = [];
    const pathOnly = ex.url.split('?')[0];
    const method = ex.method === 'HEAD' ? 'get' : ex.method.toLowerCase();
    const header = (n) => {
      const k = Object.keys(ex.headers).find((h) => h.toLowerCase() === n.toLowerCase());
      return k === undefined ? undefined : ex.headers[k];
    };
    const route = routes.find((r) => r.re.test(pathOnly));
    const op = route && route.item[method];
    const ctype = (header('Content-Type') || '').split(';')[0].trim().toLowerCase();
    let schema;
    let declared;

    if (!header('X-Request-Id')) errors.push('no X-Request-Id');
    if (!op) {
      if (![401, 404, 405].includes(ex.status)) errors.push(`no operation for ${ex.method} ${pathOnly}, yet status ${ex.status}`);
      schema = problemSchema;
      if (ctype !== 'application/problem+json') errors.push(`Content-Type ${ctype}`);
    } else {
      seen.add(`${method.toUpperCase()} ${route.tpl}`);
      declared = op.responses[String(ex.status)];
      if (!declared && ex.status === 500) declared = { content: { 'application/problem+json': { schema: problemSchema } } };
      if (!declared) {
        errors.push(`status ${ex.status} is not declared (${Object.keys(op.responses).join(', ')})`);
      } else {
        const media = declared.content || {};
        const types = Object.keys(media);
        if (types.length === 0) {
          if (ex.body_length !== 0) errors.push(`a body where none is declared`);
        } else if (!types.includes(ctype)) {
          errors.push(`Content-Type '${ctype}', declared ${types.join(', ')}`);
        } else {
          schema = media[ctype].schema;
        }
        for (const h of Object.keys(declared.headers || {})) {
          if (header(h) === undefined) errors.push(`declared header ${h} is missing`);
        }
      }
    }
    if (schema && ctype.endsWith('json') && ex.method !== 'HEAD') {
      if (ex.json === undefined) errors.push('the JSON body did not parse');
      else validate(schema, ex.json, 'body', errors);
    }
    if (ctype === 'application/problem+json' && ex.json) {
      if (ex.json.status !== ex.status) errors.push(`problem status ${ex.json.status} on a ${ex.status}`);
      if (ex.json.request_id !== header('X-Request-Id')) errors.push('problem request_id differs from X-Request-Id');
    }
    if (errors.length > 0) failures.push(`${ex.method} ${ex.url} -> ${ex.status}:\n    ${errors.join('\n    ')}`);
  }

  const all = routes.flatMap((r) => ['get', 'post', 'delete', 'put', 'patch'].filter((m) => r.item[m]).map((m) => `${m.toUpperCase()} ${r.tpl}`));
  const missed = all.filter((o) => !seen.has(o));
  process.stdout.write(`${exchanges.length} exchanges, ${seen.size} of ${all.length} operations exercised\n`);
  if (missed.length > 0) failures.push(`operations never exercised: ${missed.join(', ')}`);
  if (failures.length > 0) {
    process.stdout.write(`${failures.join('\n')}\n`);
    process.exit(1);
  }
}

main();
