'use strict';
// Node worker bootstrap: warm up, say ready, read one request, run it like `node main.js`.
// Runs inside the jail as `node /opt/sandboxd/node_boot.js`. fd 3 is the control socket:
// this side writes "R" when warm, then reads one frame:
//   u32 big-endian header length | header JSON | code bytes | file bytes (in header order)
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
// that would otherwise land on the first console.log of the request).
void process.stdout;
void process.stderr;
fs.writeSync(CONTROL_FD, 'R');
const header = JSON.parse(readExact(readExact(4).readUInt32BE(0)).toString('utf8'));
const code = readExact(header.code_size);
const files = header.files.map(([rel, length]) => [rel, readExact(length)]);
fs.closeSync(CONTROL_FD);

const workdir = header.workdir;
process.chdir(workdir);
for (const key of Object.keys(process.env)) delete process.env[key];
Object.assign(process.env, header.env);
for (const [rel, data] of files) {
  const target = path.join(workdir, rel);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, data);
}
const mainPath = path.join(workdir, header.main);
fs.writeFileSync(mainPath, code);
process.argv = [process.execPath, mainPath, ...header.args];

// From the event loop, with no frame of this file beneath it, so that a stack trace of the
// program ends at node's own internals as under `node main.js`.
setImmediate(Module.runMain, mainPath);
