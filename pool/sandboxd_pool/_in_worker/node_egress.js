'use strict';
// Egress for a Node program: loaded by node_boot.js only for a request with egress, before the
// program runs. Node 20's http, https and fetch ignore HTTP(S)_PROXY, so:
//   - every http.Agent sends its requests to the proxy as they are (origin-form with Host,
//     which the proxy forwards to that host), every https.Agent opens a CONNECT tunnel to the
//     destination through the proxy and runs TLS inside it (global agents, custom ones and
//     `agent: false` alike: the prototypes' createConnection is replaced);
//   - the global fetch's dispatcher is an undici Agent of the same bundled undici whose
//     connect does the same (set up on the first fetch call, so undici loads only then);
//   - every TLS context made without its own `ca` trusts the pool's egress CA besides the
//     default roots (tls.createSecureContext), which the proxy's certificates chain to when
//     it adds the tenant's headers inside TLS; NODE_EXTRA_CA_CERTS is not used (it costs
//     ~40 ms at every Node start).
// axios reads HTTP(S)_PROXY itself (set by node_boot.js) and sends absolute-form requests to
// the proxy's address: a loopback address, which these agents connect to directly, as they
// do for every loopback destination (the sandbox's own servers: NO_PROXY).
// A refusal from the proxy reaches the program as an error whose message holds the proxy's
// reason (`code` EGRESS_REFUSED, `statusCode` the proxy's status).
const net = require('net');
const tls = require('tls');
const http = require('http');
const https = require('https');

const MAX_HEAD = 64 * 1024;

function isDirect(host) {
  const bare = String(host || '').replace(/^\[|\]$/g, '').toLowerCase();
  return bare === 'localhost' || bare === '::1' || /^127\./.test(bare);
}

function refusal(host, port, head, body) {
  const line = head.split('\r\n', 1)[0];
  const status = Number(line.split(' ')[1]) || 0;
  const reason = body.trim() || line;
  const err = new Error(`egress proxy refused ${host}:${port}: ${reason}`);
  err.code = 'EGRESS_REFUSED';
  err.statusCode = status;
  return err;
}

// A socket to the proxy with a CONNECT tunnel to host:port open: callback(err, socket).
function tunnel(proxy, host, port, callback) {
  const socket = net.connect(proxy.port, proxy.host);
  let head = null;
  let buffered = Buffer.alloc(0);
  let done = false;
  const finish = (err, result) => {
    if (done) return;
    done = true;
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.removeListener('error', onError);
    callback(err, result);
  };
  const onError = (err) => finish(err);
  const onEnd = () => {
    if (head === null) {
      finish(new Error(`egress proxy closed the connection before answering CONNECT ${host}:${port}`));
    } else {
      finish(refusal(host, port, head, buffered.toString('utf8')));
    }
  };
  const onData = (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (head !== null) return; // a refusal's body, read until the proxy closes
    const end = buffered.indexOf('\r\n\r\n');
    if (end < 0) {
      if (buffered.length > MAX_HEAD) {
        socket.destroy();
        finish(new Error('egress proxy answered CONNECT with an oversized head'));
      }
      return;
    }
    head = buffered.subarray(0, end).toString('latin1');
    buffered = buffered.subarray(end + 4);
    if (/^HTTP\/1\.[01] 200 /.test(head)) {
      socket.pause();
      if (buffered.length) socket.unshift(buffered);
      finish(null, socket);
    }
  };
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('error', onError);
  const target = net.isIPv6(host) ? `[${host}]` : host;
  socket.write(`CONNECT ${target}:${port} HTTP/1.1\r\nHost: ${target}:${port}\r\n\r\n`);
  return socket;
}

function install(egress) {
  const url = new URL(egress.proxy);
  const proxy = { host: url.hostname, port: Number(url.port) };

  const createSecureContext = tls.createSecureContext;
  tls.createSecureContext = function createSecureContextWithEgressCA(options) {
    const context = createSecureContext.call(this, options);
    if (!options || !options.ca) context.context.addCACert(egress.ca_pem);
    return context;
  };

  const httpCreate = http.Agent.prototype.createConnection;
  http.Agent.prototype.createConnection = function createConnection(options, callback) {
    if (isDirect(options.host)) return httpCreate.call(this, options, callback);
    return net.createConnection({ host: proxy.host, port: proxy.port });
  };

  const httpsCreate = https.Agent.prototype.createConnection;
  https.Agent.prototype.createConnection = function createConnection(options, callback) {
    if (isDirect(options.host)) return httpsCreate.call(this, options, callback);
    const host = options.host || 'localhost';
    const port = options.port || 443;
    tunnel(proxy, host, port, (err, socket) => {
      if (err) {
        callback(err);
        return;
      }
      const servername = options.servername || (net.isIP(host) ? undefined : host);
      callback(null, tls.connect({ ...options, host, port, socket, servername }));
    });
    return undefined;
  };

  const originalFetch = globalThis.fetch;
  if (typeof originalFetch === 'function') {
    let ready = false;
    globalThis.fetch = function fetch(input, init) {
      if (!ready) {
        ready = true;
        routeFetch(originalFetch, proxy);
      }
      return originalFetch(input, init);
    };
  }
}

// The global dispatcher of Node's bundled undici, replaced by an Agent (its own class) whose
// connections go through the proxy.
function routeFetch(originalFetch, proxy) {
  const key = Symbol.for('undici.globalDispatcher.1');
  if (!globalThis[key]) originalFetch('data:,').catch(() => {}); // makes the default Agent
  const Agent = globalThis[key].constructor;
  globalThis[key] = new Agent({
    connect(opts, callback) {
      const host = String(opts.hostname).replace(/^\[|\]$/g, '');
      const secure = opts.protocol === 'https:';
      const port = Number(opts.port) || (secure ? 443 : 80);
      const servername = opts.servername || (net.isIP(host) ? undefined : host);
      // Call back once, when `socket` is connected (TLS included) or has failed.
      const settle = (socket) => {
        const ready = secure ? 'secureConnect' : 'connect';
        const onReady = () => {
          socket.removeListener('error', onError);
          socket.setNoDelay(true);
          callback(null, socket);
        };
        const onError = (err) => {
          socket.removeListener(ready, onReady);
          callback(err);
        };
        socket.once(ready, onReady);
        socket.once('error', onError);
      };
      if (isDirect(host)) {
        settle(
          secure
            ? tls.connect({ host, port, servername, ALPNProtocols: ['http/1.1'] })
            : net.connect(port, host),
        );
      } else if (!secure) {
        settle(net.connect(proxy.port, proxy.host));
      } else {
        tunnel(proxy, host, port, (err, raw) => {
          if (err) callback(err);
          else settle(tls.connect({ socket: raw, servername, ALPNProtocols: ['http/1.1'] }));
        });
      }
    },
  });
}

module.exports = { install };
