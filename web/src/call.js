// A consultation call: Socket.IO signaling + mediasoup-client.
//
// Emits (via `on(event, fn)`):
//   state        {state: 'connecting'|'waiting'|'connected'|'reconnecting'|'left'|'ended'|'failed', detail}
//   peer         {peerId, role, displayName}            a participant joined
//   peerleft     {peerId}
//   peerreconnecting {peerId, reconnecting}             another participant's link dropped / is back
//   fallback     {peerId|null, mode, reason}             audio-only fallback (peerId null: ours)
//   track        {peerId, source, kind, track, consumerId, producerId, paused}
//   trackended   {consumerId, producerId, peerId, source, kind}
//   trackpaused  {producerId, paused}
//   local        {source, track}                         local track started/stopped (track null)
//   profile      mediaProfile from join
//   relay        {reason}                               media now goes through the TURN relay only
//   admission    {state, version, clinicianPresent?}    our place: 'waiting' room or 'in_call'
//   waiting      [{peerId, role, displayName, since}]   who waits to be let in (clinicians)
//   presence     {present}                              whether a clinician can let us in
//   speaker      {peerId|null}                          who speaks loudest now (null: nobody)
//   session      {sessionId, sessionType, elapsedSeconds, maxDurationSeconds, receivedAt}
//   layers       {consumerId, producerId, spatialLayer, temporalLayer}  simulcast layer now received
import { io } from 'socket.io-client';
import { t } from './i18n.js';
import { configureIce, moveToRelay, turnFailure, watchTurnErrors } from './relay.js';
import { adoptProfile, videoEncodings } from './layers.js';

const ICE_GRACE_MS = 2500; // wait before restarting ICE after 'disconnected'
// A first media connection still not up this long after it started, while the TURN
// servers failed: direct paths are blocked too, say so instead of trying forever.
const FIRST_CONNECT_MS = 12000;
const FATAL_CODES = new Set(['FORBIDDEN', 'SESSION_EXPIRED', 'UNAUTHORIZED']);
// A consume refused for one of these is worth asking again: the server or the
// SFU was briefly away, or the answer was lost.
const RETRY_CODES = new Set(['SERVICE_UNAVAILABLE', 'SFU_UNAVAILABLE', 'TIMEOUT', 'RATE_LIMITED']);
const CONSUME_ATTEMPTS = 5;

// The first time the page reaches a step of joining (bench/browser_join.py
// prints them): a performance mark 'telemed:<step>'.
function mark(step) {
  const name = `telemed:${step}`;
  if (!performance.getEntriesByName(name).length) performance.mark(name);
}

// mediasoup-client's module (web/src/device.js), imported once; a failed fetch
// is tried again by the next caller (a rejoin) instead of failing for good.
let mediasoupClient = null;
function loadMediasoup() {
  if (!mediasoupClient) {
    mediasoupClient = import('./device.js').catch((error) => {
      mediasoupClient = null;
      throw error;
    });
  }
  return mediasoupClient;
}

// Wait for every one of several tasks (none is left running unobserved), then
// fail with the first failure, if any.
async function settleAll(tasks) {
  const results = await Promise.allSettled(tasks);
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
}

export class SignalingError extends Error {
  constructor(event, code, message) {
    super(`${event}: ${code}: ${message}`);
    this.event = event;
    this.code = code;
  }
}

export class Call {
  constructor({ baseUrl, consultationId, token }) {
    this.baseUrl = baseUrl;
    this.consultationId = consultationId;
    this.token = token;
    this.listeners = new Map();
    this.socket = null;
    this.device = null;
    this.deviceCapabilities = null; // JSON of the capabilities it was loaded with
    this.sendTransport = null;
    this.recvTransport = null;
    this.producers = new Map(); // source -> Producer
    this.consumers = new Map(); // consumerId -> {consumer, peerId, source}
    // Consumers attached here whose resumeConsumer has not been answered yet: a
    // dropped connection can swallow it, and the resume sends it again.
    this.unresumed = new Set();
    this.peers = new Map(); // peerId -> {peerId, role, displayName}
    this.localTracks = new Map(); // source -> MediaStreamTrack
    this.profile = null;
    this.joined = false;
    this.leaving = false;
    this.rejoining = null;
    this.iceTimers = new Map();
    this.state = 'idle';
    this.everConnected = false;
    // Resume credential of the last join/resume ack: after a dropped connection the
    // server kept our transports, producers and consumers, so media never stopped.
    this.resumeToken = null;
    this.resuming = null;
    this.connects = 0;
    // The server advised relaying (high round-trip time): new transports relay only too.
    this.relayOnly = false;
    // The waiting room: our own place ('waiting', 'in_call', ...) and its version.
    this.admission = { state: 'in_call', version: 0 };
  }

  get waiting() {
    return this.admission.state === 'waiting';
  }

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
  }

  emit(event, data) {
    for (const fn of this.listeners.get(event) || []) {
      try {
        fn(data);
      } catch (error) {
        console.error('listener failed', event, error);
      }
    }
  }

  setState(state, detail = '') {
    this.state = state;
    this.emit('state', { state, detail });
  }

  request(event, payload = {}) {
    return new Promise((resolve, reject) => {
      if (!this.socket || !this.socket.connected) {
        reject(new SignalingError(event, 'DISCONNECTED', 'not connected'));
        return;
      }
      this.socket.timeout(10000).emit(event, payload, (timeoutError, ack) => {
        if (timeoutError) reject(new SignalingError(event, 'TIMEOUT', 'no answer from the server'));
        else if (ack && ack.error) reject(new SignalingError(event, ack.error.code, ack.error.message));
        else resolve(ack);
      });
    });
  }

  // ---- connection -----------------------------------------------------------

  async start() {
    this.setState('connecting');
    this.socket = io(this.baseUrl, {
      path: '/socket.io',
      transports: ['websocket'],
      auth: { token: this.token },
      reconnectionDelay: 500,
      reconnectionDelayMax: 3000,
    });
    this.bindSocket();
    await new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('connect_error', (error) => {
        const code = error.data && error.data.code;
        if (code) {
          this.socket.disconnect();
          reject(new SignalingError('connect', code, error.message));
        }
      });
    });
    mark('socket');
    await this.join();
  }

  bindSocket() {
    const s = this.socket;
    s.on('disconnect', (reason) => {
      if (this.leaving) return;
      // Media goes on (the server keeps it for the resume window); only signaling is down.
      this.setState('reconnecting', 'connection to the server lost');
      if (reason === 'io server disconnect') s.connect(); // e.g. the server restarts: come back
    });
    s.on('connect', () => {
      this.connects += 1;
      if (this.connects > 1 && !this.leaving && this.joined) this.resume();
    });
    s.on('sessionEnded', ({ reason }) => {
      this.end('ended', reason ? t('ended.reason', { reason: String(reason).replace(/_/g, ' ') }) : t('ended.plain'));
    });
    // The server tells everyone in the room while the consultation is recorded.
    s.on('recordingStarted', ({ recordingId }) => this.emit('recording', { recordingId, active: true }));
    s.on('recordingStopped', ({ recordingId, reason }) =>
      this.emit('recording', { recordingId, active: false, reason }),
    );
    s.on('peerReconnecting', ({ peerId }) => this.emit('peerreconnecting', { peerId, reconnecting: true }));
    s.on('peerReconnected', ({ peerId }) => this.emit('peerreconnecting', { peerId, reconnecting: false }));
    s.on('mediaFallback', ({ mode, reason }) => this.emit('fallback', { peerId: null, mode, reason }));
    s.on('peerMediaFallback', ({ peerId, mode, reason }) => this.emit('fallback', { peerId, mode, reason }));
    s.on('peerJoined', (peer) => {
      this.peers.set(peer.peerId, peer);
      this.emit('peer', peer);
    });
    s.on('peerLeft', ({ peerId }) => {
      this.peers.delete(peerId);
      for (const [consumerId, item] of this.consumers) {
        if (item.peerId === peerId) this.dropConsumer(consumerId);
      }
      this.emit('peerleft', { peerId });
    });
    s.on('newProducer', (producer) => this.consumeAnnounced(producer.producerId));
    s.on('producerPaused', ({ producerId }) => this.emit('trackpaused', { producerId, paused: true }));
    s.on('producerResumed', ({ producerId }) => this.emit('trackpaused', { producerId, paused: false }));
    s.on('producerClosed', ({ producerId }) => {
      for (const [consumerId, item] of this.consumers) {
        if (item.consumer.producerId === producerId) this.dropConsumer(consumerId);
      }
    });
    s.on('consumerClosed', ({ consumerId }) => this.dropConsumer(consumerId));
    s.on('admission', (news) => this.onAdmission(news));
    s.on('waitingList', ({ waiting }) => this.emit('waiting', waiting));
    s.on('clinicianPresence', ({ present }) => this.emit('presence', { present }));
    s.on('activeSpeaker', ({ peerId }) => this.emit('speaker', { peerId }));
    s.on('mediaProfileChanged', (changes) => this.adoptProfile(changes));
    s.on('consumerLayersChanged', (layers) => this.emit('layers', layers));
    s.on('roomClosed', ({ rejoin, message }) => {
      // The server has already removed us: rejoin straight away, no leave first.
      this.joined = false;
      if (rejoin) this.rejoin(message || 'room closed');
      else this.end('ended', t('ended.plain'));
    });
    s.on('iceRelayAdvised', ({ iceServers, reason }) => this.useRelay(iceServers, reason));
    s.on('evicted', () => this.end('ended', t('ended.elsewhere')));
    s.on('transportStateChanged', (data) => {
      const current = [this.sendTransport, this.recvTransport].some((t) => t && t.id === data.transportId);
      if (current && (data.dtlsState === 'failed' || data.dtlsState === 'closed')) {
        this.rejoin('media connection failed');
      }
    });
  }

  async join() {
    const joining = this.request('join', { consultationId: this.consultationId });
    loadMediasoup().catch(() => {}); // evaluated while the server joins; loadDevice awaits it
    const info = await joining;
    mark('join');
    this.resumeToken = info.resumeToken || null;
    this.profile = info.mediaProfile;
    this.role = info.role;
    this.displayName = info.displayName;
    this.emit('profile', this.profile);
    if (info.recording) this.emit('recording', { recordingId: info.recording.recordingId, active: true });
    this.setAdmission(info.admission, info.clinicianPresent);
    if (info.waiting) this.emit('waiting', info.waiting);
    if (info.session) {
      this.session = { ...info.session, receivedAt: Date.now() };
      this.emit('session', this.session);
    }
    // The server makes our transports while the device loads (tens of ms).
    const made = Promise.all([
      this.request('createTransport', { direction: 'send' }),
      this.request('createTransport', { direction: 'recv' }),
    ]);
    made.catch(() => {}); // awaited below; a failed device load must not leave it unobserved
    await this.loadDevice(info.routerRtpCapabilities);
    mark('device');
    for (const peer of info.peers) {
      this.peers.set(peer.peerId, peer);
      this.emit('peer', peer);
    }
    const [sendInfo, recvInfo] = await made;
    await Promise.all([this.createSendTransport({}, sendInfo), this.createRecvTransport({}, recvInfo)]);
    mark('transports');
    this.joined = true;
    try {
      // Sending and receiving at once (on their own transports): the other side
      // is seen as soon as its media arrives, not after our own is set up.
      await settleAll([this.produceMissing(), this.waiting ? null : this.consumeAll()]);
    } catch (error) {
      // We are in the room: a connection that dropped meanwhile is resumed (and the
      // resume finishes this); a server that did not answer gets a rejoin.
      if (this.rejoining) throw error; // the rejoin tries again
      if (this.socket.connected) this.rejoin('the media set-up did not finish');
      else console.warn('media set-up interrupted; the resume will finish it', error.code);
    }
    this.refreshState();
  }

  async adoptProfile(changes) {
    try {
      await adoptProfile(this, changes);
    } catch (error) {
      console.warn('could not send the camera with layers', error.code || error.name);
    }
  }

  async produceMissing() {
    for (const [source, track] of this.localTracks) {
      if (track.readyState === 'live' && !this.producers.has(source)) await this.produceTrack(source, track);
    }
  }

  // A rejoin (a room made again on another worker) keeps the loaded device when
  // the router offers the same capabilities: loading one costs tens of ms.
  async loadDevice(routerRtpCapabilities) {
    const key = JSON.stringify(routerRtpCapabilities);
    if (this.device && this.deviceCapabilities === key) return;
    const { Device } = await loadMediasoup();
    const device = new Device();
    await device.load({ routerRtpCapabilities });
    this.device = device;
    this.deviceCapabilities = key;
  }

  // 'connected' only when signaling is up and every transport in use has its
  // ICE/DTLS connection; otherwise 'connecting' (first time) or 'reconnecting'.
  setAdmission(admission, clinicianPresent) {
    if (!admission || admission.version < this.admission.version) return;
    this.admission = admission;
    this.emit('admission', { ...admission, clinicianPresent });
  }

  // A clinician let us in, sent us back to the waiting room, or put us out.
  async onAdmission(news) {
    if (news.version < this.admission.version) return;
    const before = this.admission.state;
    this.setAdmission(news, news.clinicianPresent);
    if (news.state === 'denied' || news.state === 'removed') {
      this.end('ended', t(news.state === 'denied' ? 'ended.denied' : 'ended.removed'));
      return;
    }
    if (news.state === 'waiting' && before !== 'waiting') {
      for (const consumerId of [...this.consumers.keys()]) this.dropConsumer(consumerId);
      for (const peerId of [...this.peers.keys()]) {
        this.peers.delete(peerId);
        this.emit('peerleft', { peerId });
      }
    }
    if (news.state === 'in_call' && before === 'waiting') {
      for (const peer of news.peers || []) {
        this.peers.set(peer.peerId, peer);
        this.emit('peer', peer);
      }
      try {
        await this.consumeAll();
      } catch (error) {
        console.warn('consume after admission failed', error.code);
      }
    }
    this.refreshState();
  }

  // The REST API with our room token (the console's endpoints take one, for this
  // consultation's session only).
  async api(path, body) {
    const response = await fetch(`${this.baseUrl}/api/telemedicine/${path}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = answer.error || {};
      throw new SignalingError(path, error.code || String(response.status), error.message || 'refused');
    }
    return answer;
  }

  admit(peerId) {
    return this.request('admitParticipant', { peerId });
  }

  deny(peerId) {
    return this.request('denyParticipant', { peerId });
  }

  removeParticipant(peerId, to) {
    return this.request('removeParticipant', { peerId, to });
  }

  refreshState() {
    if (this.leaving || !this.joined) return;
    if (this.waiting) {
      if (this.state !== 'waiting') this.setState('waiting', 'waiting to be let in');
      return;
    }
    const states = [this.sendTransport, this.recvTransport]
      .filter((transport) => transport && !transport.closed && transport.connectionState !== 'new')
      .map((transport) => transport.connectionState);
    const healthy = this.socket.connected && states.every((state) => state === 'connected');
    if (healthy) {
      this.everConnected = true;
      if (this.state !== 'connected') this.setState('connected');
    } else if (this.state !== 'reconnecting') {
      this.setState(this.everConnected ? 'reconnecting' : 'connecting', 'waiting for the media connection');
    }
  }

  // made: the server's createTransport answer, if already asked for.
  async createSendTransport(appData = {}, made = null) {
    const info = made || (await this.request('createTransport', { direction: 'send' }));
    const transport = this.device.createSendTransport(this.transportOptions(info, appData));
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      this.request('connectTransport', { transportId: transport.id, dtlsParameters })
        .then(() => callback())
        .catch(errback);
    });
    transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      const payload = { transportId: transport.id, kind, rtpParameters, appData: { source: appData.source } };
      if (appData.replaces) Object.assign(payload, { replaces: appData.replaces, paused: Boolean(appData.paused) });
      this.request('produce', payload)
        .then(({ id }) => callback({ id }))
        .catch(errback);
    });
    this.watchIce(transport);
    this.sendTransport = transport;
  }

  async createRecvTransport(appData = {}, made = null) {
    const info = made || (await this.request('createTransport', { direction: 'recv' }));
    const transport = this.device.createRecvTransport(this.transportOptions(info, appData));
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      this.request('connectTransport', { transportId: transport.id, dtlsParameters })
        .then(() => callback())
        .catch(errback);
    });
    this.watchIce(transport);
    this.recvTransport = transport;
  }

  // appData.trial: a transport being tried (a move to the relay); its ICE
  // state changes are the move's business, not the call's.
  transportOptions(info, appData = {}) {
    return {
      ...info,
      iceServers: info.iceServers || [],
      iceTransportPolicy: this.relayOnly ? 'relay' : 'all',
      appData: { ...appData },
    };
  }

  // ICE dropped: show it, give it a moment, then restart ICE; if that does not
  // bring it back, rejoin.  A first connection that cannot be made while the
  // TURN servers refuse us (or cannot be reached) ends with that reason.
  watchIce(transport) {
    watchTurnErrors(transport);
    transport.on('connectionstatechange', (state) => {
      if (transport !== this.sendTransport && transport !== this.recvTransport) return;
      clearTimeout(this.iceTimers.get(transport.id));
      if (state === 'connected') {
        transport.appData.wasConnected = true;
        mark(transport === this.recvTransport ? 'recv-connected' : 'send-connected');
      }
      if (transport.appData.trial) return;
      if (state === 'connected') {
        this.refreshState();
        return;
      }
      if (state === 'connecting' && !transport.appData.wasConnected) {
        this.iceTimers.set(transport.id, setTimeout(() => this.checkFirstConnect(transport), FIRST_CONNECT_MS));
        return;
      }
      if (state === 'failed' && !transport.appData.wasConnected && turnFailure(transport)) {
        this.checkFirstConnect(transport);
        return;
      }
      if (state === 'disconnected' || state === 'failed') {
        if (!this.rejoining) this.setState('reconnecting', 'media connection interrupted');
        const timer = setTimeout(() => this.restartIce(transport), state === 'failed' ? 0 : ICE_GRACE_MS);
        this.iceTimers.set(transport.id, timer);
      }
    });
  }

  checkFirstConnect(transport) {
    if (transport.appData.trial || transport.closed || transport.connectionState === 'connected' || transport.appData.wasConnected) return;
    const why = turnFailure(transport);
    if (why) {
      this.end('failed', t('failed.blocked', { why }));
    }
  }

  // The server advises relaying through TURN: the media moves to new transports
  // made with the relay-only policy (and so will any made later), without
  // leaving the call.  Not an ICE restart on the same transports: Chrome
  // applies a policy changed by setConfiguration to the candidates it signals,
  // but still checks pairs from its host ports and keeps using them.  If the
  // relay does not connect, the call is set up again without it.
  async useRelay(iceServers, reason) {
    if (!Array.isArray(iceServers) || !iceServers.length || this.relayOnly) return;
    if (!this.joined || this.rejoining || this.resuming || this.leaving) return;
    this.relayOnly = true;
    try {
      await moveToRelay(this);
      this.emit('relay', { reason });
      this.refreshState();
    } catch (error) {
      console.warn('relay move failed', error.message);
      this.relayOnly = false;
      this.rejoin('the relay server could not be used');
    }
  }

  async restartIce(transport) {
    if (transport.closed || !this.socket.connected) return;
    try {
      const { iceParameters, iceServers } = await this.request('restartIce', { transportId: transport.id });
      configureIce(transport, iceServers); // fresh TURN credentials, same policy
      await transport.restartIce({ iceParameters });
      const timer = setTimeout(() => {
        if (!transport.closed && transport.connectionState !== 'connected') this.rejoin('ICE restart did not recover');
      }, 8000);
      this.iceTimers.set(transport.id, timer);
    } catch (error) {
      this.rejoin('ICE restart failed');
    }
  }

  // Back on a new connection: take over our state on the server, and catch up
  // with what happened meanwhile.  Only if the server no longer has it, rejoin.
  resume() {
    if (this.resuming || this.rejoining) return this.resuming || this.rejoining;
    this.resuming = (async () => {
      try {
        const ack = await this.request('resume', { consultationId: this.consultationId, resumeToken: this.resumeToken });
        this.resumeToken = ack.resumeToken;
        for (const transport of [this.sendTransport, this.recvTransport]) {
          if (transport && !transport.closed) configureIce(transport, ack.iceServers);
        }
        this.catchUp(ack);
        await this.resumeInterrupted(ack.consumers);
        await this.adoptProfile(ack.mediaProfile);
        this.setAdmission(ack.admission, ack.clinicianPresent);
        if (ack.waiting) this.emit('waiting', ack.waiting);
        await this.produceMissing(); // a join the drop interrupted
        if (!this.waiting) await this.consumeAll(); // producers that appeared while we were away
        this.refreshState();
      } catch (error) {
        console.warn('resume failed', error.code);
        if (FATAL_CODES.has(error.code) && error.code !== 'FORBIDDEN') this.end('failed', t('error.couldNotJoin', { code: error.code }));
        else this.rejoin(error.code === 'RESUME_EXPIRED' ? 'the call had to be set up again' : 'could not resume');
      }
    })().finally(() => {
      this.resuming = null;
    });
    return this.resuming;
  }

  catchUp(ack) {
    const present = new Map(ack.peers.map((peer) => [peer.peerId, peer]));
    for (const peerId of [...this.peers.keys()]) {
      if (!present.has(peerId)) {
        this.peers.delete(peerId);
        this.emit('peerleft', { peerId });
      }
    }
    for (const peer of present.values()) {
      if (!this.peers.has(peer.peerId)) {
        this.peers.set(peer.peerId, peer);
        this.emit('peer', peer);
      }
      this.emit('peerreconnecting', { peerId: peer.peerId, reconnecting: Boolean(peer.reconnecting) });
    }
    const live = new Set(ack.consumers.map((consumer) => consumer.id));
    for (const consumerId of [...this.consumers.keys()]) {
      if (!live.has(consumerId)) this.dropConsumer(consumerId);
    }
    for (const producer of ack.producers) {
      this.emit('trackpaused', { producerId: producer.producerId, paused: producer.paused });
    }
  }

  // Tear down media state and join again with the same local tracks (no reload).
  rejoin(reason) {
    if (this.leaving || this.rejoining) return this.rejoining;
    this.setState('reconnecting', reason);
    // The server still has us in the room (closeMedia forgets that): leave first.
    let leaveFirst = this.joined;
    this.rejoining = (async () => {
      this.closeMedia();
      for (let attempt = 0; !this.leaving; attempt += 1) {
        try {
          if (!this.socket.connected) {
            await new Promise((resolve) => this.socket.once('connect', resolve));
          }
          if (leaveFirst) await this.request('leave').catch(() => {});
          leaveFirst = false;
          await this.join();
          return;
        } catch (error) {
          console.warn('rejoin failed', error);
          if (error.code === 'ALREADY_JOINED') leaveFirst = true;
          if (FATAL_CODES.has(error.code)) {
            this.end('failed', t('error.couldNotJoin', { code: error.code }));
            return;
          }
          this.closeMedia();
          await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** attempt, 5000)));
        }
      }
    })().finally(() => {
      this.rejoining = null;
    });
    return this.rejoining;
  }

  closeMedia() {
    for (const timer of this.iceTimers.values()) clearTimeout(timer);
    this.iceTimers.clear();
    for (const consumerId of [...this.consumers.keys()]) this.dropConsumer(consumerId);
    for (const producer of this.producers.values()) producer.close();
    this.producers.clear();
    for (const transport of [this.sendTransport, this.recvTransport]) {
      if (transport && !transport.closed) transport.close();
    }
    this.sendTransport = null;
    this.recvTransport = null;
    for (const peerId of [...this.peers.keys()]) {
      this.peers.delete(peerId);
      this.emit('peerleft', { peerId });
    }
    this.joined = false;
  }

  // ---- producing ---------------------------------------------------------------

  // `takeOver`: {replaces, paused} to send a source again in place of its producer.
  async produceTrack(source, track, takeOver = null) {
    const profile = this.profile;
    const options = { track, stopTracks: false, appData: { source, ...takeOver } };
    if (track.kind === 'audio') {
      options.codecOptions = { opusStereo: false, opusDtx: false, opusFec: true, opusMaxAverageBitrate: profile.audioBitrate };
    } else {
      const preferred = this.device.rtpCapabilities.codecs.find(
        (codec) => codec.mimeType.toLowerCase() === profile.preferredVideoCodec.toLowerCase(),
      );
      if (preferred) options.codec = preferred;
      options.codecOptions = { videoGoogleStartBitrate: Math.round(profile.videoBitrate / 1000) };
      options.encodings = videoEncodings(profile, source);
    }
    const producer = await this.sendTransport.produce(options);
    if (takeOver && takeOver.paused) producer.pause();
    this.producers.set(source, producer);
    producer.on('trackended', () => this.stopSource(source));
    return producer;
  }

  async startMicAndCamera() {
    const p = this.profile;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      video: { width: { ideal: p.width }, height: { ideal: p.height }, frameRate: { ideal: p.frameRate } },
    });
    for (const track of stream.getTracks()) {
      const source = track.kind === 'audio' ? 'mic' : 'camera';
      this.localTracks.set(source, track);
      this.emit('local', { source, track });
      if (this.joined) await this.produceTrack(source, track);
    }
  }

  // Mic/camera on/off: the server pauses the producer, so the other side sees it.
  async setPaused(source, paused) {
    const producer = this.producers.get(source);
    if (!producer) return;
    if (paused) producer.pause();
    else producer.resume();
    await this.request(paused ? 'pauseProducer' : 'resumeProducer', { producerId: producer.id });
  }

  async startScreenShare() {
    if (this.producers.has('screen')) return;
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    const track = stream.getVideoTracks()[0];
    this.localTracks.set('screen', track);
    this.emit('local', { source: 'screen', track });
    await this.produceTrack('screen', track);
  }

  async stopSource(source) {
    const producer = this.producers.get(source);
    this.producers.delete(source);
    const track = this.localTracks.get(source);
    this.localTracks.delete(source);
    if (track) track.stop();
    this.emit('local', { source, track: null });
    if (producer) {
      producer.close();
      await this.request('closeProducer', { producerId: producer.id }).catch(() => {});
    }
  }

  // ---- consuming -----------------------------------------------------------------

  async consumeAll() {
    return this.consume(null);
  }

  // A producer someone started: consume it, asking again (with back-off) if the
  // server was briefly unable to, so the other side's camera is not lost to a
  // blip.  A dropped connection is left to the resume, which consumes what is
  // missing; a rejoin does the same.
  async consumeAnnounced(producerId) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.consume(producerId);
        return;
      } catch (error) {
        const again = RETRY_CODES.has(error.code) && attempt < CONSUME_ATTEMPTS && this.socket.connected;
        console.warn('consume failed', error.code || error.name, again ? `(attempt ${attempt}, again)` : '');
        if (!again) return;
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
        if (!this.joined || this.rejoining || this.resuming) return;
      }
    }
  }

  async consume(producerId) {
    if (!this.recvTransport) return;
    const payload = { rtpCapabilities: this.device.rtpCapabilities };
    if (producerId) payload.producerId = producerId;
    const { consumers } = await this.request('consume', payload);
    if (consumers.length) mark('consume');
    const transport = this.recvTransport;
    // Attached together (mediasoup-client makes them in one SDP negotiation), each
    // resumed as soon as it is attached.
    await settleAll(
      consumers.map(async (item) => {
        const consumer = await transport.consume({
          id: item.id,
          producerId: item.producerId,
          kind: item.kind,
          rtpParameters: item.rtpParameters,
        });
        this.consumers.set(item.id, { consumer, peerId: item.peerId, source: item.source });
        mark('attached');
        this.emit('track', {
          peerId: item.peerId,
          source: item.source,
          kind: item.kind,
          track: consumer.track,
          consumerId: item.id,
          producerId: item.producerId,
          paused: item.producerPaused,
        });
        await this.resumeConsumer(item.id);
        mark('resumed');
      }),
    );
  }

  async resumeConsumer(consumerId) {
    this.unresumed.add(consumerId);
    try {
      await this.request('resumeConsumer', { consumerId });
      this.unresumed.delete(consumerId);
    } catch (error) {
      // Its producer closed meanwhile (a camera sent again, someone left).
      if (error.code === 'NOT_FOUND') this.dropConsumer(consumerId);
      else throw error;
    }
  }

  // After a resume: consumers the server still holds paused because our request to
  // resume them was lost with the connection (not those the server paused itself).
  async resumeInterrupted(ackConsumers) {
    for (const { id, paused } of ackConsumers) {
      if (!this.unresumed.has(id) || !this.consumers.has(id)) continue;
      if (paused) await this.resumeConsumer(id);
      else this.unresumed.delete(id);
    }
  }

  dropConsumer(consumerId) {
    this.unresumed.delete(consumerId);
    const item = this.consumers.get(consumerId);
    if (!item) return;
    this.consumers.delete(consumerId);
    item.consumer.close();
    this.emit('trackended', {
      consumerId,
      producerId: item.consumer.producerId,
      peerId: item.peerId,
      source: item.source,
      kind: item.consumer.kind,
    });
  }

  // ---- leaving -------------------------------------------------------------------

  async leave() {
    this.leaving = true;
    try {
      await this.request('leave');
    } catch (error) {
      // leaving anyway
    }
    this.end('left', 'you left the consultation');
  }

  end(state, detail) {
    this.leaving = true;
    this.closeMedia();
    for (const track of this.localTracks.values()) track.stop();
    this.localTracks.clear();
    if (this.socket) this.socket.disconnect();
    this.setState(state, detail);
  }
}
