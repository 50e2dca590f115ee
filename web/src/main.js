// Consultation page entry point: /consult/<consultationId>#token=<room token>
import { Call } from './call.js';
import { t, translatePage } from './i18n.js';
import { CLINICIAN_ROLES, ClinicianConsole, SessionTools } from './console.js';
import { TileReporter } from './layers.js';
import { StatsCollector, toPayload } from './stats.js';
import { Ui } from './ui.js';

const STATS_INTERVAL_MS = 3000;

function readLocation() {
  const match = window.location.pathname.match(/\/consult\/([A-Za-z0-9][A-Za-z0-9_.:-]{0,63})\/?$/);
  const consultationId = match ? decodeURIComponent(match[1]) : null;
  const key = `telemed-token:${consultationId}`;
  const hash = new URLSearchParams(window.location.hash.slice(1));
  let token = hash.get('token');
  if (token) {
    // Keep the token out of the address bar (screenshots, history), but let a reload work.
    sessionStorage.setItem(key, token);
    history.replaceState(null, '', window.location.pathname);
  } else {
    token = sessionStorage.getItem(key);
  }
  return { consultationId, token };
}

async function main() {
  performance.mark('telemed:start'); // the bundle has been fetched and evaluated
  translatePage(document.body);
  const ui = new Ui(document.body);
  ui.setQuality('unknown');
  const { consultationId, token } = readLocation();
  if (!consultationId || !token) {
    ui.setState('failed');
    ui.showError(t('error.incompleteLink'));
    return;
  }
  const call = new Call({ baseUrl: window.location.origin, consultationId, token });
  const stats = new StatsCollector(call);
  let selfRole = '';
  let lastReport = null;
  window.telemed = { call, lastReport: () => lastReport, inbound: () => inboundSummary(call) };

  const tileSizes = new TileReporter(call, ui.tiles);
  call.on('state', ({ state, detail }) => {
    ui.setState(state, detail);
    if (state === 'connected') tileSizes.report(true); // a resumed server starts afresh
    if (state === 'failed' || state === 'ended') ui.showError(detail || '');
  });
  const clinicianConsole = new ClinicianConsole(document.body, call, (text) => ui.showError(text));
  const waitingRoom = document.getElementById('waiting-room');
  const waitingMessage = document.getElementById('waiting-message');
  const isClinician = () => CLINICIAN_ROLES.has(call.role);
  const showPresence = (present) => {
    waitingMessage.textContent = t(present ? 'waiting.present' : 'waiting.absent');
    waitingMessage.dataset.clinicianPresent = String(present);
  };
  call.on('admission', ({ state, clinicianPresent }) => {
    waitingRoom.hidden = state !== 'waiting';
    if (clinicianPresent !== undefined) showPresence(clinicianPresent);
  });
  call.on('presence', ({ present }) => showPresence(present));
  call.on('speaker', ({ peerId }) => ui.setSpeaker(peerId));
  const sessionTools = new SessionTools(document.body, call, (text) => ui.showError(text));
  call.on('session', (session) => {
    if (!isClinician()) return;
    clinicianConsole.show();
    sessionTools.start(session, call.role);
  });
  call.on('waiting', (waiting) => {
    if (!isClinician()) return;
    clinicianConsole.show();
    clinicianConsole.renderWaiting(waiting);
    clinicianConsole.renderPeople();
  });
  call.on('peer', (peer) => {
    ui.ensureTile(peer.peerId, 'camera', ui.captionFor(peer, 'camera'), peer.role);
    if (isClinician()) clinicianConsole.renderPeople();
  });
  call.on('peerleft', ({ peerId }) => {
    ui.removePeer(peerId);
    if (isClinician()) clinicianConsole.renderPeople();
  });
  call.on('peerreconnecting', ({ peerId, reconnecting }) => ui.setReconnecting(peerId, reconnecting));
  call.on('fallback', ({ peerId, mode }) => {
    const audioOnly = mode === 'audio_only';
    if (peerId === null) {
      ui.showNotice('self', audioOnly ? t('notice.weakSelf') : '');
    } else {
      const peer = call.peers.get(peerId) || {};
      const name = peer.displayName || t('notice.otherParticipant');
      ui.showNotice(peerId, audioOnly ? t('notice.weakPeer', { name }) : '');
    }
  });
  call.on('recording', ({ active, reason }) => {
    const badge = document.getElementById('recording');
    badge.hidden = !active;
    if (!active && reason === 'failed') ui.showNotice('self', t('notice.recordingFailed'));
  });
  call.on('relay', () => ui.showNotice('self', t('notice.relay')));
  call.on('local', ({ source, track }) => {
    if (source === 'mic') return;
    if (!track) {
      if (source === 'screen') ui.removeTile('local', 'screen');
      else ui.attachVideo(ui.ensureTile('local', source, t('tile.you'), selfRole), null);
      return;
    }
    const role = selfRole ? t(`role.${selfRole}`) : '';
    const caption = source === 'screen' ? t('tile.yourScreen') : role ? t('tile.youAs', { role }) : t('tile.you');
    const tile = ui.ensureTile('local', source, caption, selfRole);
    tile.classList.add('local');
    ui.attachVideo(tile, track);
  });
  call.on('track', ({ peerId, source, kind, track, consumerId, producerId, paused }) => {
    const peer = call.peers.get(peerId) || { displayName: t('tile.participant'), role: '' };
    const tileSource = kind === 'audio' ? 'camera' : source;
    const tile = ui.ensureTile(peerId, tileSource, ui.captionFor(peer, tileSource), peer.role);
    if (kind === 'audio') {
      ui.attachAudio(tile, track, consumerId, producerId);
      tile.dataset.muted = String(Boolean(paused));
    } else {
      ui.attachVideo(tile, track);
      tile.dataset.producerId = producerId;
      tile.dataset.consumerId = consumerId;
      ui.setPaused(tile, paused);
      tileSizes.watch(tile.querySelector('video'));
    }
  });
  // The simulcast layer a remote camera now arrives in (0 smallest; '' none).
  call.on('layers', ({ consumerId, spatialLayer }) => {
    const tile = document.querySelector(`.tile[data-consumer-id="${CSS.escape(consumerId)}"]`);
    if (tile) tile.dataset.layer = spatialLayer === null ? '' : String(spatialLayer);
  });
  call.on('trackended', ({ peerId, source, kind, consumerId }) => {
    if (kind === 'audio') {
      ui.removeAudio(consumerId);
      return;
    }
    // Only if the tile still shows this consumer (a move to new transports
    // attaches the new one before the old one ends).
    const tile = ui.tile(peerId, source === 'screen' ? 'screen' : 'camera');
    if (!tile || (tile.dataset.consumerId && tile.dataset.consumerId !== consumerId)) return;
    if (source === 'screen') ui.removeTile(peerId, 'screen');
    else ui.attachVideo(tile, null);
    tileSizes.schedule();
  });
  call.on('trackpaused', ({ producerId, paused }) => {
    const id = CSS.escape(producerId);
    ui.setPaused(document.querySelector(`.tile[data-producer-id="${id}"]`), paused);
    const audio = document.querySelector(`audio[data-producer-id="${id}"]`);
    if (audio) audio.closest('.tile').dataset.muted = String(paused);
  });

  const SHARE_LABELS = { onText: t('button.shareOn'), offText: t('button.shareOff'), onLabel: t('button.shareOnLabel'), offLabel: t('button.shareOffLabel') };
  const toggles = {
    mic: { source: 'mic', onText: t('button.micOn'), offText: t('button.micOff'), onLabel: t('button.micOnLabel'), offLabel: t('button.micOffLabel') },
    camera: { source: 'camera', onText: t('button.cameraOn'), offText: t('button.cameraOff'), onLabel: t('button.cameraOnLabel'), offLabel: t('button.cameraOffLabel') },
  };
  for (const [name, labels] of Object.entries(toggles)) {
    ui.buttons[name].addEventListener('click', async () => {
      const on = ui.buttons[name].getAttribute('aria-pressed') === 'true';
      try {
        await call.setPaused(labels.source, on);
        ui.setToggle(name, !on, labels);
        if (name === 'camera') ui.setPaused(ui.tile('local', 'camera'), on);
      } catch (error) {
        ui.showError(t('error.couldNotChange', { what: t(`what.${labels.source}`), code: error.code || error.name }));
      }
    });
  }
  ui.buttons.screen.addEventListener('click', async () => {
    const sharing = ui.buttons.screen.getAttribute('aria-pressed') === 'true';
    try {
      if (sharing) await call.stopSource('screen');
      else await call.startScreenShare();
      ui.setToggle('screen', !sharing, SHARE_LABELS);
    } catch (error) {
      ui.showError(t('error.screenShare', { code: error.code || error.name }));
    }
  });
  call.on('local', ({ source, track }) => {
    if (source === 'screen' && !track) {
      ui.setToggle('screen', false, SHARE_LABELS);
    }
  });
  ui.buttons.leave.addEventListener('click', () => call.leave());
  // Closing or leaving the page is leaving the call (not a dropped link to wait for).
  window.addEventListener('pagehide', () => {
    if (call.joined && call.socket && call.socket.connected) call.socket.emit('leave', {});
  });

  let collecting = false;
  setInterval(async () => {
    if (collecting || (call.state !== 'connected' && call.state !== 'reconnecting')) return;
    collecting = true;
    try {
      const report = await withTimeout(stats.collect(), 2500, 'stats collection');
      lastReport = report;
      ui.setQuality(report.quality);
      if (call.joined && call.socket.connected) {
        call.socket.emit('reportStats', toPayload(report), (ack) => {
          if (ack && ack.error) console.warn('stats report refused', ack.error.code);
        });
      }
    } catch (error) {
      console.warn('stats collection failed', error.message);
    } finally {
      collecting = false;
    }
  }, STATS_INTERVAL_MS);

  try {
    await call.start();
    selfRole = call.role || '';
    try {
      await call.startMicAndCamera();
    } catch (error) {
      // Not after the call is over (the end closed the transports under getUserMedia).
      if (!call.leaving) {
        ui.showError(t('error.noDevices', { name: error.name }));
      }
    }
  } catch (error) {
    ui.setState('failed', error.message);
    ui.showError(error.code === 'SESSION_EXPIRED' ? t('error.linkExpired') : t('error.couldNotJoin', { code: error.code || error.name }));
  }
}

// getStats() waits in mediasoup-client's queue behind renegotiations; never wait forever.
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function inboundSummary(call) {
  const rows = [];
  for (const [consumerId, item] of [...call.consumers]) {
    let report;
    try {
      report = await withTimeout(item.consumer.getStats(), 2000, 'consumer stats');
    } catch (error) {
      continue; // closed or busy consumer: leave it out of this sample
    }
    report.forEach((entry) => {
      if (entry.type === 'inbound-rtp') {
        rows.push({
          consumerId,
          peerId: item.peerId,
          source: item.source,
          kind: item.consumer.kind,
          paused: item.consumer.paused,
          framesDecoded: entry.framesDecoded || 0,
          packetsReceived: entry.packetsReceived || 0,
          bytesReceived: entry.bytesReceived || 0,
          frameWidth: entry.frameWidth || 0,
          frameHeight: entry.frameHeight || 0,
        });
      }
    });
  }
  return rows;
}

main();
