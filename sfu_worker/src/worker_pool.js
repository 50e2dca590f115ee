'use strict';

// One mediasoup worker per core; routers are placed on the least-loaded worker.
const mediasoup = require('mediasoup');

class WorkerPool {
  constructor(config, onWorkerDied) {
    this.config = config;
    this.onWorkerDied = onWorkerDied;
    this.entries = []; // { worker, index, routers: Set<routerId>, load, alive, respawns }
    this.closing = false;
  }

  async start() {
    for (let index = 0; index < this.config.numWorkers; index += 1) {
      const entry = { worker: null, index, routers: new Set(), load: 0, alive: false, respawns: 0 };
      this.entries.push(entry);
      await this.spawn(entry);
    }
  }

  async spawn(entry) {
    const worker = await mediasoup.createWorker({
      logLevel: this.config.logLevel,
      rtcMinPort: this.config.rtcMinPort,
      rtcMaxPort: this.config.rtcMaxPort,
    });
    entry.worker = worker;
    entry.alive = true;
    entry.load = 0;
    worker.on('died', (error) => {
      entry.alive = false;
      this.onWorkerDied(entry, error);
      // Keep the node's capacity: replace the dead worker in its slot.
      if (!this.closing) {
        entry.respawns += 1;
        setTimeout(() => {
          this.spawn(entry).catch((spawnError) => this.onRespawnFailed(entry, spawnError));
        }, 500);
      }
    });
  }

  onRespawnFailed(entry, error) {
    process.stderr.write(
      `${JSON.stringify({ level: 'error', logger: 'sfu_worker', event: 'worker respawn failed', workerIndex: entry.index, error: String(error) })}\n`,
    );
  }

  aliveEntries() {
    return this.entries.filter((entry) => entry.alive);
  }

  leastLoaded() {
    const alive = this.aliveEntries();
    if (alive.length === 0) return null;
    return alive.reduce((best, entry) => (entry.load < best.load ? entry : best));
  }

  totalLoad() {
    return this.aliveEntries().reduce((sum, entry) => sum + entry.load, 0);
  }

  async resourceUsage() {
    const usage = [];
    for (const entry of this.entries) {
      let resource = null;
      if (entry.alive) {
        try {
          resource = await entry.worker.getResourceUsage();
        } catch (error) {
          resource = null;
        }
      }
      usage.push({
        index: entry.index,
        pid: entry.worker.pid,
        alive: entry.alive,
        respawns: entry.respawns,
        routers: entry.routers.size,
        load: entry.load,
        // ru_utime / ru_stime are milliseconds of CPU time; ru_maxrss is KiB.
        cpuUserMs: resource ? resource.ru_utime : null,
        cpuSystemMs: resource ? resource.ru_stime : null,
        maxRssKiB: resource ? resource.ru_maxrss : null,
      });
    }
    return usage;
  }

  async close() {
    this.closing = true;
    for (const entry of this.entries) {
      entry.alive = false;
      entry.worker.close();
    }
  }
}

module.exports = { WorkerPool };
