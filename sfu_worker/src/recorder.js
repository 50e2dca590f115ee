'use strict';

// Server-side recording beside the SFU node (reached through the node's RPC, so a
// recording needs no service of its own and its RTP never leaves the host):
// one PlainTransport and one paused consumer per recorded producer, sending RTP
// to an ffmpeg process that copies the streams (no transcoding) into Matroska on
// its stdout, piped into `age` (the age format, X25519 recipient given by the
// control plane), so only ciphertext reaches the disk.  The node never holds the
// private key: it cannot read what it recorded.
//
// Consumers are resumed only once ffmpeg has bound every RTP port (read from
// /proc/net/udp, not guessed with a sleep); then a key frame is requested, and
// again whenever a producer resumes.  ffmpeg is stopped with SIGINT so it writes
// a complete file; an ffmpeg or age that exits on its own is reported
// (recording.failed).  RTP/RTCP ports come from a pool (SFU_RECORDING_MIN_PORT..MAX).
const { spawn } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const { RpcError } = require('./errors');

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const RECIPIENT_RE = /^age1[02-9ac-hj-np-z]{58}$/;
const READY_TIMEOUT_MS = 5000;
const STOP_TIMEOUT_MS = 10000;

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

// Local UDP ports bound on this host (IPv4 and IPv6).
function boundUdpPorts() {
  const ports = new Set();
  for (const file of ['/proc/net/udp', '/proc/net/udp6']) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (error) {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const local = line.trim().split(/\s+/)[1];
      if (local) ports.add(Number.parseInt(local.split(':').pop(), 16));
    }
  }
  return ports;
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
    const { router } = this.sfu.getRouter(params.routerId);
    const producerIds = Array.isArray(params.producerIds) ? params.producerIds : [];
    if (producerIds.length === 0 || producerIds.length > 16) {
      throw new RpcError('INVALID_PARAMS', 'producerIds must list 1 to 16 producers');
    }
    for (const id of producerIds) {
      const { transportId } = this.sfu.getProducer(id);
      if (this.sfu.getTransport(transportId).routerId !== params.routerId) {
        throw new RpcError('INVALID_PARAMS', `producer ${id} is not in this router`);
      }
    }
    fs.mkdirSync(this.config.recordingsDir, { recursive: true, mode: 0o700 });
    const file = path.join(this.config.recordingsDir, `${recordingId}.mkv.age`);
    const recording = {
      id: recordingId, file, recipient: params.recipient, streams: [], ffmpeg: null, age: null,
      stopping: false, startedAt: Date.now(), failed: null,
    };
    this.recordings.set(recordingId, recording);
    try {
      for (const producerId of producerIds) recording.streams.push(await this.addStream(router, producerId));
      await this.launch(recording);
      await this.waitBound(recording);
      for (const stream of recording.streams) {
        await stream.consumer.resume();
        if (stream.consumer.kind === 'video') await stream.consumer.requestKeyFrame();
      }
    } catch (error) {
      await this.cleanUp(recording);
      fs.rmSync(file, { force: true });
      throw error instanceof RpcError ? error : new RpcError('INTERNAL', `recording failed to start: ${error.message}`);
    }
    this.log('info', 'recording started', { recordingId, streams: recording.streams.length });
    return { recordingId, streams: this.describe(recording), startedAt: recording.startedAt };
  }

  async addStream(router, producerId) {
    const port = this.ports.take();
    const stream = { producerId, port, transport: null, consumer: null };
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
    stream.consumer.on('producerresume', () => {
      if (stream.consumer.kind === 'video') stream.consumer.requestKeyFrame().catch(() => {});
    });
    return stream;
  }

  async launch(recording) {
    const ffmpeg = spawn(this.config.ffmpegBin, [
      '-hide_banner', '-nostdin', '-loglevel', 'error',
      '-protocol_whitelist', 'pipe,udp,rtp', '-f', 'sdp', '-i', 'pipe:0',
      '-map', '0', '-c', 'copy',
      // ffmpeg re-bases RTP timestamps on the first RTCP sender report, which can
      // step a stream a few ms back: keep every stream's timestamps increasing
      // (here in Matroska's milliseconds), by at least a packet's duration or 10 ms.
      '-bsf', 'setts=ts=max(TS\\,PREV_OUTDTS+max(DURATION\\,10))',
      '-f', 'matroska', 'pipe:1',
    ], { stdio: ['pipe', 'pipe', 'pipe'] });
    const age = spawn(this.config.ageBin, ['-r', recording.recipient, '-o', `${recording.file}.part`], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    recording.ffmpeg = ffmpeg;
    recording.age = age;
    recording.stderr = '';
    ffmpeg.stderr.on('data', (chunk) => {
      recording.stderr = (recording.stderr + chunk.toString()).slice(-2000);
    });
    ffmpeg.stdout.pipe(age.stdin);
    for (const [name, child] of [['ffmpeg', ffmpeg], ['age', age]]) {
      child.on('exit', (code, signal) => {
        if (recording.stopping || recording.failed) return;
        recording.failed = `${name} exited (${signal || code})`;
        this.log('error', 'recording failed', { recordingId: recording.id, reason: recording.failed });
        this.notify('recording.failed', { recordingId: recording.id, reason: recording.failed });
        // A partial file is not kept: its key stays with the control plane, which
        // marks the recording failed.
        this.cleanUp(recording).then(() => fs.rmSync(`${recording.file}.part`, { force: true }), () => {});
      });
    }
    ffmpeg.stdin.end(sdpFor(recording.streams));
  }

  async waitBound(recording) {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    const wanted = recording.streams.map((stream) => stream.port);
    while (Date.now() < deadline) {
      if (recording.failed) throw new RpcError('INTERNAL', `ffmpeg did not start: ${recording.stderr.trim()}`);
      const bound = boundUdpPorts();
      if (wanted.every((port) => bound.has(port))) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new RpcError('TIMEOUT', 'ffmpeg did not open its RTP ports in time');
  }

  describe(recording) {
    return recording.streams.map(({ producerId, consumer }) => ({
      producerId, kind: consumer.kind, codec: consumer.rtpParameters.codecs[0].mimeType,
    }));
  }

  async stop(params) {
    const recording = this.recordings.get(params.recordingId);
    if (!recording) throw new RpcError('NOT_FOUND', `recording ${params.recordingId} not found`);
    if (recording.failed) {
      this.recordings.delete(recording.id);
      throw new RpcError('FAILED', recording.failed);
    }
    recording.stopping = true;
    const stoppedAt = Date.now();
    recording.ffmpeg.kill('SIGINT'); // ffmpeg writes the Matroska trailer and exits
    // ffmpeg exits with 255 after finishing the file on SIGINT ("received signal 2").
    const exited = await waitExit(recording.ffmpeg, STOP_TIMEOUT_MS);
    const clean = exited && [0, 255].includes(recording.ffmpeg.exitCode);
    if (!clean) recording.ffmpeg.kill('SIGKILL');
    const sealed = (await waitExit(recording.age, STOP_TIMEOUT_MS)) && recording.age.exitCode === 0;
    await this.cleanUp(recording);
    if (!clean || !sealed) {
      fs.rmSync(`${recording.file}.part`, { force: true });
      throw new RpcError('FAILED', `the recording could not be completed: ${recording.stderr.trim() || 'timeout'}`);
    }
    fs.renameSync(`${recording.file}.part`, recording.file);
    const bytes = fs.statSync(recording.file).size;
    this.log('info', 'recording stopped', { recordingId: recording.id, bytes });
    return {
      recordingId: recording.id, file: recording.file, bytes, sha256: await sha256Of(recording.file),
      startedAt: recording.startedAt, stoppedAt, streams: this.describe(recording),
    };
  }

  async cleanUp(recording) {
    this.recordings.delete(recording.id);
    for (const stream of recording.streams) {
      if (stream.transport && !stream.transport.closed) stream.transport.close();
      if (!stream.released) {
        stream.released = true;
        this.ports.give(stream.port);
      }
    }
    for (const child of [recording.ffmpeg, recording.age]) {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }

  async closeAll() {
    for (const recording of [...this.recordings.values()]) await this.stop({ recordingId: recording.id }).catch(() => {});
  }
}

module.exports = { Recorder, sdpFor };
