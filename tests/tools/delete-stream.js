#!/usr/bin/env node
/*
 * Deletes a Kinesis stream and (unless --no-wait) waits until it is gone.
 * A stream that does not exist is not an error.
 */
'use strict';

const { DeleteStreamCommand, DescribeStreamSummaryCommand } = require('@aws-sdk/client-kinesis');
const { parseFlags, makeClient, sleep, run } = require('./lib');

const flags = parseFlags(process.argv.slice(2), {
  stream: { type: 'string', required: true, help: 'stream name' },
  'no-wait': { type: 'bool', help: 'return once the deletion is accepted' },
  'timeout-s': { type: 'int', default: 60, help: 'how long to wait for the stream to disappear' },
}, 'delete-stream.js --endpoint URL --stream NAME [--no-wait]');

run('delete-stream', async () => {
  const client = makeClient(flags);
  try {
    await client.send(new DeleteStreamCommand({ StreamName: flags.stream, EnforceConsumerDeletion: true }));
  } catch (err) {
    if (err.name !== 'ResourceNotFoundException') throw err;
  }
  const deadline = Date.now() + flags['timeout-s'] * 1000;
  while (!flags['no-wait']) {
    try {
      await client.send(new DescribeStreamSummaryCommand({ StreamName: flags.stream }));
    } catch (err) {
      if (err.name === 'ResourceNotFoundException') break;
      throw err;
    }
    if (Date.now() > deadline) throw new Error(`stream ${flags.stream} still exists`);
    await sleep(50);
  }
  process.stdout.write(JSON.stringify({ stream: flags.stream, deleted: true }) + '\n');
});
