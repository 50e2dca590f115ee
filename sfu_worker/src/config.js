'use strict';

// SFU node configuration, read once from environment variables.
const os = require('os');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const { isLoopbackHost } = require('./trust');

function intFromEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number.parseInt(raw, 10);
  if (!Number.isInteger(value)) {
    throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function loadConfig() {
  const secret = process.env.SFU_SECRET || '';
  if (secret.length < 16) {
    throw new Error('SFU_SECRET must be set to a shared secret of at least 16 characters');
  }
  const rtcMinPort = intFromEnv('SFU_RTC_MIN_PORT', 40000);
  const rtcMaxPort = intFromEnv('SFU_RTC_MAX_PORT', 49999);
  if (rtcMinPort < 1024 || rtcMaxPort > 65535 || rtcMinPort > rtcMaxPort) {
    throw new Error(`invalid RTC port range ${rtcMinPort}-${rtcMaxPort}`);
  }
  const listenHost = process.env.SFU_LISTEN_HOST || '127.0.0.1';
  const listenPort = intFromEnv('SFU_LISTEN_PORT', 4443);
  const advertisedHost = process.env.SFU_ADVERTISED_HOST || listenHost;
  // TLS for the RPC API (required when control planes reach it from another host).
  const tlsCert = process.env.SFU_TLS_CERT || '';
  const tlsKey = process.env.SFU_TLS_KEY || '';
  if (Boolean(tlsCert) !== Boolean(tlsKey)) {
    throw new Error('SFU_TLS_CERT and SFU_TLS_KEY go together');
  }
  const tls = tlsCert ? { cert: fs.readFileSync(tlsCert), key: fs.readFileSync(tlsKey) } : null;
  const rpcUrl = process.env.SFU_RPC_URL || `${tls ? 'wss' : 'ws'}://${advertisedHost}:${listenPort}`;
  const rpc = new URL(rpcUrl);
  if (rpc.protocol === 'ws:' && !isLoopbackHost(rpc.hostname)) {
    throw new Error(`SFU RPC URL ${rpcUrl} leaves the host in plaintext: set SFU_TLS_CERT and SFU_TLS_KEY`);
  }
  if (rpc.protocol === 'wss:' && !tls) {
    throw new Error(`SFU RPC URL ${rpcUrl} is wss:// but SFU_TLS_CERT and SFU_TLS_KEY are not set`);
  }
  return {
    nodeId: process.env.SFU_NODE_ID || `sfu-${os.hostname()}-${crypto.randomBytes(3).toString('hex')}`,
    secret,
    listenHost,
    listenPort,
    tls,
    // URL the control plane uses to reach this node (registered in Redis, signed).
    rpcUrl,
    numWorkers: intFromEnv('SFU_NUM_WORKERS', os.cpus().length),
    logLevel: process.env.SFU_LOG_LEVEL || 'warn',
    // Media listen address and the address announced in ICE candidates
    // (set SFU_ANNOUNCED_IP when listening on 0.0.0.0 or behind NAT).
    rtcListenIp: process.env.SFU_RTC_LISTEN_IP || '127.0.0.1',
    rtcAnnouncedIp: process.env.SFU_RTC_ANNOUNCED_IP || undefined,
    rtcMinPort,
    rtcMaxPort,
    initialAvailableOutgoingBitrate: intFromEnv('SFU_INITIAL_OUTGOING_BITRATE', 1000000),
    redisUrl: process.env.REDIS_URL || '',
    heartbeatMs: intFromEnv('SFU_HEARTBEAT_MS', 2000),
    heartbeatTtlMs: intFromEnv('SFU_HEARTBEAT_TTL_MS', 6000),
    requestTimeoutMs: intFromEnv('SFU_REQUEST_TIMEOUT_MS', 10000),
    // Recording (recorder.js): where ciphertext files go, the RTP/RTCP port pool
    // ffmpeg listens on (loopback only), and the two programs.
    recordingsDir: process.env.SFU_RECORDINGS_DIR || path.resolve('recordings'),
    recordingMinPort: intFromEnv('SFU_RECORDING_MIN_PORT', 61000),
    recordingMaxPort: intFromEnv('SFU_RECORDING_MAX_PORT', 61999),
    ffmpegBin: process.env.SFU_FFMPEG_BIN || 'ffmpeg',
    ageBin: process.env.SFU_AGE_BIN || 'age',
  };
}

module.exports = { loadConfig };
