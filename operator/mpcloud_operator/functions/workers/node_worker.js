// The Node.js language worker: loads the user's handler and runs invocations for the host, many at a time.
//
// Started by the host as `node node_worker.js --code-dir DIR --handler index.main --proto-fd N`; speaks the
// protocol of mpcloud_operator/functions/protocol.py (JSON lines: requests on stdin, replies on descriptor N).
// Node code is asynchronous, so one worker runs up to the host's concurrency at once on its event loop (as
// OpenWhisk's and Laf's Node runtimes do); the host retires and replaces the worker when one times out.
//
// `exports.main = async (event, context) => ...`; `context.db.collection(name).add(...)` and
// `context.storage.put(...)` return Promises that the host resolves (it owns the database and S3 clients).
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
  return args;
}

// Bytes travel as {"$bytes": base64}, like protocol.encode_bytes / decode_bytes.
function encode(value) {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString('base64') };
  if (Array.isArray(value)) return value.map(encode);
  if (value && typeof value === 'object' && !(value instanceof Date) && typeof value.toJSON !== 'function') {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = encode(v);
    return out;
  }
  return value;
}

function decode(value) {
  if (Array.isArray(value)) return value.map(decode);
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === '$bytes' && typeof value.$bytes === 'string') return Buffer.from(value.$bytes, 'base64');
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = decode(v);
    return out;
  }
  return value;
}

const args = parseArgs(process.argv.slice(2));
const outFd = Number(args['proto-fd']);
const codeDir = path.resolve(args['code-dir']);

function send(message) {
  // Synchronous writes keep lines whole and ordered; the host reads continuously.
  const line = Buffer.from(JSON.stringify(encode(message)) + '\n');
  let off = 0;
  while (off < line.length) off += fs.writeSync(outFd, line, off);
}

// The message as Node prints it: for a SyntaxError, "file:line", the source line, the caret and the error,
// without Node's internal stack frames.
function interpreterMessage(err) {
  const stack = String((err && err.stack) || err);
  const cut = stack.search(/\n\s+at /);
  return (cut >= 0 ? stack.slice(0, cut) : stack).trim();
}

function userStack(err) {
  const stack = String((err && err.stack) || err);
  return stack.split('\n').filter((l) => !l.includes(__filename) && !/\(node:|at node:/.test(l)).join('\n');
}

function load() {
  const handler = args.handler || '';
  const dot = handler.lastIndexOf('.');
  if (dot <= 0) return { type: 'InvalidSource', message: `handler '${handler}' must be <file>.<function>` };
  const stem = handler.slice(0, dot);
  const fn = handler.slice(dot + 1);
  const candidates = ['.js', '.cjs'].map((ext) => path.join(codeDir, stem + ext));
  const file = candidates.find((f) => fs.existsSync(f));
  if (!file) return { type: 'InvalidSource', message: `handler file ${stem}.js not found` };
  let mod;
  try {
    mod = require(file);
  } catch (err) {
    const error = { type: 'InvalidSource', message: interpreterMessage(err) };
    if (!(err instanceof SyntaxError)) error.stack = userStack(err);  // a SyntaxError's message is the whole story
    return error;
  }
  const handlerFn = mod && mod[fn];
  if (typeof handlerFn !== 'function') {
    return { type: 'InvalidSource', message: `${path.basename(file)} exports no function '${fn}'` };
  }
  return handlerFn;
}

let nextRpc = 1;
const pending = new Map();

function rpc(call, target, method, collection, callArgs) {
  const id = nextRpc++;
  const message = { type: 'rpc', id, call, target, method, args: callArgs, kwargs: {} };
  if (collection !== undefined) message.collection = collection;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    send(message);
  });
}

class FunctionError extends Error {
  constructor(type, message) {
    super(message);
    this.type = type;
    this.name = type;
  }
}

function makeContext(call, info) {
  const collection = (name) => ({
    name,
    add: (doc) => rpc(call, 'db', 'add', name, [doc]),
    get: (id) => rpc(call, 'db', 'get', name, [id]),
    query: (where = null, sort = null, limit = 100, skip = 0) => rpc(call, 'db', 'query', name, [where, sort, limit, skip]),
    count: (where = null) => rpc(call, 'db', 'count', name, [where]),
    update: (idOrWhere, change) => rpc(call, 'db', 'update', name, [idOrWhere, change]),
    delete: (idOrWhere) => rpc(call, 'db', 'delete', name, [idOrWhere]),
  });
  const storage = {
    put: (key, data, contentType = 'application/octet-stream') =>
      rpc(call, 'storage', 'put', undefined, [key, typeof data === 'string' ? Buffer.from(data) : data, contentType]),
    get: (key) => rpc(call, 'storage', 'get', undefined, [key]),
    delete: (key) => rpc(call, 'storage', 'delete', undefined, [key]),
    list: (prefix = '') => rpc(call, 'storage', 'list', undefined, [prefix]),
    presign_get: (key, expires = 3600) => rpc(call, 'storage', 'presign_get', undefined, [key, expires]),
    presign_put: (key, expires = 3600) => rpc(call, 'storage', 'presign_put', undefined, [key, expires]),
  };
  storage.presignGet = storage.presign_get;
  storage.presignPut = storage.presign_put;
  const logAt = (level) => (message) => process.stderr.write(JSON.stringify({
    level, function: info.function || '', request_id: info.request_id || '',
    message: typeof message === 'string' ? message : JSON.stringify(message),
  }) + '\n');
  const log = logAt('info');
  log.info = log;
  log.warning = logAt('warning');
  log.error = logAt('error');
  return { function: info.function || '', request_id: info.request_id || '', db: { collection }, storage, log };
}

async function invoke(handlerFn, message) {
  const call = message.id;
  try {
    const value = await handlerFn(decode(message.event), makeContext(call, message.context || {}));
    send({ type: 'result', id: call, value: value === undefined ? null : value });
  } catch (err) {
    const type = err instanceof FunctionError ? err.type : 'HandlerError';
    const name = (err && err.name) || 'Error';
    send({ type: 'error', id: call, error: { type, message: `${name}: ${(err && err.message) || err}`, stack: userStack(err) } });
  }
}

function main() {
  // A promise user code forgot to await must not take down the invocations running beside it.
  process.on('unhandledRejection', (err) => process.stderr.write(`unhandled rejection: ${userStack(err)}\n`));
  const loaded = load();
  if (typeof loaded !== 'function') {
    send({ type: 'load_error', error: loaded });
    return;
  }
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on('line', (line) => {
    if (!line) return;
    const message = JSON.parse(line);
    if (message.type === 'invoke') {
      invoke(loaded, message);
    } else if (message.type === 'rpc_result' || message.type === 'rpc_error') {
      const waiter = pending.get(message.id);
      if (!waiter) return;
      pending.delete(message.id);
      if (message.type === 'rpc_result') waiter.resolve(decode(message.value));
      else waiter.reject(new FunctionError((message.error || {}).type || 'HandlerError', (message.error || {}).message || ''));
    }
  });
  rl.on('close', () => process.exit(0));
  send({ type: 'ready' });
}

main();
