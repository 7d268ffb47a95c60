import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../core/clock.js';
import type { SipHeader, SipRequest } from '../sip/message.js';
import { MIN_SE, negotiateSessionTimer, SessionTimer, type SessionTimerTerms } from './session-timer.js';

function invite(headers: SipHeader[]): SipRequest {
  return { kind: 'request', method: 'INVITE', uri: 'sip:+15551230000@voxgate.test', version: 'SIP/2.0', headers, body: Buffer.alloc(0) };
}

const se = (value: string): SipHeader => ({ name: 'Session-Expires', value });
const SUPPORTED_TIMER: SipHeader = { name: 'Supported', value: 'timer' };

describe('negotiateSessionTimer (RFC 4028 §9, as the UAS)', () => {
  it('a request without Session-Expires asks for no timer', () => {
    assert.deepEqual(negotiateSessionTimer(invite([SUPPORTED_TIMER])), { kind: 'none' });
  });

  it('a Session-Expires that is not a number is no timer', () => {
    assert.deepEqual(negotiateSessionTimer(invite([se('soon')])), { kind: 'none' });
  });

  it('an interval below ours is too small: 422 with Min-SE 90', () => {
    assert.equal(MIN_SE, 90);
    assert.deepEqual(negotiateSessionTimer(invite([se('30'), SUPPORTED_TIMER])), { kind: 'too-small', minSe: 90 });
    assert.deepEqual(negotiateSessionTimer(invite([se('89')])), { kind: 'too-small', minSe: 90 });
  });

  it("§5: the UAC's Min-SE above ours raises the Min-SE of the 422", () => {
    assert.deepEqual(negotiateSessionTimer(invite([se('30'), { name: 'Min-SE', value: '120' }])), { kind: 'too-small', minSe: 120 });
    assert.deepEqual(negotiateSessionTimer(invite([se('30'), { name: 'Min-SE', value: '60' }])), { kind: 'too-small', minSe: 90 }, 'a lower one does not lower ours');
  });

  it('exactly 90 is agreed', () => {
    const st = negotiateSessionTimer(invite([se('90'), SUPPORTED_TIMER]));
    assert.equal(st.kind, 'agreed');
  });

  it('a UAC that supports timers refreshes, unless it asked us to; the answer requires timer', () => {
    assert.deepEqual(negotiateSessionTimer(invite([se('1800'), SUPPORTED_TIMER])), {
      kind: 'agreed',
      terms: { interval: 1800, refresher: 'uac' },
      headers: [se('1800;refresher=uac'), { name: 'Require', value: 'timer' }],
    });
    assert.deepEqual(negotiateSessionTimer(invite([se('1800;refresher=uac'), SUPPORTED_TIMER])), {
      kind: 'agreed',
      terms: { interval: 1800, refresher: 'uac' },
      headers: [se('1800;refresher=uac'), { name: 'Require', value: 'timer' }],
    });
    assert.deepEqual(negotiateSessionTimer(invite([se('1800;refresher=uas'), SUPPORTED_TIMER])), {
      kind: 'agreed',
      terms: { interval: 1800, refresher: 'uas' },
      headers: [se('1800;refresher=uas'), { name: 'Require', value: 'timer' }],
    });
  });

  it('timer is found in a Supported list of several options', () => {
    const st = negotiateSessionTimer(invite([se('600'), { name: 'Supported', value: 'replaces, timer, 100rel' }]));
    assert.equal(st.kind === 'agreed' && st.terms.refresher, 'uac');
  });

  it('a UAC without Supported: timer (a proxy added Session-Expires) leaves the refresh to us, and gets no Require: timer', () => {
    assert.deepEqual(negotiateSessionTimer(invite([se('90')])), {
      kind: 'agreed',
      terms: { interval: 90, refresher: 'uas' },
      headers: [se('90;refresher=uas')],
    });
    assert.deepEqual(negotiateSessionTimer(invite([se('1800;refresher=uac'), { name: 'Supported', value: 'replaces' }])), {
      kind: 'agreed',
      terms: { interval: 1800, refresher: 'uas' },
      headers: [se('1800;refresher=uas')],
    }, 'it cannot refresh what it does not support, whatever it wrote');
  });
});

/** A SessionTimer on a fake clock, and when each of its actions ran (ms after the start). */
function timer(terms: SessionTimerTerms): { clock: FakeClock; st: SessionTimer; refreshes: number[]; intervals: number[]; expiries: number[] } {
  const clock = new FakeClock(0);
  const refreshes: number[] = [];
  const intervals: number[] = [];
  const expiries: number[] = [];
  const st = new SessionTimer(clock, terms, {
    refresh: (interval) => {
      refreshes.push(clock.now());
      intervals.push(interval);
    },
    expired: () => expiries.push(clock.now()),
  });
  return { clock, st, refreshes, intervals, expiries };
}

describe('SessionTimer (RFC 4028 §10)', () => {
  it('as the refresher it refreshes at half the interval', () => {
    const { clock, st, refreshes, intervals, expiries } = timer({ interval: 90, refresher: 'uas' });
    assert.equal(st.ours, true);
    clock.advance(44_999);
    assert.deepEqual(refreshes, []);
    clock.advance(1);
    assert.deepEqual(refreshes, [45_000]);
    assert.deepEqual(intervals, [90], 'the refresh asks for the same interval');
    assert.deepEqual(expiries, []);
  });

  it('as the refresher whose refresh is never answered, the session expires before the interval is over', () => {
    const { clock, refreshes, expiries } = timer({ interval: 90, refresher: 'uas' });
    clock.advance(59_999);
    assert.deepEqual(expiries, []);
    clock.advance(1);
    // RFC 4028 §10: min(32 s, interval/3) before the interval is over.
    assert.deepEqual(expiries, [60_000]);
    assert.deepEqual(refreshes, [45_000], 'one refresh only');
    clock.advance(600_000);
    assert.deepEqual(expiries, [60_000], 'it expires once');
    assert.equal(clock.pending, 0);
  });

  it('as the refresher whose refresh was answered (refreshed()), the next refresh is half an interval later and nothing expires', () => {
    const { clock, st, refreshes, expiries } = timer({ interval: 90, refresher: 'uas' });
    clock.advance(45_000);
    clock.advance(200);
    st.refreshed();
    clock.advance(45_000);
    assert.deepEqual(refreshes, [45_000, 90_200]);
    st.refreshed();
    clock.advance(44_000);
    assert.deepEqual(expiries, []);
  });

  it('as the side that waits it expires at the interval minus min(32 s, a third of it), unless refreshed', () => {
    const short = timer({ interval: 90, refresher: 'uac' });
    assert.equal(short.st.ours, false);
    short.clock.advance(59_999);
    assert.deepEqual(short.expiries, []);
    short.clock.advance(1);
    assert.deepEqual(short.expiries, [60_000], '90 - min(32, 30)');
    assert.deepEqual(short.refreshes, [], 'the waiter never refreshes');

    const long = timer({ interval: 1800, refresher: 'uac' });
    long.clock.advance(1_767_999);
    assert.deepEqual(long.expiries, []);
    long.clock.advance(1);
    assert.deepEqual(long.expiries, [1_768_000], '1800 - min(32, 600)');
  });

  it('refreshed() starts the interval again, with the new terms if any', () => {
    const { clock, st, refreshes, expiries } = timer({ interval: 90, refresher: 'uac' });
    clock.advance(50_000);
    st.refreshed();
    clock.advance(59_999);
    assert.deepEqual(expiries, [], 'not at 60 s any more');
    clock.advance(1);
    assert.deepEqual(expiries, [110_000]);

    const changed = timer({ interval: 90, refresher: 'uac' });
    changed.clock.advance(10_000);
    changed.st.refreshed({ interval: 120, refresher: 'uas' });
    assert.equal(changed.st.ours, true);
    assert.deepEqual(changed.st.terms, { interval: 120, refresher: 'uas' });
    changed.clock.advance(60_000);
    assert.deepEqual(changed.refreshes, [70_000], 'now ours to refresh, at half of 120 s');
    assert.deepEqual(changed.intervals, [120]);
    assert.deepEqual(changed.expiries, []);
    assert.deepEqual(refreshes, []);
  });

  it('stop() prevents every refresh and expiry, also a later refreshed()', () => {
    for (const refresher of ['uac', 'uas'] as const) {
      const { clock, st, refreshes, expiries } = timer({ interval: 90, refresher });
      clock.advance(10_000);
      st.stop();
      assert.equal(clock.pending, 0, 'its timer is cleared');
      st.refreshed();
      assert.equal(clock.pending, 0, 'refreshed() after stop() arms nothing');
      clock.advance(1_000_000);
      assert.deepEqual({ refreshes, expiries }, { refreshes: [], expiries: [] }, refresher);
    }
  });

  it('stop() after the refresh went out prevents the expiry that would follow it', () => {
    const { clock, st, refreshes, expiries } = timer({ interval: 90, refresher: 'uas' });
    clock.advance(45_000);
    assert.deepEqual(refreshes, [45_000]);
    st.stop();
    clock.advance(100_000);
    assert.deepEqual(expiries, []);
    assert.equal(clock.pending, 0);
  });
});
