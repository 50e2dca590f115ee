'use strict';

// Router codecs per media profile (call type).  The control plane names the
// profile when it creates a router; bitrate caps and capture constraints live
// with the control plane's media profiles.
//
// mediasoup 3.12 has no H.265: the specialist profile offers VP9 and H.264.

const OPUS = {
  kind: 'audio',
  mimeType: 'audio/opus',
  clockRate: 48000,
  channels: 2,
  parameters: { useinbandfec: 1, usedtx: 0 },
};

const VP8 = {
  kind: 'video',
  mimeType: 'video/VP8',
  clockRate: 90000,
  parameters: { 'x-google-start-bitrate': 1000 },
};

const VP9 = {
  kind: 'video',
  mimeType: 'video/VP9',
  clockRate: 90000,
  parameters: { 'profile-id': 0, 'x-google-start-bitrate': 1000 },
};

const H264 = {
  kind: 'video',
  mimeType: 'video/H264',
  clockRate: 90000,
  parameters: {
    'packetization-mode': 1,
    'profile-level-id': '42e01f',
    'level-asymmetry-allowed': 1,
    'x-google-start-bitrate': 1000,
  },
};

const PROFILES = {
  consultation: [OPUS, VP8, VP9, H264],
  follow_up: [OPUS, VP8, VP9, H264],
  mental_health: [OPUS, VP8, VP9, H264],
  second_opinion: [OPUS, VP8, VP9, H264],
  // Emergency: VP8 only, the cheapest codec every client decodes in hardware or software.
  emergency: [OPUS, VP8],
  specialist: [OPUS, VP9, H264, VP8],
  group_therapy: [OPUS, VP8, VP9, H264],
};

function codecsForProfile(name) {
  const codecs = PROFILES[name];
  if (!codecs) return null;
  // Deep copy: mediasoup may annotate the objects it is given.
  return JSON.parse(JSON.stringify(codecs));
}

module.exports = { codecsForProfile, PROFILE_NAMES: Object.keys(PROFILES) };
