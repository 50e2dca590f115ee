// Quality indicator from the page's own WebRTC stats (pure functions).
//
// Thresholds follow the product's fallback ladder: RTT above 300 ms or loss
// above 2% degrades the call; RTT above 500 ms or loss above 5% makes it poor.

export const THRESHOLDS = {
  degraded: { roundTripTime: 0.3, lossRatio: 0.02, jitter: 0.03 },
  poor: { roundTripTime: 0.5, lossRatio: 0.05, jitter: 0.1 },
};

// Loss ratio of an interval from cumulative counters.
export function lossRatio(lostDelta, receivedDelta) {
  const total = lostDelta + receivedDelta;
  if (!(total > 0) || lostDelta <= 0) return 0;
  return lostDelta / total;
}

// report: {connection: {roundTripTime}, streams: [{roundTripTime, jitter, lossRatio}]}
export function classify(report) {
  const rtts = [report.connection && report.connection.roundTripTime]
    .concat(report.streams.map((s) => s.roundTripTime))
    .filter((v) => typeof v === 'number');
  const worst = {
    roundTripTime: rtts.length ? Math.max(...rtts) : 0,
    lossRatio: Math.max(0, ...report.streams.map((s) => s.lossRatio || 0)),
    jitter: Math.max(0, ...report.streams.map((s) => s.jitter || 0)),
  };
  const over = (limits) => Object.keys(limits).some((key) => worst[key] > limits[key]);
  if (over(THRESHOLDS.poor)) return 'poor';
  if (over(THRESHOLDS.degraded)) return 'degraded';
  return 'good';
}

// Bitrate in bits per second between two samples of a byte counter.
export function bitrate(bytesNow, bytesBefore, msNow, msBefore) {
  const seconds = (msNow - msBefore) / 1000;
  if (!(seconds > 0) || !(bytesNow >= bytesBefore)) return 0;
  return Math.round(((bytesNow - bytesBefore) * 8) / seconds);
}
