/*
 * Shared by the CLI tools in this folder: flag parsing and a Kinesis client
 * configured from flags. Test and benchmark tooling only.
 */
'use strict';

// The pinned SDK warns on every run that future releases need Node.js 22;
// the tools' output is read by tests, so keep stderr for real errors.
if (process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED === undefined) {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
}

const { KinesisClient } = require('@aws-sdk/client-kinesis');
const { NodeHttpHandler } = require('@smithy/node-http-handler');

// Flags every tool accepts. Defaults come from the environment the tests
// run in (.run/services.env), so a tool works against the signature proxy
// without extra flags.
const COMMON_FLAGS = {
  endpoint: { type: 'string', default: process.env.AWS_ENDPOINT_URL_KINESIS, help: 'Kinesis endpoint URL (required)' },
  region: { type: 'string', default: process.env.AWS_REGION || 'us-east-1', help: 'signing region' },
  'access-key': { type: 'string', default: process.env.AWS_ACCESS_KEY_ID || 'AKIDKLTOOLS', help: 'access key id' },
  'secret-key': {
    type: 'string',
    default: process.env.AWS_SECRET_ACCESS_KEY || process.env.KL_TEST_PROXY_SECRET || 'kl-test-secret',
    help: 'secret access key',
  },
  'session-token': { type: 'string', default: process.env.AWS_SESSION_TOKEN, help: 'session token (optional)' },
};

// Parses --name value / --name=value / --flag (bool). Exits 2 on misuse.
function parseFlags(argv, toolFlags, usage) {
  const spec = { ...COMMON_FLAGS, ...toolFlags };
  const out = {};
  for (const [name, s] of Object.entries(spec)) out[name] = s.type === 'bool' ? false : s.default;
  const fail = (msg) => {
    process.stderr.write(`${msg}\n\n${helpText(spec, usage)}`);
    process.exit(2);
  };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      process.stdout.write(helpText(spec, usage));
      process.exit(0);
    }
    if (!arg.startsWith('--')) fail(`unexpected argument ${arg}`);
    arg = arg.slice(2);
    let value;
    const eq = arg.indexOf('=');
    if (eq >= 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const s = spec[arg];
    if (!s) fail(`unknown flag --${arg}`);
    if (s.type === 'bool') {
      out[arg] = value === undefined ? true : value !== 'false';
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) fail(`--${arg} needs a value`);
      value = argv[++i];
    }
    if (s.type === 'int') {
      if (!/^-?\d+$/.test(value)) fail(`--${arg} must be an integer`);
      out[arg] = Number(value);
    } else {
      out[arg] = value;
    }
  }
  for (const [name, s] of Object.entries(spec)) {
    if ((s.required || name === 'endpoint') && (out[name] === undefined || out[name] === '')) {
      fail(`--${name} is required`);
    }
  }
  return out;
}

function helpText(spec, usage) {
  const lines = [`usage: ${usage}`, ''];
  for (const [name, s] of Object.entries(spec)) {
    const def = s.type !== 'bool' && s.default !== undefined && name !== 'secret-key' ? ` (default ${s.default})` : '';
    lines.push(`  --${name}${s.type === 'bool' ? '' : ' ' + s.type.toUpperCase()}  ${s.help}${def}`);
  }
  return lines.join('\n') + '\n';
}

// The emulators speak HTTP/1.1 only, hence the node:http handler.
function makeClient(flags) {
  return new KinesisClient({
    endpoint: flags.endpoint,
    region: flags.region,
    credentials: {
      accessKeyId: flags['access-key'],
      secretAccessKey: flags['secret-key'],
      sessionToken: flags['session-token'],
    },
    requestHandler: new NodeHttpHandler({ connectionTimeout: 5000, requestTimeout: 30000 }),
    maxAttempts: 3,
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Runs the tool's main; any error ends the process with status 1.
function run(name, main) {
  main().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`${name}: ${err.name || 'Error'}: ${err.message}\n`);
      process.exit(1);
    },
  );
}

module.exports = { parseFlags, makeClient, sleep, run };
