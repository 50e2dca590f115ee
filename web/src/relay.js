// TURN relay on the page.  Changing the ICE policy and hearing TURN errors
// needs the RTCPeerConnection, which mediasoup-client keeps in its handler
// (mediasoup-client 3.7: `transport.handler._pc`).
import { t } from './i18n.js';

export function peerConnectionOf(transport) {
  const pc = transport.handler && transport.handler._pc;
  return pc instanceof RTCPeerConnection ? pc : null;
}

// Fresh TURN credentials for this transport, and optionally a new ICE policy
// ('relay': nothing but the TURN servers).  Takes effect at the next ICE restart.
export function configureIce(transport, iceServers, policy) {
  const pc = peerConnectionOf(transport);
  if (!pc || !Array.isArray(iceServers)) return false;
  const configuration = pc.getConfiguration();
  configuration.iceServers = iceServers;
  if (policy) configuration.iceTransportPolicy = policy;
  pc.setConfiguration(configuration);
  return true;
}

// TURN answers 401/403/441 to credentials it does not accept; Chrome reports
// 701 when it cannot reach the server at all.
const REFUSED = new Set([401, 403, 441]);

// Collect the TURN errors of this transport's candidate gathering in
// transport.appData.turnErrors ({url, code}).
export function watchTurnErrors(transport) {
  transport.appData.turnErrors = [];
  const pc = peerConnectionOf(transport);
  if (!pc) return;
  pc.addEventListener('icecandidateerror', (event) => {
    if (!/^turns?:/.test(event.url || '')) return;
    transport.appData.turnErrors.push({ url: event.url, code: event.errorCode });
  });
}

// Why the relay could not help this transport, in words for the user; null
// when no TURN server failed.
export function turnFailure(transport) {
  const errors = transport.appData.turnErrors || [];
  if (!errors.length) return null;
  if (errors.some((error) => REFUSED.has(error.code))) {
    return t('turn.refused', { code: errors.find((e) => REFUSED.has(e.code)).code });
  }
  return t('turn.unreachable');
}

// How long new relay-only transports may take to carry the media.
const RELAY_MOVE_MS = 10000;

function connected(transport, timeoutMs) {
  if (!transport || transport.connectionState === 'new' || transport.connectionState === 'connected') {
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const settle = (error) => {
      clearTimeout(timer);
      transport.removeListener('connectionstatechange', watch);
      if (error) reject(error);
      else resolve();
    };
    const watch = (state) => {
      if (state === 'connected') settle();
      else if (state === 'failed' || state === 'closed') settle(new Error(`relay transport ${state}`));
    };
    const timer = setTimeout(() => settle(new Error('the relay did not connect')), timeoutMs);
    transport.on('connectionstatechange', watch);
  });
}

// Move the call's media onto new relay-only transports without leaving the
// call (the others see the tracks change, not the participant go): new
// transports, the local tracks produced and everything consumed again on them,
// and once both carry media the old producers and transports are closed.
// Throws when the relay does not connect; the old transports are then still
// open, and the caller decides what to do.
export async function moveToRelay(call, timeoutMs = RELAY_MOVE_MS) {
  const old = {
    send: call.sendTransport,
    recv: call.recvTransport,
    producers: [...call.producers.values()],
    consumers: [...call.consumers.keys()],
  };
  await Promise.all([call.createSendTransport({ trial: true }), call.createRecvTransport({ trial: true })]);
  const fresh = [call.sendTransport, call.recvTransport];
  call.producers.clear();
  for (const [source, track] of call.localTracks) {
    if (track.readyState === 'live') await call.produceTrack(source, track);
  }
  await call.consumeAll();
  await Promise.all(fresh.map((transport) => connected(transport, timeoutMs)));
  for (const transport of fresh) transport.appData.trial = false;
  for (const producer of old.producers) {
    producer.close();
    await call.request('closeProducer', { producerId: producer.id }).catch(() => {});
  }
  for (const consumerId of old.consumers) call.dropConsumer(consumerId);
  for (const transport of [old.send, old.recv]) {
    if (!transport || transport.closed) continue;
    await call.request('closeTransport', { transportId: transport.id }).catch(() => {});
    transport.close();
  }
}
