// TURN relay on the page.  Changing the ICE policy and hearing TURN errors
// needs the RTCPeerConnection, which mediasoup-client keeps in its handler
// (mediasoup-client 3.7: `transport.handler._pc`).
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
    return `the relay server refused this call's access (TURN error ${errors.find((e) => REFUSED.has(e.code)).code})`;
  }
  return 'the relay server could not be reached';
}
