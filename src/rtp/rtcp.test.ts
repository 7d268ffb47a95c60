import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReceiverStats, rttFromReport } from './receiver-stats.js';
import { buildReceiverReport, buildSenderReport, ntpFromMs, ntpMiddle, parseRtcp } from './rtcp.js';

test('RR and SR round-trip through the parser, with SDES CNAME appended (RFC 3550 §6.1)', () => {
  const block = { ssrc: 0xabc, fractionLost: 25, cumulativeLost: -3, highestSeq: 70000, jitter: 123, lsr: 0x12345678, dlsr: 65536 };
  const rr = parseRtcp(buildReceiverReport(1, 'vg', [block]));
  assert.equal(rr.length, 2);
  assert.deepEqual(rr[0], { type: 'rr', ssrc: 1, reports: [block] });
  assert.deepEqual(rr[1], { type: 'other', packetType: 202 });
  const sender = { ntpSec: 3900000000, ntpFrac: 0x80000000, rtpTimestamp: 960, packets: 10, octets: 800 };
  const [sr] = parseRtcp(buildSenderReport(2, 'vg', sender, []));
  assert.deepEqual(sr, { type: 'sr', ssrc: 2, sender, reports: [] });
});

test('reception statistics: loss from sequence gaps, fraction per interval, jitter per RFC 3550 A.8', () => {
  const s = new ReceiverStats(8000);
  // 100 packets, 20 ms apart, every tenth missing, arriving on time.
  for (let seq = 0; seq < 100; seq++) if (seq % 10 !== 5) s.record(1000 + seq, seq * 160, seq * 20);
  assert.equal(s.expected, 100);
  assert.equal(s.lost, 10);
  assert.equal(s.lossPercent, 10);
  assert.equal(s.jitterMs, 0);
  const b = s.reportBlock(7, 2000);
  assert.equal(b.fractionLost, Math.floor((10 << 8) / 100));
  assert.equal(b.cumulativeLost, 10);
  assert.equal(b.highestSeq, 1099);
  assert.equal(s.reportBlock(7, 2100).fractionLost, 0, 'nothing new lost in the next interval');
  const j = new ReceiverStats(8000);
  for (let seq = 0; seq < 400; seq++) j.record(seq, seq * 160, seq * 20 + (seq % 2) * 10);
  assert.ok(Math.abs(j.jitterMs - 10) < 0.5, `alternating 10 ms delay: jitter ${j.jitterMs.toFixed(2)} ms`);
});

test('RTT from a report block: A - LSR - DLSR', () => {
  const srSentAt = 1_700_000_000_000;
  const n = ntpFromMs(srSentAt);
  const lsr = ntpMiddle(n.sec, n.frac);
  // The far end held our SR 50 ms, and the network took 30 ms in all.
  const rtt = rttFromReport({ ssrc: 1, fractionLost: 0, cumulativeLost: 0, highestSeq: 0, jitter: 0, lsr, dlsr: Math.round(0.05 * 65536) }, srSentAt + 80);
  assert.ok(rtt !== undefined && Math.abs(rtt - 30) < 1, `rtt ${rtt}`);
  assert.equal(rttFromReport({ ssrc: 1, fractionLost: 0, cumulativeLost: 0, highestSeq: 0, jitter: 0, lsr: 0, dlsr: 0 }, srSentAt), undefined);
});
