import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRtp, type RtpPacket } from './packet.js';
import { buildReceiverReport, buildSenderReport, ntpFromMs, ntpMiddle, parseRtcp, type ReportBlock } from './rtcp.js';
import { RtpSession } from './rtp-session.js';

const T0 = 1_700_000_000_000;
const OUT = { ssrc: 0x1234_5678, cname: 'voxgate@test' };

function far(seq: number, timestamp: number, ssrc = 0xfeed): RtpPacket {
  return { marker: false, payloadType: 0, sequenceNumber: seq, timestamp, ssrc, csrcs: [], extension: undefined, payload: Buffer.alloc(160) };
}

function block(over: Partial<ReportBlock>): ReportBlock {
  return { ssrc: OUT.ssrc, fractionLost: 0, cumulativeLost: 0, highestSeq: 0, jitter: 0, lsr: 0, dlsr: 0, ...over };
}

test('our packets: our SSRC, sequence numbers +1 wrapping at 16 bits, the timestamp given, counted once the transport took them', () => {
  const s = new RtpSession(8000, OUT);
  assert.equal(s.seqUsed, false);
  s.seq = 0xfffe;
  const pkts = [0, 1, 2].map((i) => parseRtp(s.packet(0, Buffer.alloc(160, i), i === 0, 1000 + 160 * i)));
  assert.deepEqual(
    pkts.map((p) => [p.ssrc, p.sequenceNumber, p.timestamp, p.marker]),
    [
      [OUT.ssrc, 0xfffe, 1000, true],
      [OUT.ssrc, 0xffff, 1160, false],
      [OUT.ssrc, 0, 1320, false],
    ],
  );
  assert.equal(s.lastSentTs, 1320);
  assert.equal(s.seqUsed, true);
  assert.equal(s.sentAny, false, 'built is not sent');
  s.sent(160);
  s.sent(80);
  assert.deepEqual([s.packetsSent, s.octetsSent, s.sentAny], [2, 240, true]);
});

test('a random start: two sessions do not begin at the same sequence number and timestamp (RFC 3550 §5.1)', () => {
  const a = new RtpSession(8000, OUT);
  const b = new RtpSession(8000, OUT);
  assert.ok(a.seq >= 0 && a.seq <= 0xffff && a.ts >= 0 && a.ts <= 0xffffffff, 'in range');
  assert.ok(a.seq !== b.seq || a.ts !== b.ts, 'random');
});

test('the far end\'s stream: extended sequence numbers and timestamps across their wrap, loss counted', () => {
  const s = new RtpSession(8000, OUT);
  const got = [
    [65534, 4_294_967_000],
    [65535, 4_294_967_160],
    [1, 24], // 0 was lost; the timestamp wrapped
    [2, 184],
  ].map(([seq, ts]) => {
    s.received(far(seq!, ts!), T0);
    return { seq: s.receivedSeq, ts: s.receivedTs };
  });
  assert.deepEqual(got, [
    { seq: 65534, ts: 4_294_967_000 },
    { seq: 65535, ts: 4_294_967_160 },
    { seq: 65537, ts: 4_294_967_320 },
    { seq: 65538, ts: 4_294_967_480 },
  ]);
  assert.equal(s.remoteSsrc, 0xfeed);
  assert.equal(s.stats.received, 4);
  assert.equal(s.stats.lost, 1);
});

test('resetRemote(): a new far-end stream starts its own sequence space and statistics', () => {
  const s = new RtpSession(8000, OUT);
  s.received(far(100, 1000), T0);
  s.received(far(101, 1160), T0 + 20);
  s.rttMs = 42;
  s.resetRemote();
  assert.deepEqual([s.remoteSsrc, s.stats.received, s.rttMs], [0, 0, undefined]);
  s.received(far(40_000, 9, 0xbeef), T0 + 40);
  assert.deepEqual([s.receivedSeq, s.receivedTs], [40_000, 9], 'not extended against the old stream');
  assert.equal(s.stats.lost, 0);
});

test('report(): an RR before we sent (with a block once we received), an SR with our counts after', () => {
  const s = new RtpSession(8000, OUT);
  const [rr, sdes] = parseRtcp(s.report(T0));
  assert.deepEqual(rr, { type: 'rr', ssrc: OUT.ssrc, reports: [] }, 'nothing received: no report block');
  assert.deepEqual(sdes, { type: 'other', packetType: 202 }, 'every compound packet carries its CNAME (RFC 3550 §6.5)');
  for (let i = 0; i < 10; i++) if (i !== 4) s.received(far(500 + i, 160 * i), T0 + 20 * i);
  const [rr2] = parseRtcp(s.report(T0 + 200));
  assert.equal(rr2!.type, 'rr');
  if (rr2!.type !== 'rr') return;
  assert.deepEqual(
    { ssrc: rr2.reports[0]!.ssrc, lost: rr2.reports[0]!.cumulativeLost, highest: rr2.reports[0]!.highestSeq, fraction: rr2.reports[0]!.fractionLost },
    { ssrc: 0xfeed, lost: 1, highest: 509, fraction: Math.floor(256 / 10) },
  );
  s.ts = 777_000;
  s.packet(0, Buffer.alloc(160), false, 776_840);
  s.sent(160);
  const now = T0 + 5000;
  const [sr] = parseRtcp(s.report(now));
  assert.equal(sr!.type, 'sr');
  if (sr!.type !== 'sr') return;
  const ntp = ntpFromMs(now);
  assert.deepEqual(sr.sender, { ntpSec: ntp.sec, ntpFrac: ntp.frac, rtpTimestamp: 777_000, packets: 1, octets: 160 });
  assert.equal(sr.reports[0]!.fractionLost, 0, 'nothing lost since the last report');
});

test('receivedRtcp(): the far end\'s SR times our LSR/DLSR; its block about us gives the RTT, blocks about others do not', () => {
  const s = new RtpSession(8000, OUT);
  s.received(far(1, 0), T0);
  // The far end's SR arrives at T0 + 1000; we report 250 ms later.
  const theirs = ntpFromMs(T0 + 990);
  s.receivedRtcp(buildSenderReport(0xfeed, 'far', { ntpSec: theirs.sec, ntpFrac: theirs.frac, rtpTimestamp: 0, packets: 1, octets: 160 }, []), T0 + 1000);
  const [rr] = parseRtcp(s.report(T0 + 1250));
  assert.equal(rr!.type, 'rr');
  if (rr!.type !== 'rr') return;
  assert.equal(rr.reports[0]!.lsr, ntpMiddle(theirs.sec, theirs.frac));
  assert.equal(rr.reports[0]!.dlsr, Math.round(0.25 * 65536));
  // Our SR went out at T0 + 2000; they held it 500 ms; their RR arrives at T0 + 2560: RTT 60 ms.
  const ours = ntpFromMs(T0 + 2000);
  const lsr = ntpMiddle(ours.sec, ours.frac);
  s.receivedRtcp(buildReceiverReport(0xfeed, 'far', [block({ ssrc: 0x999, lsr, dlsr: 32768 })]), T0 + 2560);
  assert.equal(s.rttMs, undefined, 'a block about another source');
  s.receivedRtcp(buildReceiverReport(0xfeed, 'far', [block({ lsr: 0 })]), T0 + 2560);
  assert.equal(s.rttMs, undefined, 'no SR of ours seen yet (LSR 0)');
  s.receivedRtcp(buildReceiverReport(0xfeed, 'far', [block({ lsr, dlsr: 32768 })]), T0 + 2560);
  assert.ok(Math.abs(s.rttMs! - 60) < 0.1, `RTT ${s.rttMs}`);
  // A block about us in their SR counts too.
  s.receivedRtcp(buildSenderReport(0xfeed, 'far', { ntpSec: 0, ntpFrac: 0, rtpTimestamp: 0, packets: 0, octets: 0 }, [block({ lsr, dlsr: 32768 })]), T0 + 2600);
  assert.ok(Math.abs(s.rttMs! - 100) < 0.1, `RTT ${s.rttMs}`);
  // Something that is not RTCP changes nothing.
  s.receivedRtcp(Buffer.from('hello, world'), T0 + 3000);
  assert.ok(Math.abs(s.rttMs! - 100) < 0.1, 'unchanged');
});
