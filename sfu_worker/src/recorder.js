'use strict';

// Server-side recording beside the SFU node (reached through the node's RPC, so a
// recording needs no service of its own and its RTP never leaves the host):
// one PlainTransport and one paused consumer per recorded producer, sending RTP
// to an ffmpeg process that copies the streams (no transcoding) into Matroska on
// its stdout, piped into `age` (the age format, X25519 recipient given by the
// control plane), so only ciphertext reaches the disk.  The node never holds the
// private key: it cannot read what it recorded.
//
// Consumers are resumed only once ffmpeg has bound every RTP port (its own
// sockets, read from /proc, not guessed with a sleep); then a key frame is requested, and
// again whenever a producer resumes, and every second while a video stream that
// is not paused stops reaching the recorder (a network gap).  ffmpeg is stopped with SIGINT so it writes a complete
// file; an ffmpeg or age that exits on its own is reported (recording.failed).
// RTP/RTCP ports come from a pool (SFU_RECORDING_MIN_PORT..MAX).
//
// A Matroska file declares its tracks in its header, and ffmpeg reads an RTP
// session's streams once, at its start: a producer that appears mid-recording
// (a screen share, a participant who joins late or re-sends after moving to a
// new transport) starts a new *segment*.  The next segment (every producer still
// live, plus the new ones) is running before the previous one is stopped, so the
// two overlap by a moment rather than leave a gap; the control plane joins the
// segments into one file when it is read (clinical/recording_merge.py).
const { spawn } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const { RpcError } = require('./errors');

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const RECIPIENT_RE = /^age1[02-9ac-hj-np-z]{58}$/;
const READY_TIMEOUT_MS = 5000;
const STOP_TIMEOUT_MS = 10000;
const GAP_CHECK_MS = 1000;
// ffmpeg probes an RTP stream for up to 5 s (analyzeduration) before its header.
const HEADER_TIMEOUT_MS = 8000;
const GAP_MS = 1000;

class PortPool {
  constructor(min, max) {
    this.free = [];
    for (let port = min + (min % 2); port + 1 <= max; port += 2) this.free.push(port);
  }

  take() {
    const port = this.free.shift();
    if (port === undefined) throw new RpcError('UNAVAILABLE', 'no recording ports left');
    return port; // RTP on port, RTCP on port + 1
  }

  give(port) {
    this.free.push(port);
  }
}

// The local UDP ports bound by process ``pid``'s own sockets (IPv4 and IPv6): the
// socket inodes in /proc/net/udp matched against the process's descriptors, so a
// port some other process holds does not count.
function udpPortsOf(pid) {
  const inodes = new Set();
  try {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      const target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      const match = /^socket:\[(\d+)\]$/.exec(target);
      if (match) inodes.add(match[1]);
    }
  } catch (error) {
    return new Set(); // it exited, or not yet started
  }
  const ports = new Set();
  for (const file of ['/proc/net/udp', '/proc/net/udp6']) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (error) {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length > 9 && inodes.has(fields[9])) ports.add(Number.parseInt(fields[1].split(':').pop(), 16));
    }
  }
  return ports;
}

// ffmpeg and age die with the node (PR_SET_PDEATHSIG through util-linux setpriv):
// after a kill -9 of the node they would otherwise hold the pool's ports and wait
// for RTP forever.
function spawnTied(bin, args, options) {
  return spawn('setpriv', ['--pdeathsig', 'KILL', '--', bin, ...args], options);
}

function sdpFor(streams) {
  const lines = ['v=0', 'o=- 0 0 IN IP4 127.0.0.1', 's=telemed recording', 'c=IN IP4 127.0.0.1', 't=0 0'];
  for (const { consumer, port } of streams) {
    const codec = consumer.rtpParameters.codecs[0];
    const [kind, name] = codec.mimeType.split('/');
    const channels = codec.channels ? `/${codec.channels}` : '';
    lines.push(`m=${kind} ${port} RTP/AVP ${codec.payloadType}`);
    lines.push(`a=rtcp:${port + 1}`);
    lines.push(`a=rtpmap:${codec.payloadType} ${name}/${codec.clockRate}${channels}`);
    const fmtp = Object.entries(codec.parameters || {}).map(([k, v]) => `${k}=${v}`);
    if (fmtp.length) lines.push(`a=fmtp:${codec.payloadType} ${fmtp.join(';')}`);
    lines.push('a=recvonly');
  }
  return `${lines.join('\r\n')}\r\n`;
}

function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function sha256Of(file) {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk);
  return hash.digest('hex');
}

class Recorder {
  constructor(config, sfu, notify, log) {
    this.config = config;
    this.sfu = sfu;
    this.notify = notify;
    this.log = log;
    this.ports = new PortPool(config.recordingMinPort, config.recordingMaxPort);
    this.recordings = new Map(); // recordingId -> recording
  }

  async start(params) {
    const recordingId = params.recordingId;
    if (typeof recordingId !== 'string' || !ID_RE.test(recordingId)) {
      throw new RpcError('INVALID_PARAMS', 'recordingId must be 1-64 letters, digits, _ or -');
    }
    if (typeof params.recipient !== 'string' || !RECIPIENT_RE.test(params.recipient)) {
      throw new RpcError('INVALID_PARAMS', 'recipient must be an age X25519 recipient');
    }
    if (this.recordings.has(recordingId)) throw new RpcError('CONFLICT', 'already recording');
    const producerIds = this.checkProducers(params.routerId, params.producerIds);
    const { router } = this.sfu.getRouter(params.routerId);
    fs.mkdirSync(this.config.recordingsDir, { recursive: true, mode: 0o700 });
    const recording = {
      id: recordingId, recipient: params.recipient, router, routerId: params.routerId, current: null, done: [],
      failed: null, startedAt: Date.now(), queue: Promise.resolve(),
    };
    this.recordings.set(recording.id, recording);
    try {
      recording.current = await this.openSegment(recording, this.recordable(producerIds));
    } catch (error) {
      this.recordings.delete(recordingId);
      throw error;
    }
    this.log('info', 'recording started', { recordingId, streams: recording.current.streams.length });
    return { recordingId, streams: this.describe(recording.current), startedAt: recording.startedAt, segment: 0 };
  }

  // A paused video producer sends nothing, and ffmpeg cannot write a Matroska
  // header for a video stream it never saw (its size is unknown): it joins the
  // recording when it resumes (the control plane asks again then).
  recordable(producerIds) {
    const live = producerIds.filter((id) => {
      const { producer } = this.sfu.getProducer(id);
      return !(producer.kind === 'video' && producer.paused);
    });
    if (live.length === 0) throw new RpcError('CONFLICT', 'every producer to record is a paused video');
    return live;
  }

  checkProducers(routerId, list) {
    const producerIds = Array.isArray(list) ? [...new Set(list)] : [];
    if (producerIds.length === 0 || producerIds.length > 16) {
      throw new RpcError('INVALID_PARAMS', 'producerIds must list 1 to 16 producers');
    }
    for (const id of producerIds) {
      const { transportId } = this.sfu.getProducer(id);
      if (this.sfu.getTransport(transportId).routerId !== routerId) {
        throw new RpcError('INVALID_PARAMS', `producer ${id} is not in this router`);
      }
    }
    return producerIds;
  }

  // The room's producers now (the control plane's list): those the current segment
  // lacks start a new segment with every producer still live.  Requests for one
  // recording run one after the other; a list with nothing new changes nothing.
  // ffmpeg cannot write a segment's header before it has seen every stream, so a
  // producer the SFU has received nothing from yet (a camera switched on whose
  // first frames are still on their way, a starved encoder) is left out and
  // answered as `waiting`, and so is everything new when the next segment does
  // not start (its ffmpeg ended or saw nothing in time): the current segment goes
  // on in both cases, and the control plane asks again.
  async extend(params) {
    const recording = this.live(params.recordingId);
    const run = recording.queue.then(async () => {
      if (recording.failed) throw new RpcError('FAILED', recording.failed);
      const current = recording.current;
      const known = new Set(current.streams.map((stream) => stream.producerId));
      const wanted = Array.isArray(params.producerIds) ? params.producerIds : [];
      const candidates = wanted.filter((id) => {
        const item = this.sfu.producers.get(id);
        return item && !known.has(id) && !(item.producer.kind === 'video' && item.producer.paused);
      });
      const unchanged = { recordingId: recording.id, segment: current.index, added: [], waiting: [] };
      if (candidates.length === 0) return unchanged;
      const silent = new Set(await this.silentAtSfu(candidates));
      const added = candidates.filter((id) => !silent.has(id));
      if (added.length === 0) return { ...unchanged, waiting: candidates };
      const kept = current.streams.filter((stream) => !stream.consumer.closed).map((s) => s.producerId);
      const producerIds = this.checkProducers(recording.routerId, [...kept, ...added]);
      let next = null;
      try {
        next = await this.openSegment(recording, producerIds, { pending: true });
        // The previous segment stops only once the next one writes, so no moment is missing.
        await this.waitWriting(next);
      } catch (error) {
        this.log('warn', 'recording segment did not start', { recordingId: recording.id, reason: error.message });
      }
      if (recording.failed || !next || next.written === 0) {
        if (next) this.discard(next);
        if (recording.failed) throw new RpcError('FAILED', recording.failed);
        if (next) {
          const exited = next.ffmpeg.exitCode ?? next.ffmpeg.signalCode;
          this.log('warn', 'recording segment did not start', {
            recordingId: recording.id, reason: exited === null ? 'no header in time' : `ffmpeg exited (${exited})`,
          });
        }
        return { ...unchanged, waiting: candidates };
      }
      next.pending = false;
      recording.current = next;
      const closed = await this.closeSegment(recording, current);
      if (closed) recording.done.push(closed);
      if (next.ffmpeg.exitCode !== null) this.fail(recording, `ffmpeg exited (${next.ffmpeg.exitCode})`);
      this.log('info', 'recording segment started', {
        recordingId: recording.id, segment: next.index, added: added.length, waiting: silent.size,
      });
      return { recordingId: recording.id, segment: next.index, added, waiting: [...silent], streams: this.describe(next) };
    });
    recording.queue = run.catch(() => {});
    return run;
  }

  // The producers among ``producerIds`` that the SFU has received no packet from.
  async silentAtSfu(producerIds) {
    const silent = [];
    for (const id of producerIds) {
      let packets = 0;
      try {
        const stats = await this.sfu.producers.get(id).producer.getStats();
        packets = stats.reduce((sum, entry) => sum + (entry.type === 'inbound-rtp' ? entry.packetCount : 0), 0);
      } catch (error) {
        continue; // closed meanwhile: nothing to wait for
      }
      if (packets === 0) silent.push(id);
    }
    return silent;
  }

  // A segment that never wrote: nothing of it is kept.
  discard(segment) {
    segment.stopping = true;
    this.release(segment);
    fs.rmSync(`${segment.file}.part`, { force: true });
  }

  live(recordingId) {
    const recording = this.recordings.get(recordingId);
    if (!recording) throw new RpcError('NOT_FOUND', `recording ${recordingId} not found`);
    return recording;
  }

  // A pending segment is one that may not start (its ffmpeg exiting before it
  // writes is the caller's to handle, not a failed recording).  A port of the
  // pool that some other process holds (a client's UDP socket may take any port
  // of the system's ephemeral range) makes ffmpeg exit at once: the segment is
  // tried again on other ports of the pool.
  async openSegment(recording, producerIds, { pending = false } = {}) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.openSegmentOnce(recording, producerIds, pending);
      } catch (error) {
        if (attempt >= 3 || !/Address already in use/.test(error.message)) throw error;
        this.log('warn', 'recording port taken, trying other ports', { recordingId: recording.id, attempt });
      }
    }
  }

  async openSegmentOnce(recording, producerIds, pending) {
    const index = recording.current ? recording.current.index + 1 : 0;
    const segment = {
      index, file: path.join(this.config.recordingsDir, `${recording.id}.${index}.mkv.age`),
      // Pending until ffmpeg holds its ports: an ffmpeg that cannot bind is retried.
      streams: [], ffmpeg: null, age: null, stderr: '', stopping: false, startedAt: 0, pending: true,
    };
    try {
      for (const producerId of producerIds) segment.streams.push(await this.addStream(recording.router, producerId));
      this.launch(recording, segment);
      await this.waitBound(recording, segment);
      segment.pending = pending;
      const exited = segment.ffmpeg.exitCode ?? segment.ffmpeg.signalCode;
      if (exited !== null) throw new RpcError('INTERNAL', `ffmpeg exited (${exited}): ${segment.stderr.trim()}`);
      segment.startedAt = Date.now();
      for (const stream of segment.streams) {
        await stream.consumer.resume();
        if (stream.consumer.kind === 'video') await stream.consumer.requestKeyFrame();
      }
      this.watchGaps(segment);
    } catch (error) {
      segment.stopping = true;
      this.release(segment);
      fs.rmSync(`${segment.file}.part`, { force: true });
      throw error instanceof RpcError ? error : new RpcError('INTERNAL', `recording failed to start: ${error.message}`);
    }
    return segment;
  }

  async addStream(router, producerId) {
    const port = this.ports.take();
    // Its track in the joined file: the participant's source, so a camera sent
    // again (with simulcast layers, on a new transport) continues the same track.
    const { peerId, source } = this.sfu.getProducer(producerId).producer.appData || {};
    const track = peerId && source ? `${peerId}/${source}` : producerId;
    const stream = { producerId, track, port, transport: null, consumer: null };
    try {
      stream.transport = await router.createPlainTransport({
        listenIp: { ip: '127.0.0.1' }, rtcpMux: false, comedia: false,
      });
      await stream.transport.connect({ ip: '127.0.0.1', port, rtcpPort: port + 1 });
      stream.consumer = await stream.transport.consume({
        producerId, rtpCapabilities: router.rtpCapabilities, paused: true,
      });
    } catch (error) {
      if (stream.transport) stream.transport.close();
      this.ports.give(port);
      throw error;
    }
    stream.consumer.on('producerresume', () => this.keyFrame(stream));
    return stream;
  }

  keyFrame(stream) {
    if (stream.consumer.kind === 'video' && !stream.consumer.closed) {
      stream.consumer.requestKeyFrame().catch(() => {});
    }
  }

  // A video stream that stops reaching the recorder while its producer is not
  // paused (a network gap at the sender): ask for a key frame every second until
  // it flows again, since its next frames may refer to ones the file never got
  // (and the consumer forwards nothing until a key frame after a gap).
  watchGaps(segment) {
    const timer = setInterval(async () => {
      for (const stream of segment.streams) {
        const { consumer } = stream;
        if (consumer.kind !== 'video' || consumer.closed || consumer.producerPaused) continue;
        let packets = 0;
        try {
          const stats = await consumer.getStats();
          packets = stats.find((entry) => entry.type === 'outbound-rtp')?.packetCount ?? 0;
        } catch (error) {
          continue;
        }
        const now = Date.now();
        if (packets !== stream.packets) {
          stream.packets = packets;
          stream.flowingAt = now;
        } else if (now - (stream.flowingAt ?? now) >= GAP_MS) {
          this.log('info', 'recording stream stalled, key frame requested', { producerId: stream.producerId });
          stream.flowingAt = now; // again in GAP_MS if it stays stalled
          this.keyFrame(stream);
        }
      }
    }, GAP_CHECK_MS);
    segment.timers = [timer];
  }

  launch(recording, segment) {
    const ffmpeg = spawnTied(this.config.ffmpegBin, [
      '-hide_banner', '-nostdin', '-loglevel', 'error',
      '-protocol_whitelist', 'pipe,udp,rtp', '-f', 'sdp', '-i', 'pipe:0',
      '-map', '0', '-c', 'copy',
      // ffmpeg re-bases RTP timestamps on the first RTCP sender report, which can
      // step a stream a few ms back: keep every stream's timestamps increasing
      // (here in Matroska's milliseconds), by at least a packet's duration or 10 ms.
      '-bsf', 'setts=ts=max(TS\\,PREV_OUTDTS+max(DURATION\\,10))',
      '-f', 'matroska', 'pipe:1',
    ], { stdio: ['pipe', 'pipe', 'pipe'] });
    const age = spawnTied(this.config.ageBin, ['-r', recording.recipient, '-o', `${segment.file}.part`], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    segment.ffmpeg = ffmpeg;
    segment.age = age;
    ffmpeg.stderr.on('data', (chunk) => {
      segment.stderr = (segment.stderr + chunk.toString()).slice(-2000);
    });
    segment.written = 0;
    ffmpeg.stdout.on('data', (chunk) => {
      segment.written += chunk.length;
    });
    ffmpeg.stdout.pipe(age.stdin);
    for (const [name, child] of [['ffmpeg', ffmpeg], ['age', age]]) {
      child.on('exit', (code, signal) => {
        if (segment.stopping || segment.pending || recording.failed) return;
        this.fail(recording, `${name} exited (${signal || code})`);
      });
    }
    // A child that dies early closes its pipes: a write to them must not throw
    // in the node (EPIPE would end every call on it); the exit is handled above.
    for (const pipe of [ffmpeg.stdin, ffmpeg.stdout, age.stdin]) {
      pipe.on('error', (error) => {
        segment.stderr = `${segment.stderr}\n${error.code || error.message}`.slice(-2000);
      });
    }
    ffmpeg.stdin.end(sdpFor(segment.streams));
  }

  // Never silent: the control plane marks the recording failed and alerts.  No
  // file of it is kept (its key stays with the control plane, which has no row
  // for a partial file).
  fail(recording, reason) {
    recording.failed = reason;
    this.recordings.delete(recording.id);
    this.log('error', 'recording failed', { recordingId: recording.id, reason });
    this.notify('recording.failed', { recordingId: recording.id, reason });
    for (const segment of [...recording.done, recording.current].filter(Boolean)) {
      segment.stopping = true;
      this.release(segment);
      fs.rmSync(`${segment.file}.part`, { force: true });
      fs.rmSync(segment.file, { force: true });
    }
  }

  async waitBound(recording, segment) {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    const wanted = segment.streams.map((stream) => stream.port);
    while (Date.now() < deadline) {
      const exited = segment.ffmpeg.exitCode ?? segment.ffmpeg.signalCode;
      if (recording.failed || exited !== null) {
        throw new RpcError('INTERNAL', `ffmpeg did not start (${exited}): ${segment.stderr.trim()}`);
      }
      const bound = udpPortsOf(segment.ffmpeg.pid);
      if (wanted.every((port) => bound.has(port))) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new RpcError('TIMEOUT', 'ffmpeg did not open its RTP ports in time');
  }

  async waitWriting(segment) {
    const deadline = Date.now() + HEADER_TIMEOUT_MS;
    const running = () => segment.ffmpeg.exitCode === null && segment.ffmpeg.signalCode === null;
    while (segment.written === 0 && Date.now() < deadline && !segment.stopping && running()) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  describe(segment) {
    return segment.streams.map(({ producerId, track, consumer }) => ({
      producerId, track, kind: consumer.kind, codec: consumer.rtpParameters.codecs[0].mimeType,
    }));
  }

  // SIGINT: ffmpeg writes the Matroska trailer and exits (with 255, "received
  // signal 2"); age then seals the file.  A segment that cannot be completed fails
  // the recording.
  async closeSegment(recording, segment) {
    segment.stopping = true;
    const stoppedAt = Date.now();
    segment.ffmpeg.kill('SIGINT');
    const exited = await waitExit(segment.ffmpeg, STOP_TIMEOUT_MS);
    const clean = exited && [0, 255].includes(segment.ffmpeg.exitCode);
    if (!clean) segment.ffmpeg.kill('SIGKILL');
    const sealed = (await waitExit(segment.age, STOP_TIMEOUT_MS)) && segment.age.exitCode === 0;
    this.release(segment);
    if (!clean || !sealed) {
      const reason = `the recording could not be completed: ${segment.stderr.trim() || 'timeout'}`;
      if (!recording.failed) this.fail(recording, reason);
      throw new RpcError('FAILED', reason);
    }
    if (segment.written === 0) {
      // Stopped before ffmpeg had seen every stream: it wrote nothing.
      fs.rmSync(`${segment.file}.part`, { force: true });
      return null;
    }
    fs.renameSync(`${segment.file}.part`, segment.file);
    return {
      index: segment.index, file: segment.file, bytes: fs.statSync(segment.file).size,
      sha256: await sha256Of(segment.file), startedAt: segment.startedAt, stoppedAt,
      streams: this.describe(segment),
    };
  }

  async stop(params) {
    const recording = this.live(params.recordingId);
    const run = recording.queue.then(async () => {
      if (recording.failed) throw new RpcError('FAILED', recording.failed);
      try {
        const closed = await this.closeSegment(recording, recording.current);
        if (closed) recording.done.push(closed);
      } finally {
        this.recordings.delete(recording.id);
      }
      if (recording.done.length === 0) {
        throw new RpcError('FAILED', 'nothing was recorded: stopped before every stream had been seen');
      }
      return this.summary(recording);
    });
    recording.queue = run.catch(() => {});
    return run;
  }

  summary(recording) {
    const segments = recording.done;
    const bytes = segments.reduce((sum, segment) => sum + segment.bytes, 0);
    this.log('info', 'recording stopped', { recordingId: recording.id, bytes, segments: segments.length });
    return {
      recordingId: recording.id, startedAt: recording.startedAt,
      stoppedAt: segments[segments.length - 1].stoppedAt, bytes, segments,
    };
  }

  release(segment) {
    for (const timer of segment.timers || []) clearInterval(timer);
    for (const stream of segment.streams) {
      if (stream.transport && !stream.transport.closed) stream.transport.close();
      if (!stream.released) {
        stream.released = true;
        this.ports.give(stream.port);
      }
    }
    for (const child of [segment.ffmpeg, segment.age]) {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }

  // The node is shutting down: complete every recording and tell the control
  // plane what was written (it would otherwise count them lost with the node).
  async closeAll() {
    for (const recording of [...this.recordings.values()]) {
      try {
        const result = await this.stop({ recordingId: recording.id });
        this.notify('recording.stopped', { ...result, reason: 'node_shutdown' });
      } catch (error) {
        // stop() failed the recording (and said so) already
      }
    }
  }
}

module.exports = { Recorder, sdpFor };
