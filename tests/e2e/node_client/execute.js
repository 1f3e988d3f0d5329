#!/usr/bin/env node
// A sandboxd client built from proto/sandboxd/v1/sandbox.proto alone: proves a language other
// than Python can use the service with nothing but the wire contract.
//
//   node execute.js ADDRESS [API_KEY [PROTO_PATH]] < request.json
//
// stdin: one JSON object {runtime, code, stdin_b64}, `runtime` an enum name such as
// "RUNTIME_PYTHON". Calls sandboxd.v1.Sandbox/Execute (insecure, 30 s deadline) and prints one
// JSON line:
//   {"ok": true, "verdict", "exit_code", "stdout_b64", "stderr_b64", "execution_id"}
//   {"ok": false, "code": <numeric gRPC status>, "details"}
// Exit status 0 in both cases; 1 only when this script itself fails.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const DEADLINE_MS = 30000;

function fail(message) {
  process.stderr.write(`execute.js: ${message}\n`);
  process.exit(1);
}

function main() {
  const [address, apiKey, protoArg] = process.argv.slice(2);
  if (!address) {
    fail('usage: node execute.js ADDRESS [API_KEY [PROTO_PATH]] < request.json');
  }
  const protoPath =
    protoArg || path.resolve(__dirname, '..', '..', '..', 'proto', 'sandboxd', 'v1', 'sandbox.proto');

  const definition = protoLoader.loadSync(protoPath, {
    keepCase: true,
    longs: String,
    enums: String,
    bytes: Buffer,
    defaults: true,
    oneofs: true,
  });
  const proto = grpc.loadPackageDefinition(definition);
  const Sandbox = proto.sandboxd.v1.Sandbox;
  const client = new Sandbox(address, grpc.credentials.createInsecure());

  const input = JSON.parse(fs.readFileSync(0, 'utf8'));
  const request = {
    runtime: input.runtime,
    code: input.code,
    stdin: Buffer.from(input.stdin_b64 || '', 'base64'),
  };

  const metadata = new grpc.Metadata();
  if (apiKey) {
    metadata.set('authorization', `Bearer ${apiKey}`);
  }

  client.execute(request, metadata, { deadline: Date.now() + DEADLINE_MS }, (err, response) => {
    let result;
    if (err) {
      if (typeof err.code !== 'number') {
        client.close();
        fail(`not a gRPC error: ${err.stack || err}`);
      }
      result = { ok: false, code: err.code, details: err.details };
    } else {
      const exitCode = response.exit_code;
      result = {
        ok: true,
        verdict: response.verdict,
        exit_code: exitCode === undefined || exitCode === null ? null : exitCode,
        stdout_b64: Buffer.from(response.stdout).toString('base64'),
        stderr_b64: Buffer.from(response.stderr).toString('base64'),
        execution_id: response.execution_id,
      };
    }
    client.close();
    process.stdout.write(JSON.stringify(result) + '\n');
  });
}

try {
  main();
} catch (e) {
  fail(e && e.stack ? e.stack : String(e));
}
