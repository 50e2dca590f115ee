'use strict';

// The SFU node's objects (routers, transports, producers, consumers) and the
// RPC methods that act on them.  Every method takes a params object and returns
// a JSON-serialisable result; failures throw RpcError.
const { RpcError } = require('./errors');
const { codecsForProfile } = require('./profiles');
const { Recorder } = require('./recorder');

// Active speaker: the loudest audio above this level, sampled this often.
const SPEAKER_THRESHOLD_DBOV = -60;
const SPEAKER_INTERVAL_MS = 500;
// After a video consumer is resumed, or its path restarted: when to check that
// it forwards (ms; see watchForwarding).
const FORWARDING_CHECKS_MS = [1200, 2500, 5000, 10000];

function requireString(params, name) {
  const value = params[name];
  if (typeof value !== 'string' || value.length === 0) {
    throw new RpcError('INVALID_PARAMS', `${name} must be a non-empty string`);
  }
  return value;
}

function requireObject(params, name) {
  const value = params[name];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new RpcError('INVALID_PARAMS', `${name} must be an object`);
  }
  return value;
}

function optionalPositiveInt(params, name) {
  const value = params[name];
  if (value === undefined || value === null) return undefined;
  if (!Number.isInteger(value) || value <= 0) {
    throw new RpcError('INVALID_PARAMS', `${name} must be a positive integer`);
  }
  return value;
}

class Sfu {
  constructor(config, pool, notify, log = () => {}) {
    this.config = config;
    this.log = log;
    this.pool = pool;
    this.notify = notify;
    this.routers = new Map(); // routerId -> { router, entry, profile }
    this.transports = new Map(); // transportId -> { transport, routerId, entry }
    this.producers = new Map(); // producerId -> { producer, transportId, entry }
    this.consumers = new Map(); // consumerId -> { consumer, transportId, entry }
    this.recorder = new Recorder(config, this, notify, log);
    // Drain (telemed sfu drain): no new rooms; those here go on, and the node
    // exits once the last one closes.  server.js sets the hooks.
    this.draining = false;
    this.onDrain = () => {};
    this.onRouterClosed = () => {};
    // A room was placed here: the registry entry is rewritten before the answer,
    // so the next placement (by any control plane) counts it.
    this.onRoomsChanged = async () => {};
  }

  // Called by the worker pool when a mediasoup worker process dies.
  handleWorkerDied(entry, error) {
    // Its routers were already closed (and reported as router.workerclose).
    this.notify('worker.died', {
      workerIndex: entry.index,
      pid: entry.worker.pid,
      error: error ? String(error.message || error) : null,
    });
    entry.routers.clear();
    entry.load = 0;
  }

  getRouter(routerId) {
    const item = this.routers.get(routerId);
    if (!item) throw new RpcError('NOT_FOUND', `router ${routerId} not found`);
    return item;
  }

  getTransport(transportId) {
    const item = this.transports.get(transportId);
    if (!item) throw new RpcError('NOT_FOUND', `transport ${transportId} not found`);
    return item;
  }

  getProducer(producerId) {
    const item = this.producers.get(producerId);
    if (!item) throw new RpcError('NOT_FOUND', `producer ${producerId} not found`);
    return item;
  }

  getConsumer(consumerId) {
    const item = this.consumers.get(consumerId);
    if (!item) throw new RpcError('NOT_FOUND', `consumer ${consumerId} not found`);
    return item;
  }

  // ---- node / workers ----------------------------------------------------

  async getInfo() {
    return {
      nodeId: this.config.nodeId,
      workers: this.pool.aliveEntries().length,
      load: this.pool.totalLoad(),
      routers: this.routers.size,
      transports: this.transports.size,
      producers: this.producers.size,
      consumers: this.consumers.size,
      draining: this.draining,
    };
  }

  async drain() {
    this.draining = true;
    await this.onDrain();
    return { nodeId: this.config.nodeId, draining: true, routers: this.routers.size };
  }

  async getWorkerResourceUsage() {
    return { workers: await this.pool.resourceUsage() };
  }

  // ---- routers -------------------------------------------------------------

  async createRouter(params) {
    const profile = requireString(params, 'profile');
    const mediaCodecs = codecsForProfile(profile);
    if (!mediaCodecs) throw new RpcError('INVALID_PARAMS', `unknown media profile ${profile}`);
    const entry = this.pool.leastLoaded();
    if (this.draining) throw new RpcError('DRAINING', 'this node is draining: place the room on another');
    if (!entry) throw new RpcError('UNAVAILABLE', 'no live mediasoup worker');
    const appData = typeof params.appData === 'object' && params.appData ? params.appData : {};
    const router = await entry.worker.createRouter({ mediaCodecs, appData });
    entry.routers.add(router.id);
    const levels = await this.watchSpeakers(router);
    this.routers.set(router.id, { router, entry, profile, levels });
    router.observer.on('close', () => {
      entry.routers.delete(router.id);
      this.routers.delete(router.id);
      this.onRouterClosed();
    });
    // mediasoup closes a dead worker's routers before it emits 'died', so the
    // control plane learns which rooms lost their media from this event.
    router.on('workerclose', () => {
      this.notify('router.workerclose', { routerId: router.id, workerIndex: entry.index });
    });
    await this.onRoomsChanged();
    return {
      routerId: router.id,
      rtpCapabilities: router.rtpCapabilities,
      workerIndex: entry.index,
      workerPid: entry.worker.pid,
    };
  }

  // The loudest audio producer of a room (mediasoup's audio level observer),
  // pushed as router.activespeaker when it changes: {routerId, producerId, volume}
  // (producerId null: everyone is silent).
  async watchSpeakers(router) {
    const levels = await router.createAudioLevelObserver({
      maxEntries: 1, threshold: SPEAKER_THRESHOLD_DBOV, interval: SPEAKER_INTERVAL_MS,
    });
    let loudest = null;
    levels.on('volumes', (volumes) => {
      const { producer, volume } = volumes[0];
      if (producer.id === loudest) return;
      loudest = producer.id;
      this.notify('router.activespeaker', { routerId: router.id, producerId: producer.id, volume });
    });
    levels.on('silence', () => {
      if (loudest === null) return;
      loudest = null;
      this.notify('router.activespeaker', { routerId: router.id, producerId: null });
    });
    return levels;
  }

  async closeRouter(params) {
    const routerId = requireString(params, 'routerId');
    const item = this.routers.get(routerId);
    if (item) item.router.close();
    return { closed: Boolean(item) };
  }

  async getRouterRtpCapabilities(params) {
    const { router } = this.getRouter(requireString(params, 'routerId'));
    return { rtpCapabilities: router.rtpCapabilities };
  }

  // ---- transports ---------------------------------------------------------

  async createWebRtcTransport(params) {
    const routerId = requireString(params, 'routerId');
    const { router, entry } = this.getRouter(routerId);
    const enableUdp = params.enableUdp !== false;
    const enableTcp = params.enableTcp !== false;
    if (!enableUdp && !enableTcp) {
      throw new RpcError('INVALID_PARAMS', 'at least one of UDP and TCP must be enabled');
    }
    const appData = typeof params.appData === 'object' && params.appData ? params.appData : {};
    const transport = await router.createWebRtcTransport({
      listenIps: [{ ip: this.config.rtcListenIp, announcedIp: this.config.rtcAnnouncedIp }],
      enableUdp,
      enableTcp,
      preferUdp: true,
      initialAvailableOutgoingBitrate:
        optionalPositiveInt(params, 'initialAvailableOutgoingBitrate') ??
        this.config.initialAvailableOutgoingBitrate,
      appData,
    });
    const maxIncomingBitrate = optionalPositiveInt(params, 'maxIncomingBitrate');
    if (maxIncomingBitrate) await transport.setMaxIncomingBitrate(maxIncomingBitrate);

    entry.load += 1;
    this.transports.set(transport.id, { transport, routerId, entry });
    transport.observer.on('close', () => {
      entry.load -= 1;
      this.transports.delete(transport.id);
      this.notify('transport.closed', { transportId: transport.id, routerId });
    });
    transport.on('icestatechange', (iceState) => {
      this.notify('transport.icestatechange', { transportId: transport.id, iceState });
    });
    transport.on('dtlsstatechange', (dtlsState) => {
      this.notify('transport.dtlsstatechange', { transportId: transport.id, dtlsState });
    });
    return {
      transportId: transport.id,
      iceParameters: transport.iceParameters,
      iceCandidates: transport.iceCandidates,
      dtlsParameters: transport.dtlsParameters,
      sctpParameters: transport.sctpParameters || null,
    };
  }

  // Plain RTP (no ICE, no DTLS, no SRTP) on the node's listen IP: for a media
  // source or sink on the same host or a trusted network, such as the capacity
  // benchmark's replayed media (bench/capacity.py).  comedia: the remote address
  // is learnt from the first packet; otherwise connectPlainTransport gives it.
  async createPlainTransport(params) {
    const routerId = requireString(params, 'routerId');
    const { router, entry } = this.getRouter(routerId);
    const appData = typeof params.appData === 'object' && params.appData ? params.appData : {};
    const transport = await router.createPlainTransport({
      listenIp: { ip: this.config.rtcListenIp, announcedIp: this.config.rtcAnnouncedIp },
      rtcpMux: true,
      comedia: params.comedia === true,
      appData,
    });
    entry.load += 1;
    this.transports.set(transport.id, { transport, routerId, entry, plain: true });
    transport.observer.on('close', () => {
      entry.load -= 1;
      this.transports.delete(transport.id);
      this.notify('transport.closed', { transportId: transport.id, routerId });
    });
    return {
      transportId: transport.id,
      ip: transport.tuple.localIp,
      port: transport.tuple.localPort,
    };
  }

  async connectPlainTransport(params) {
    const { transport, plain } = this.getTransport(requireString(params, 'transportId'));
    if (!plain) {
      throw new RpcError('INVALID_PARAMS', 'not a plain transport');
    }
    const ip = requireString(params, 'ip');
    const port = params.port;
    if (!Number.isInteger(port) || port <= 0 || port > 65535) {
      throw new RpcError('INVALID_PARAMS', 'port must be an integer 1-65535');
    }
    try {
      await transport.connect({ ip, port });
    } catch (error) {
      throw new RpcError('INVALID_PARAMS', `connect failed: ${error.message}`);
    }
    return { connected: true };
  }

  async connectWebRtcTransport(params) {
    const { transport } = this.getTransport(requireString(params, 'transportId'));
    const dtlsParameters = requireObject(params, 'dtlsParameters');
    try {
      await transport.connect({ dtlsParameters });
    } catch (error) {
      throw new RpcError('INVALID_PARAMS', `connect failed: ${error.message}`);
    }
    return { connected: true };
  }

  async restartIce(params) {
    const transportId = requireString(params, 'transportId');
    const { transport } = this.getTransport(transportId);
    const iceParameters = await transport.restartIce();
    for (const item of this.consumers.values()) {
      const producer = this.producers.get(item.consumer.producerId);
      if (item.transportId === transportId || (producer && producer.transportId === transportId)) {
        this.watchForwarding(item.consumer.id);
      }
    }
    return { iceParameters };
  }

  // A video consumer forwards nothing until a key frame of its producer passes,
  // and mediasoup asks the sender for one only when the consumer starts (and
  // once more a second later).  If the sender missed those requests (lost on a
  // path that was down, an encoder not ready yet) the receiver gets no packet at
  // all, so it asks for nothing: the video stays black.  After a consumer is
  // resumed, and after an ICE restart of a transport it goes through, check a
  // few times that it forwards while its producer receives; if not, ask again.
  watchForwarding(consumerId) {
    const item = this.consumers.get(consumerId);
    if (!item || item.consumer.kind !== 'video') return;
    item.watch = { sent: null, received: null };
    for (const delay of FORWARDING_CHECKS_MS) {
      setTimeout(() => this.checkForwarding(consumerId, item.watch), delay).unref();
    }
  }

  async checkForwarding(consumerId, watch) {
    const item = this.consumers.get(consumerId);
    if (!item || item.watch !== watch) return; // closed, or watched again since
    const { consumer } = item;
    if (consumer.closed || consumer.paused || consumer.producerPaused) return;
    let stats;
    try {
      stats = await consumer.getStats();
    } catch {
      return; // closed meanwhile
    }
    const count = (type) => stats.filter((s) => s.type === type).reduce((sum, s) => sum + (s.packetCount || 0), 0);
    const sent = count('outbound-rtp');
    const received = count('inbound-rtp');
    const stalled = sent === (watch.sent ?? 0) && received > (watch.received ?? 0);
    watch.sent = sent;
    watch.received = received;
    if (stalled) {
      this.log('info', 'video consumer forwards nothing: key frame asked again', { consumerId, received });
      consumer.requestKeyFrame().catch(() => {}); // closed meanwhile
    }
  }

  async setMaxIncomingBitrate(params) {
    const { transport } = this.getTransport(requireString(params, 'transportId'));
    const bitrate = optionalPositiveInt(params, 'bitrate');
    if (!bitrate) throw new RpcError('INVALID_PARAMS', 'bitrate must be a positive integer');
    await transport.setMaxIncomingBitrate(bitrate);
    return { bitrate };
  }

  async closeTransport(params) {
    const item = this.transports.get(requireString(params, 'transportId'));
    if (item) item.transport.close();
    return { closed: Boolean(item) };
  }

  // ---- producers ----------------------------------------------------------

  async produce(params) {
    const transportId = requireString(params, 'transportId');
    const { transport, entry } = this.getTransport(transportId);
    const kind = params.kind;
    if (kind !== 'audio' && kind !== 'video') {
      throw new RpcError('INVALID_PARAMS', 'kind must be audio or video');
    }
    const rtpParameters = requireObject(params, 'rtpParameters');
    const appData = typeof params.appData === 'object' && params.appData ? params.appData : {};
    let producer;
    try {
      producer = await transport.produce({
        kind,
        rtpParameters,
        appData,
        paused: params.paused === true,
      });
    } catch (error) {
      throw new RpcError('INVALID_PARAMS', `produce failed: ${error.message}`);
    }
    entry.load += 1;
    this.producers.set(producer.id, { producer, transportId, entry });
    const room = this.routers.get(this.transports.get(transportId).routerId);
    if (kind === 'audio' && room && room.levels) {
      room.levels.addProducer({ producerId: producer.id }).catch(() => {}); // closed meanwhile
    }
    producer.observer.on('close', () => {
      entry.load -= 1;
      this.producers.delete(producer.id);
      this.notify('producer.closed', { producerId: producer.id, transportId });
    });
    producer.on('score', (score) => {
      this.notify('producer.score', { producerId: producer.id, score });
    });
    return { producerId: producer.id };
  }

  async pauseProducer(params) {
    const { producer } = this.getProducer(requireString(params, 'producerId'));
    await producer.pause();
    return { paused: true };
  }

  async resumeProducer(params) {
    const { producer } = this.getProducer(requireString(params, 'producerId'));
    await producer.resume();
    return { paused: false };
  }

  async closeProducer(params) {
    const item = this.producers.get(requireString(params, 'producerId'));
    if (item) item.producer.close();
    return { closed: Boolean(item) };
  }

  // ---- consumers ----------------------------------------------------------

  async consume(params) {
    const transportId = requireString(params, 'transportId');
    const producerId = requireString(params, 'producerId');
    const rtpCapabilities = requireObject(params, 'rtpCapabilities');
    const { transport, routerId, entry } = this.getTransport(transportId);
    const { router } = this.getRouter(routerId);
    this.getProducer(producerId);
    if (!router.canConsume({ producerId, rtpCapabilities })) {
      throw new RpcError('UNSUPPORTED', 'the receiver cannot decode this producer');
    }
    const appData = typeof params.appData === 'object' && params.appData ? params.appData : {};
    const consumer = await transport.consume({
      producerId,
      rtpCapabilities,
      paused: true, // resumed by the control plane once the client is ready
      appData,
    });
    entry.load += 1;
    this.consumers.set(consumer.id, { consumer, transportId, entry });
    consumer.observer.on('close', () => {
      entry.load -= 1;
      this.consumers.delete(consumer.id);
    });
    consumer.on('transportclose', () => {
      this.notify('consumer.closed', { consumerId: consumer.id, producerId, reason: 'transportclose' });
    });
    consumer.on('producerclose', () => {
      this.notify('consumer.closed', { consumerId: consumer.id, producerId, reason: 'producerclose' });
    });
    consumer.on('producerpause', () => {
      this.notify('consumer.producerpause', { consumerId: consumer.id, producerId });
    });
    consumer.on('producerresume', () => {
      this.notify('consumer.producerresume', { consumerId: consumer.id, producerId });
    });
    consumer.on('score', (score) => {
      this.notify('consumer.score', { consumerId: consumer.id, score });
    });
    consumer.on('layerschange', (layers) => {
      this.notify('consumer.layerschange', { consumerId: consumer.id, layers: layers || null });
    });
    return {
      consumerId: consumer.id,
      producerId,
      kind: consumer.kind,
      rtpParameters: consumer.rtpParameters,
      type: consumer.type,
      producerPaused: consumer.producerPaused,
    };
  }

  async pauseConsumer(params) {
    const { consumer } = this.getConsumer(requireString(params, 'consumerId'));
    await consumer.pause();
    return { paused: true };
  }

  // Simulcast: the highest spatial layer the control plane wants this consumer to
  // get, and its priority (mediasoup shares a receiver's estimated bandwidth out
  // layer by layer, more rounds to higher priorities; it picks the layers).
  async setConsumerLayers(params) {
    const { consumer } = this.getConsumer(requireString(params, 'consumerId'));
    const { spatialLayer, priority } = params;
    if (!Number.isInteger(spatialLayer) || spatialLayer < 0 || spatialLayer > 3) {
      throw new RpcError('INVALID_PARAMS', 'spatialLayer must be an integer 0-3');
    }
    if (!Number.isInteger(priority) || priority < 1 || priority > 255) {
      throw new RpcError('INVALID_PARAMS', 'priority must be an integer 1-255');
    }
    await consumer.setPreferredLayers({ spatialLayer });
    await consumer.setPriority(priority);
    return { preferredLayers: consumer.preferredLayers || null, priority: consumer.priority };
  }

  async resumeConsumer(params) {
    const { consumer } = this.getConsumer(requireString(params, 'consumerId'));
    await consumer.resume();
    this.watchForwarding(consumer.id);
    return { paused: false };
  }

  // notify: true -> the control planes hear consumer.closed (reason "server"), so
  // the instance that serves the consumer's owner tells it (the waiting room).
  async closeConsumer(params) {
    const item = this.consumers.get(requireString(params, 'consumerId'));
    if (item) {
      item.consumer.close();
      if (params.notify === true) {
        this.notify('consumer.closed', {
          consumerId: item.consumer.id, producerId: item.consumer.producerId, reason: 'server',
        });
      }
    }
    return { closed: Boolean(item) };
  }

  // ---- recordings (recorder.js) ------------------------------------------------

  async startRecording(params) {
    return this.recorder.start(params);
  }

  async extendRecording(params) {
    return this.recorder.extend(params);
  }

  async stopRecording(params) {
    return this.recorder.stop(params);
  }

  // ---- stats --------------------------------------------------------------

  async getTransportStats(params) {
    const { transport } = this.getTransport(requireString(params, 'transportId'));
    return { stats: await transport.getStats() };
  }

  async getProducerStats(params) {
    const { producer } = this.getProducer(requireString(params, 'producerId'));
    return { stats: await producer.getStats() };
  }

  async getConsumerStats(params) {
    const { consumer } = this.getConsumer(requireString(params, 'consumerId'));
    return { stats: await consumer.getStats() };
  }
}

// Methods callable over RPC (anything else is METHOD_NOT_FOUND).
const RPC_METHODS = [
  'getInfo',
  'drain',
  'getWorkerResourceUsage',
  'createRouter',
  'closeRouter',
  'getRouterRtpCapabilities',
  'createWebRtcTransport',
  'connectWebRtcTransport',
  'createPlainTransport',
  'connectPlainTransport',
  'restartIce',
  'setMaxIncomingBitrate',
  'closeTransport',
  'produce',
  'pauseProducer',
  'resumeProducer',
  'closeProducer',
  'consume',
  'pauseConsumer',
  'resumeConsumer',
  'setConsumerLayers',
  'closeConsumer',
  'getTransportStats',
  'getProducerStats',
  'getConsumerStats',
  'startRecording',
  'extendRecording',
  'stopRecording',
];

module.exports = { Sfu, RPC_METHODS };
