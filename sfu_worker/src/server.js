'use strict';

// SFU node entry point: mediasoup workers, an authenticated JSON-RPC 2.0 API
// over WebSocket for the control plane, notifications pushed to every
// connected control plane, and registration in Redis.
//
// Auth: the WebSocket upgrade must carry `Authorization: TelemedSfu v1 <nodeId>
// <expiresMs> <hmac>`, a short-lived credential made with a key derived from
// SFU_SECRET (trust.js); the secret itself never travels.  With SFU_TLS_CERT and
// SFU_TLS_KEY the API is served over TLS (wss://).
// Request:      {"jsonrpc":"2.0","id":1,"method":"createRouter","params":{...}}
// Response:     {"jsonrpc":"2.0","id":1,"result":{...}}
//               {"jsonrpc":"2.0","id":1,"error":{"code":-32004,"message":"...","data":{"type":"NOT_FOUND"}}}
// Notification: {"jsonrpc":"2.0","method":"notify","params":{"event":"transport.icestatechange",...}}
const http = require('http');
const https = require('https');
const { WebSocketServer } = require('ws');

const { loadConfig } = require('./config');
const { WorkerPool } = require('./worker_pool');
const { Sfu, RPC_METHODS } = require('./sfu');
const { Registry } = require('./registry');
const { RpcError } = require('./errors');
const { rpcKey, credentialValid } = require('./trust');

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 };
const logThreshold = LEVELS[process.env.SFU_NODE_LOG_LEVEL || 'info'] || 20;

// One JSON object per line on stderr; never logs payloads (they may carry SDP-like data).
function log(level, event, fields = {}) {
  if ((LEVELS[level] || 20) < logThreshold) return;
  process.stderr.write(
    `${JSON.stringify({ timestamp: new Date().toISOString(), level, logger: 'sfu_worker', event, ...fields })}\n`,
  );
}

async function main() {
  const config = loadConfig();
  const clients = new Set();

  const notify = (event, data) => {
    const message = JSON.stringify({ jsonrpc: '2.0', method: 'notify', params: { event, ...data } });
    for (const ws of clients) {
      if (ws.readyState === ws.OPEN) ws.send(message);
    }
  };

  let sfu = null;
  const pool = new WorkerPool(config, (entry, error) => {
    log('error', 'mediasoup worker died', { workerIndex: entry.index, pid: entry.worker.pid, error: String(error) });
    if (sfu) sfu.handleWorkerDied(entry, error);
  });
  await pool.start();
  sfu = new Sfu(config, pool, notify, log);

  const key = rpcKey(config.secret);
  const handler = (req, res) => {
    // Liveness only; everything else goes through the authenticated WebSocket.
    if (req.url === '/health') {
      const alive = pool.aliveEntries().length;
      res.writeHead(alive > 0 ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: alive > 0 ? 'ok' : 'degraded', nodeId: config.nodeId, workers: alive }));
      return;
    }
    res.writeHead(404);
    res.end();
  };
  const httpServer = config.tls
    ? https.createServer({ ...config.tls, minVersion: 'TLSv1.2' }, handler)
    : http.createServer(handler);

  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  httpServer.on('upgrade', (req, socket, head) => {
    if (!credentialValid(req.headers.authorization, key, config.nodeId)) {
      log('warn', 'rpc connection refused: bad credentials', { remote: req.socket.remoteAddress });
      socket.write('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  wss.on('connection', (ws, req) => {
    clients.add(ws);
    log('info', 'control plane connected', { remote: req.socket.remoteAddress, clients: clients.size });
    ws.on('close', () => {
      clients.delete(ws);
      log('info', 'control plane disconnected', { clients: clients.size });
    });
    ws.on('message', async (raw) => {
      let request;
      try {
        request = JSON.parse(raw.toString());
      } catch (error) {
        ws.send(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'parse error' } }));
        return;
      }
      const id = request && (typeof request.id === 'number' || typeof request.id === 'string') ? request.id : null;
      const reply = (body) => {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ jsonrpc: '2.0', id, ...body }));
      };
      if (!request || request.jsonrpc !== '2.0' || typeof request.method !== 'string' || id === null) {
        reply({ error: { code: -32600, message: 'invalid request', data: { type: 'INVALID_REQUEST' } } });
        return;
      }
      if (!RPC_METHODS.includes(request.method)) {
        reply({ error: { code: -32601, message: `method ${request.method} not found`, data: { type: 'METHOD_NOT_FOUND' } } });
        return;
      }
      const params = request.params && typeof request.params === 'object' ? request.params : {};
      const started = process.hrtime.bigint();
      try {
        const result = await sfu[request.method](params);
        reply({ result });
      } catch (error) {
        const rpcError = error instanceof RpcError ? error : new RpcError('INTERNAL', error.message || String(error));
        if (!(error instanceof RpcError)) log('error', 'rpc method failed', { method: request.method, error: rpcError.message });
        reply({ error: { code: rpcError.code, message: rpcError.message, data: { type: rpcError.type } } });
      } finally {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        if (ms > 1000) log('warn', 'slow rpc', { method: request.method, ms });
      }
    });
  });

  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(config.listenPort, config.listenHost, resolve);
  });
  const registry = new Registry(config, sfu, log);
  await registry.start();
  log('info', 'sfu node ready', {
    nodeId: config.nodeId,
    rpcUrl: config.rpcUrl,
    workers: pool.aliveEntries().length,
    rtcPorts: `${config.rtcMinPort}-${config.rtcMaxPort}`,
  });

  let stopping = false;
  const shutdown = async (signal) => {
    if (stopping) return;
    stopping = true;
    log('info', 'sfu node stopping', { signal });
    await registry.stop();
    await sfu.recorder.closeAll(); // complete files rather than truncated ones
    for (const ws of clients) ws.close(1001, 'shutting down');
    wss.close();
    httpServer.close();
    await pool.close();
    process.exit(0);
  };
  // Drained: the registry says so at once (no new rooms); the node goes when empty.
  sfu.onDrain = async () => {
    log('info', 'sfu node draining', { routers: sfu.routers.size });
    await registry.beat();
    if (sfu.routers.size === 0) setImmediate(() => shutdown('drained'));
  };
  sfu.onRoomsChanged = () => registry.beat().catch((error) => {
    log('warn', 'heartbeat after a new room failed', { error: error.message });
  });
  sfu.onRouterClosed = () => {
    if (sfu.draining && sfu.routers.size === 0) shutdown('drained');
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error) => {
  log('error', 'sfu node failed to start', { error: error.message });
  process.exit(1);
});
