'use strict';
// Node worker bootstrap: warm up, say ready, read one request, run it like `node main.js`.
// Runs inside the jail as `node /opt/sandboxd/node_boot.js`. fd 3 is the control socket:
// this side writes "R" when warm, then reads one frame:
//   u32 big-endian header length | header JSON | code | event | files (in header order)
// HANDLER mode (header.mode === 'handler'): main.js is loaded as a CommonJS module and its
// exports.handler(event, context) is called (and awaited); its return value, as JSON, is written
// to the control socket, which is then closed (the close marks the end).
const fs = require('fs');
const path = require('path');
const Module = require('module');

const CONTROL_FD = 3;

function readExact(n) {
  const out = Buffer.allocUnsafe(n);
  let got = 0;
  while (got < n) {
    let r;
    try {
      r = fs.readSync(CONTROL_FD, out, got, n - got, null);
    } catch (e) {
      if (e.code === 'EAGAIN') continue;
      throw e;
    }
    if (r === 0) process.reallyExit(0); // the parent went away before sending a request
    got += r;
  }
  return out;
}

// Warm up: create the stdout/stderr streams (for pipes this loads net and stream, several ms
// that would otherwise land on the first console.log of the request). Opening a pipe as a
// stream makes libuv set O_NONBLOCK on it, and that flag belongs to the open file, which the
// program's fs.writeSync(1, ...) and its child processes share: they would fail with EAGAIN
// when the pipe is full. Make them blocking again, as a shell gives them to a program (a
// stream's writes then block like those to a file, and nothing is lost).
for (const stream of [process.stdout, process.stderr]) {
  if (stream._handle && typeof stream._handle.setBlocking === 'function') {
    stream._handle.setBlocking(true);
  }
}
// An environment (argv[2], JSON from the jail: its node_modules is mounted at /node_modules):
// require its preload list now, before any request, so the program's require() is free.
if (process.argv[2]) {
  for (const name of JSON.parse(process.argv[2]).preload) require(name);
}
// What does not depend on the request is done before it: the environment emptied (the
// request's alone is set) and the output folder made in the working directory (the jail's /work).
for (const key of Object.keys(process.env)) delete process.env[key];
fs.mkdirSync('out'); // files left here come back with the result (files_out.py)
fs.writeSync(CONTROL_FD, 'R');
const header = JSON.parse(readExact(readExact(4).readUInt32BE(0)).toString('utf8'));
const code = readExact(header.code_size);
const event = readExact(header.event_size || 0);
const files = header.files.map(([rel, length]) => [rel, readExact(length)]);
const handlerMode = header.mode === 'handler';
// The wall clock started when the parent sent the frame, just before this.
const deadline = Date.now() + (header.wall_time_ms || 0);
if (!handlerMode) fs.closeSync(CONTROL_FD);

const workdir = header.workdir;
process.chdir(workdir);
if (header.egress) {
  // The proxy in the worker's own namespace (docs/egress.md): variables for the libraries
  // that read them (axios), and http, https, fetch and TLS routed through it.
  Object.assign(process.env, egressEnvironment(header.egress));
  require(path.join(__dirname, 'node_egress.js')).install(header.egress);
}
Object.assign(process.env, header.env);
for (const [rel, data] of files) {
  const target = path.join(workdir, rel);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, data);
}
const mainPath = path.join(workdir, header.main);
fs.writeFileSync(mainPath, code);
process.argv = [process.execPath, mainPath, ...header.args];

function egressEnvironment(egress) {
  const env = {};
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) {
    env[name] = egress.proxy;
  }
  env.NO_PROXY = env.no_proxy = 'localhost,127.0.0.1,::1';
  env.SSL_CERT_FILE = env.REQUESTS_CA_BUNDLE = egress.ca_file;
  return env;
}

function fail(message) {
  fs.writeSync(2, message);
  process.exitCode = 1;
  process.exit();
}

function writeAll(fd, buf) {
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if (e.code !== 'EAGAIN') throw e;
    }
  }
}

function describeError(e) {
  if (e instanceof Error && typeof e.stack === 'string') {
    // Without this file's frames, as a script's stack ends at node's own internals.
    const lines = e.stack.split('\n').filter((line) => !line.includes(__filename));
    return lines.join('\n') + '\n';
  }
  return 'Uncaught ' + require('util').inspect(e) + '\n';
}

async function runHandler() {
  let handler;
  let value;
  try {
    const mod = require(mainPath);
    handler = mod && mod.handler;
    if (typeof handler !== 'function') {
      fail('sandboxd: the code defines no function exports.handler(event, context)\n');
      return;
    }
    const context = {
      executionId: header.execution_id,
      memoryLimitInMB: header.memory_limit_mb,
      getRemainingTimeInMillis() {
        return Math.max(0, deadline - Date.now());
      },
    };
    value = await handler(event.length ? JSON.parse(event.toString('utf8')) : null, context);
  } catch (e) {
    fail(describeError(e));
    return;
  }
  let json;
  try {
    json = JSON.stringify(value);
  } catch (e) {
    fail(`sandboxd: the handler's return value is not JSON-serialisable: ${e && e.message}\n`);
    return;
  }
  // undefined (and a bare function or symbol) stringify to undefined: null.
  writeAll(CONTROL_FD, Buffer.from(json === undefined ? 'null' : json, 'utf8'));
  fs.closeSync(CONTROL_FD);
  // stdout and stderr to pipes are synchronous on Linux: nothing written is lost.
  process.exitCode = 0;
  process.exit();
}

if (handlerMode) {
  setImmediate(runHandler);
} else {
  // From the event loop, with no frame of this file beneath it, so that a stack trace of the
  // program ends at node's own internals as under `node main.js`.
  setImmediate(Module.runMain, mainPath);
}
