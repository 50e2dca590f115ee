// Collects the page's own WebRTC stats per producer and consumer, derives RTT,
// jitter, loss, bitrate, frame rate and resolution, and the quality level.
import { bitrate, classify, lossRatio } from './quality.js';

function pick(report, type, predicate = () => true) {
  const found = [];
  report.forEach((entry) => {
    if (entry.type === type && predicate(entry)) found.push(entry);
  });
  return found;
}

function selectedPair(report) {
  const pairs = pick(report, 'candidate-pair', (p) => p.nominated && p.state === 'succeeded');
  return pairs[0] || pick(report, 'candidate-pair', (p) => p.state === 'succeeded')[0] || null;
}

function round(value, digits = 4) {
  return typeof value === 'number' && Number.isFinite(value) ? Number(value.toFixed(digits)) : undefined;
}

export class StatsCollector {
  constructor(call) {
    this.call = call;
    this.previous = new Map(); // stream id -> {bytes, lost, packets, at}
  }

  delta(key, bytes, lost, packets, at) {
    const before = this.previous.get(key);
    this.previous.set(key, { bytes, lost, packets, at });
    if (!before) return { bitrate: 0, lossRatio: 0 };
    return {
      bitrate: bitrate(bytes, before.bytes, at, before.at),
      lossRatio: lossRatio(lost - before.lost, packets - before.packets),
    };
  }

  async collect() {
    const streams = [];
    let connection = {};
    for (const [source, producer] of this.call.producers) {
      if (producer.closed) continue;
      const report = await producer.getStats();
      const pair = selectedPair(report);
      if (pair) {
        connection = {
          roundTripTime: round(pair.currentRoundTripTime),
          availableOutgoingBitrate: round(pair.availableOutgoingBitrate, 0),
        };
      }
      for (const out of pick(report, 'outbound-rtp')) {
        const remote = pick(report, 'remote-inbound-rtp', (r) => r.localId === out.id)[0] || {};
        const sent = out.packetsSent || 0;
        const d = this.delta(`out:${out.id}`, out.bytesSent || 0, remote.packetsLost || 0, sent, out.timestamp);
        streams.push({
          direction: 'outbound',
          kind: producer.kind,
          source,
          producerId: producer.id,
          roundTripTime: round(remote.roundTripTime),
          jitter: round(remote.jitter),
          packetsLost: remote.packetsLost || 0,
          packets: sent,
          lossRatio: round(d.lossRatio),
          bitrate: d.bitrate,
          framesPerSecond: round(out.framesPerSecond, 2),
          frameWidth: out.frameWidth,
          frameHeight: out.frameHeight,
          paused: producer.paused,
        });
      }
    }
    for (const [consumerId, item] of this.call.consumers) {
      const { consumer } = item;
      if (consumer.closed) continue;
      const report = await consumer.getStats();
      const pair = selectedPair(report);
      if (pair && connection.roundTripTime === undefined) {
        connection = { roundTripTime: round(pair.currentRoundTripTime) };
      }
      for (const inbound of pick(report, 'inbound-rtp')) {
        const received = inbound.packetsReceived || 0;
        const d = this.delta(`in:${consumerId}`, inbound.bytesReceived || 0, inbound.packetsLost || 0, received, inbound.timestamp);
        streams.push({
          direction: 'inbound',
          kind: consumer.kind,
          source: item.source,
          consumerId,
          peerId: item.peerId,
          roundTripTime: pair ? round(pair.currentRoundTripTime) : undefined,
          jitter: round(inbound.jitter),
          packetsLost: inbound.packetsLost || 0,
          packets: received,
          lossRatio: round(d.lossRatio),
          bitrate: d.bitrate,
          framesPerSecond: round(inbound.framesPerSecond, 2),
          frameWidth: inbound.frameWidth,
          frameHeight: inbound.frameHeight,
          framesDecoded: inbound.framesDecoded,
        });
      }
    }
    const report = { connection, streams };
    report.quality = classify(report);
    return report;
  }
}

// Drops undefined values (JSON would too) so the server schema sees clean objects.
export function toPayload(report) {
  return JSON.parse(JSON.stringify(report));
}
