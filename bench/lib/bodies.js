/*
 * The message bodies the benchmark tools write, so that a stream filled
 * through an emulator (tests/tools/put-records.js) and the replay endpoint
 * (bench/replay/server.js) carry the same bytes for the same id. Plain
 * Node.js, no packages; benchmark and test tooling only.
 */
'use strict';

const SHAPES = ['flat', 'dlt'];

// A nested order as dlt sources see them: about 4.5 rows each once
// normalised (the root, two items, one or two tags; customer flattens into
// the root).
function dltBodyOf(id) {
  return {
    id,
    name: `msg-${id}`,
    created_at: new Date(Date.UTC(2024, 0, 1) + id * 1000).toISOString(),
    customer: { id: id % 997, email: `c${id % 997}@example.com`, vip: id % 7 === 0 },
    items: [
      { sku: `sku-${id % 101}`, qty: 1 + (id % 3), price: (id % 50) + 0.99 },
      { sku: `sku-${(id + 7) % 101}`, qty: 1, price: 5.25 },
    ],
    tags: id % 2 === 0 ? ['new'] : ['new', 'repeat'],
  };
}

// The JSON text of message id: shape 'flat' is {"id":id,"name":"msg-<id>"}
// plus "pad" of pad characters when pad > 0; shape 'dlt' is dltBodyOf(id)
// (pad does not apply).
function bodyTextOf(id, shape = 'flat', pad = 0) {
  if (shape === 'dlt') return JSON.stringify(dltBodyOf(id));
  if (shape !== 'flat') throw new Error(`unknown body shape ${shape} (${SHAPES.join(' or ')})`);
  const rec = { id, name: `msg-${id}` };
  if (pad > 0) rec.pad = 'x'.repeat(pad);
  return JSON.stringify(rec);
}

module.exports = { SHAPES, dltBodyOf, bodyTextOf };
