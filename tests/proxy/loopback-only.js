/*
 * Preload (`node -r ./loopback-only.js server.js`) that keeps a server we do
 * not control on the loopback interface: every TCP listen() is bound to
 * 127.0.0.1 whatever host the program asked for. The emulators (kinesalite,
 * kinesis-local) bind all interfaces and have no host option. Unix-socket
 * and handle listens pass through untouched.
 */
'use strict';

const net = require('node:net');

const LOOPBACK = '127.0.0.1';
const originalListen = net.Server.prototype.listen;

function isPort(v) {
  return typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v));
}

net.Server.prototype.listen = function listen(...args) {
  const callback = typeof args[args.length - 1] === 'function' ? args.pop() : undefined;
  const first = args[0];
  let options;

  if (first !== null && typeof first === 'object' && !('_handle' in first) && !('fd' in first) &&
      first.path === undefined) {
    // listen(options): keep everything but the address.
    options = { ...first, host: LOOPBACK };
    delete options.ipv6Only;
  } else if (isPort(first) || first === undefined) {
    // listen(port[, host][, backlog]): the host, if any, is replaced.
    options = { port: first === undefined ? 0 : Number(first), host: LOOPBACK };
    const backlog = args.slice(1).find((a) => typeof a === 'number');
    if (backlog !== undefined) options.backlog = backlog;
  } else {
    return originalListen.call(this, ...args, ...(callback ? [callback] : []));
  }
  return callback ? originalListen.call(this, options, callback) : originalListen.call(this, options);
};
