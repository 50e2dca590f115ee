'use strict';

// The node's half of controlplane/placement/node_trust.py (keep the two in step).
// Two keys are derived from SFU_SECRET with a label each: the registry key signs
// this node's heartbeat entries in Redis; the RPC key checks the control planes'
// WebSocket credential "TelemedSfu v1 <nodeId> <expiresMs> <hmac>", so the secret
// itself never travels.
const crypto = require('crypto');

const SIGNED_FIELDS = ['id', 'url', 'workers', 'load', 'routers', 'draining', 'startedAt', 'heartbeatAt'];
const RPC_SCHEME = 'TelemedSfu v1 ';
// A credential may not claim to live longer than this (the control plane issues 60 s).
const MAX_CREDENTIAL_AHEAD_MS = 5 * 60 * 1000;

function derive(secret, label) {
  return crypto.createHmac('sha256', secret).update(label).digest();
}

function registryKey(secret) {
  return derive(secret, 'telemed sfu registry v1');
}

function rpcKey(secret) {
  return derive(secret, 'telemed sfu rpc v1');
}

function signEntry(key, entry) {
  const message = SIGNED_FIELDS.map((name) => `${name}=${entry[name] ?? ''}`).join('\n');
  return crypto.createHmac('sha256', key).update(message).digest('hex');
}

function sameText(a, b) {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && crypto.timingSafeEqual(left, right);
}

// True when the Authorization header is a live credential for this node.
function credentialValid(header, key, nodeId, nowMs = Date.now()) {
  if (typeof header !== 'string' || !header.startsWith(RPC_SCHEME)) return false;
  const parts = header.slice(RPC_SCHEME.length).split(' ');
  if (parts.length !== 3) return false;
  const [forNode, expiresText, mac] = parts;
  const expires = Number.parseInt(expiresText, 10);
  if (!Number.isSafeInteger(expires) || String(expires) !== expiresText) return false;
  if (expires < nowMs || expires > nowMs + MAX_CREDENTIAL_AHEAD_MS) return false;
  const expected = crypto.createHmac('sha256', key).update(`${forNode}\n${expiresText}`).digest('hex');
  return sameText(mac, expected) && forNode === nodeId;
}

function isLoopbackHost(hostname) {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

module.exports = { registryKey, rpcKey, signEntry, credentialValid, isLoopbackHost };
