'use strict';

// Registers this SFU node in Redis with a heartbeat so control planes can find
// it and place rooms by load.  Key layout (shared with controlplane/sfu_registry.py):
//   telemed:sfu:nodes            set of node ids
//   telemed:sfu:node:<nodeId>    hash {id, url, workers, load, routers, draining, startedAt,
//                                heartbeatAt, sig}
//                                with a TTL refreshed on every heartbeat; `sig` is the HMAC
//                                of the other fields with the registry key (see trust.js):
//                                control planes ignore entries that do not carry a valid one.
const { createClient } = require('redis');

const { registryKey, signEntry } = require('./trust');

const NODES_KEY = 'telemed:sfu:nodes';
const nodeKey = (nodeId) => `telemed:sfu:node:${nodeId}`;

class Registry {
  constructor(config, sfu, log) {
    this.config = config;
    this.sfu = sfu;
    this.log = log;
    this.client = null;
    this.timer = null;
    this.startedAt = Date.now();
    this.key = registryKey(config.secret);
  }

  async start() {
    if (!this.config.redisUrl) {
      this.log('warn', 'REDIS_URL not set: this SFU node will not register itself');
      return;
    }
    this.client = createClient({ url: this.config.redisUrl });
    this.client.on('error', (error) => this.log('error', 'redis error', { error: error.message }));
    await this.client.connect();
    await this.beat();
    this.timer = setInterval(() => {
      this.beat().catch((error) => this.log('error', 'heartbeat failed', { error: error.message }));
    }, this.config.heartbeatMs);
  }

  async beat() {
    const info = await this.sfu.getInfo();
    const key = nodeKey(this.config.nodeId);
    const entry = {
      id: this.config.nodeId,
      url: this.config.rpcUrl,
      workers: String(info.workers),
      load: String(info.load),
      routers: String(info.routers),
      draining: info.draining ? '1' : '0',
      startedAt: String(this.startedAt),
      heartbeatAt: String(Date.now()),
    };
    await this.client
      .multi()
      .hSet(key, { ...entry, sig: signEntry(this.key, entry) })
      .pExpire(key, this.config.heartbeatTtlMs)
      .sAdd(NODES_KEY, this.config.nodeId)
      .exec();
  }

  async stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (!this.client) return;
    try {
      await this.client.multi().del(nodeKey(this.config.nodeId)).sRem(NODES_KEY, this.config.nodeId).exec();
      await this.client.quit();
    } catch (error) {
      this.log('warn', 'could not deregister', { error: error.message });
    }
    this.client = null;
  }
}

module.exports = { Registry };
