// Unit tests of the page's quality classifier (node --test).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { bitrate, classify, lossRatio } from '../src/quality.js';

const stream = (fields) => ({ roundTripTime: 0.02, jitter: 0.005, lossRatio: 0, ...fields });

test('a clean call is good', () => {
  assert.equal(classify({ connection: { roundTripTime: 0.02 }, streams: [stream({})] }), 'good');
});

test('no stats yet counts as good, not poor', () => {
  assert.equal(classify({ connection: {}, streams: [] }), 'good');
});

test('RTT past 300 ms degrades, past 500 ms is poor', () => {
  assert.equal(classify({ connection: { roundTripTime: 0.35 }, streams: [] }), 'degraded');
  assert.equal(classify({ connection: {}, streams: [stream({ roundTripTime: 0.6 })] }), 'poor');
});

test('loss past 2% degrades, past 5% is poor', () => {
  assert.equal(classify({ connection: {}, streams: [stream({ lossRatio: 0.03 })] }), 'degraded');
  assert.equal(classify({ connection: {}, streams: [stream({ lossRatio: 0.1 })] }), 'poor');
});

test('the worst stream decides', () => {
  const report = { connection: { roundTripTime: 0.01 }, streams: [stream({}), stream({ jitter: 0.2 })] };
  assert.equal(classify(report), 'poor');
});

test('loss ratio and bitrate from counters', () => {
  assert.equal(lossRatio(5, 95), 0.05);
  assert.equal(lossRatio(0, 0), 0);
  assert.equal(lossRatio(-2, 100), 0); // RTCP duplicates can make loss negative
  assert.equal(bitrate(250000, 0, 2000, 0), 1000000);
  assert.equal(bitrate(100, 200, 2000, 1000), 0); // counter reset
});
