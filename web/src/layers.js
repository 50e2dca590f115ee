// Simulcast on the page: the camera is sent in the three layers the server names
// (mediaProfile.simulcastEncodings) once the room holds more than two people or the
// call type asks for it, and the page tells the server how large it shows each
// remote video so the server can pick the layer each one needs.

const REPORT_DELAY_MS = 300;

// Encodings for a video producer of `source` under `profile`.
export function videoEncodings(profile, source) {
  const networkPriority = profile.priority === 'high' ? 'high' : 'low';
  if (source === 'camera' && profile.simulcast && profile.simulcastEncodings) {
    return profile.simulcastEncodings.map((layer) => ({
      ...layer,
      maxFramerate: profile.frameRate,
      networkPriority,
    }));
  }
  return [{ maxBitrate: profile.videoBitrateMax, maxFramerate: profile.frameRate, networkPriority }];
}

function layered(producer) {
  return producer.rtpParameters.encodings.length > 1;
}

// The server said the room now needs layers (or a resume ack did): send the camera
// again with them.  The new producer takes over the old one on the server
// (`replaces`), so those watching switch with no gap in between.
export async function adoptProfile(call, changes) {
  call.profile = { ...call.profile, ...changes };
  const camera = call.producers.get('camera');
  const track = call.localTracks.get('camera');
  if (!call.profile.simulcast || !camera || camera.closed || layered(camera) || !track) return;
  const paused = camera.paused;
  await call.produceTrack('camera', track, { replaces: camera.id, paused });
  camera.close();
}

// Reports {consumerId, width, height} of every remote video tile, in device pixels
// (0 while the page is hidden), whenever sizes change.
export class TileReporter {
  constructor(call, container) {
    this.call = call;
    this.container = container;
    this.last = '';
    this.timer = null;
    this.observer = new ResizeObserver(() => this.schedule());
    document.addEventListener('visibilitychange', () => this.schedule());
  }

  watch(video) {
    this.observer.observe(video);
    this.schedule();
  }

  forget(video) {
    this.observer.unobserve(video);
    this.schedule();
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.report(), REPORT_DELAY_MS);
  }

  sizes() {
    const scale = window.devicePixelRatio || 1;
    const hidden = document.visibilityState === 'hidden';
    const tiles = [];
    for (const tile of this.container.querySelectorAll('.tile[data-consumer-id]')) {
      if (tile.classList.contains('local')) continue;
      const video = tile.querySelector('video');
      const shown = !hidden && video && video.srcObject;
      tiles.push({
        consumerId: tile.dataset.consumerId,
        width: shown ? Math.round(video.clientWidth * scale) : 0,
        height: shown ? Math.round(video.clientHeight * scale) : 0,
      });
    }
    return tiles;
  }

  // Also called after a resume: the server of a new connection starts afresh.
  async report(force = false) {
    if (!this.call.joined || this.call.waiting) return;
    const tiles = this.sizes();
    const key = JSON.stringify(tiles);
    if (!tiles.length || (key === this.last && !force)) return;
    this.last = key;
    try {
      await this.call.request('reportTileSizes', { tiles });
    } catch (error) {
      this.last = ''; // try again at the next change
    }
  }
}
