// DOM for the consultation page: tiles, status, quality, buttons.
import { t } from './i18n.js';

export class Ui {
  constructor(root) {
    this.root = root;
    this.tiles = root.querySelector('#tiles');
    this.status = root.querySelector('#status');
    this.quality = root.querySelector('#quality');
    this.buttons = {
      mic: root.querySelector('#mic'),
      camera: root.querySelector('#camera'),
      screen: root.querySelector('#screen'),
      leave: root.querySelector('#leave'),
    };
  }

  setState(state) {
    this.status.dataset.state = state;
    this.status.textContent = t(`state.${state}`);
    const inCall = ['connected', 'reconnecting', 'connecting', 'waiting'].includes(state);
    for (const button of Object.values(this.buttons)) button.disabled = !inCall;
  }

  setQuality(level) {
    this.quality.dataset.quality = level;
    this.quality.textContent = t('quality', { level: t(`quality.${level}`) });
  }

  setToggle(name, on, labels) {
    const button = this.buttons[name];
    button.setAttribute('aria-pressed', String(on));
    button.textContent = on ? labels.onText : labels.offText;
    button.setAttribute('aria-label', on ? labels.onLabel : labels.offLabel);
  }

  // The active speaker's camera tile is outlined (one at a time; null: nobody).
  setSpeaker(peerId) {
    for (const tile of this.tiles.querySelectorAll('.tile[data-speaking="true"]')) {
      tile.dataset.speaking = 'false';
    }
    const tile = peerId ? this.tile(peerId, 'camera') : null;
    if (tile) tile.dataset.speaking = 'true';
  }

  tile(peerId, source) {
    const selector = `.tile[data-peer-id="${CSS.escape(peerId)}"][data-source="${source}"]`;
    return this.tiles.querySelector(selector);
  }

  ensureTile(peerId, source, caption, role) {
    let tile = this.tile(peerId, source);
    if (tile) return tile;
    tile = document.createElement('figure');
    tile.className = 'tile';
    tile.dataset.peerId = peerId;
    tile.dataset.source = source;
    tile.dataset.role = role || '';
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // audio plays through the tile's <audio> element
    tile.appendChild(video);
    const label = document.createElement('figcaption');
    label.textContent = caption;
    tile.appendChild(label);
    const muted = document.createElement('span');
    muted.className = 'muted-label';
    muted.textContent = t('tile.muted');
    tile.appendChild(muted);
    const away = document.createElement('span');
    away.className = 'reconnecting-label';
    away.textContent = t('tile.reconnecting');
    tile.appendChild(away);
    const off = document.createElement('span');
    off.className = 'paused-label';
    off.textContent = t(source === 'screen' ? 'tile.screenPaused' : 'tile.cameraOff');
    tile.appendChild(off);
    this.tiles.appendChild(tile);
    return tile;
  }

  captionFor(peer, source) {
    const name = peer.displayName || t('tile.participant');
    const role = peer.role ? ` (${t(`role.${peer.role}`)})` : '';
    return source === 'screen' ? t('tile.screenOf', { name }) : `${name}${role}`;
  }

  attachVideo(tile, track) {
    const video = tile.querySelector('video');
    video.srcObject = track ? new MediaStream([track]) : null;
    tile.dataset.hasVideo = String(Boolean(track));
  }

  attachAudio(tile, track, consumerId, producerId) {
    const audio = document.createElement('audio');
    audio.autoplay = true;
    audio.dataset.consumerId = consumerId;
    audio.dataset.producerId = producerId;
    audio.srcObject = new MediaStream([track]);
    tile.appendChild(audio);
  }

  removeAudio(consumerId) {
    const audio = this.tiles.querySelector(`audio[data-consumer-id="${CSS.escape(consumerId)}"]`);
    if (audio) {
      audio.srcObject = null;
      audio.remove();
    }
  }

  setPaused(tile, paused) {
    if (tile) tile.dataset.paused = String(paused);
  }

  removeTile(peerId, source) {
    const tile = this.tile(peerId, source);
    if (!tile) return;
    for (const media of tile.querySelectorAll('video, audio')) media.srcObject = null;
    tile.remove();
  }

  removePeer(peerId) {
    for (const tile of this.tiles.querySelectorAll(`.tile[data-peer-id="${CSS.escape(peerId)}"]`)) {
      for (const media of tile.querySelectorAll('video, audio')) media.srcObject = null;
      tile.remove();
    }
  }

  setReconnecting(peerId, reconnecting) {
    for (const tile of this.tiles.querySelectorAll(`.tile[data-peer-id="${CSS.escape(peerId)}"]`)) {
      tile.dataset.reconnecting = String(reconnecting);
    }
  }

  // One notice per subject (ourselves or a participant); an empty message removes it.
  showNotice(key, message) {
    const box = this.root.querySelector('#notices');
    let item = box.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (!message) {
      if (item) item.remove();
      return;
    }
    if (!item) {
      item = document.createElement('p');
      item.dataset.key = key;
      box.appendChild(item);
    }
    item.textContent = message;
  }

  showError(message) {
    const box = this.root.querySelector('#error');
    box.textContent = message;
    box.hidden = !message;
  }
}
