/**
 * Test support (imported by *.test.ts only): the whole SIP call layer (stack, call router,
 * agent UAS, transfers, referrals, proxy) on a fake SIP transport, fake media transports and a
 * fake clock that drives both the signalling timers and the 20 ms media ticks.
 */
import type { Agent, AgentSession } from '../agent/agent.js';
import { CodecPool } from '../audio/codec-pool.js';
import { FrameClock } from '../audio/frame-clock.js';
import { CallTable } from '../call/call-table.js';
import type { SourceConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import type { MediaRuntime } from '../media/endpoint.js';
import { CallRouter } from '../sip-calls/router.js';
import { header, type SipRequest, type SipResponse } from '../sip/message.js';
import { Proxy } from '../sip/proxy.js';
import { FakeTransportFactory, fakeSdp } from '../transport/fake.js';
import type { AnswerPlan } from '../sdp/codec-policy.js';
import { digestAnswer, FarEnd, settle, testStack, type TestStack } from './sip.js';

/** An agent that records what it gets and can be told what to do. */
export class TestAgent implements Agent {
  readonly name = 'test';
  readonly sessions: { session: AgentSession; digits: string[]; frames: number; ended?: string; transferredTo?: string; messages: unknown[] }[] = [];
  constructor(readonly sampleRate: 8000 | 16000 | 24000 | 48000 = 16000) {}
  attach(session: AgentSession): void {
    const entry: TestAgent['sessions'][number] = { session, digits: [], frames: 0, messages: [] };
    this.sessions.push(entry);
    session.on('dtmf', (d) => entry.digits.push(d));
    session.on('frame', () => entry.frames++);
    session.on('message', (m) => entry.messages.push(m));
    session.on('transferred', (to) => (entry.transferredTo = to));
    session.on('ended', (r) => (entry.ended = r));
  }
  get last(): TestAgent['sessions'][number] {
    const s = this.sessions.at(-1);
    if (!s) throw new Error('no agent session yet');
    return s;
  }
}

export interface SipCallsHarness extends TestStack {
  router: CallRouter;
  calls: CallTable;
  agent: TestAgent;
  transports: FakeTransportFactory;
  runtime: MediaRuntime;
  /** A browser on a new flow, registered as `user` (a real REGISTER with digest). */
  browser(user: 'alice' | 'bob' | 'carol'): Promise<FarEnd>;
  /** `from` calls `sip:<to>@voxgate.test` with a WebRTC-shaped Opus offer; returns its INVITE. */
  call(from: FarEnd, to?: string, opts?: { sdp?: string; headers?: { name: string; value: string }[] }): SipRequest;
  close(): void;
}

export const PASSWORDS = { alice: 'alice-secret', bob: 'bob-secret', carol: 'carol-secret' } as const;

/** An offer from a browser: Opus and telephone-event, sendrecv. */
export function browserOffer(codec: 'opus' | 'pcmu' | 'g722' = 'opus'): string {
  const plan: AnswerPlan = {
    audio: {
      mid: '0',
      codec,
      payloadType: codec === 'opus' ? 111 : codec === 'pcmu' ? 0 : 9,
      clockRate: codec === 'opus' ? 48000 : 8000,
      channels: codec === 'opus' ? 2 : 1,
      fmtp: undefined,
      telephoneEvent: { payloadType: 101, clockRate: codec === 'opus' ? 48000 : 8000 },
      direction: 'sendrecv',
      offered: 'sendrecv',
    },
    inactive: [],
    hasDataChannel: false,
  };
  return fakeSdp(plan, 'actpass', `browser-${codec}`);
}

export function harness(opts: { maxSessions?: number; agents?: Record<string, SourceConfig['agent']>; maxCalls?: Record<string, number> } = {}): SipCallsHarness {
  const stack = testStack({
    sip: {
      domain: 'voxgate.test',
      users: Object.entries(PASSWORDS).map(([user, password]) => ({ user, password, ...(opts.maxCalls?.[user] ? { maxCalls: opts.maxCalls[user] } : {}) })),
    },
  });
  const { clock, sip } = stack;
  const log = createLogger(process.env.VOXGATE_TEST_LOG ? 'debug' : 'silent');
  const calls = new CallTable({ maxSessions: opts.maxSessions ?? 10, retryAfterSeconds: 5, now: () => clock.now() });
  const codecs = new CodecPool(0);
  const runtime: MediaRuntime = { clock, frameClock: new FrameClock(clock, (err) => { throw err; }), codecs, maxJitterMs: 200 };
  const transports = new FakeTransportFactory();
  const agent = new TestAgent();
  const router = new CallRouter(
    {
      sip,
      calls,
      runtime,
      clock,
      log,
      idleTimeoutMs: 600_000,
      resolveAgent: () => agent,
      transports,
      domain: 'voxgate.test',
      maxCalls: new Map(Object.entries(opts.maxCalls ?? {})),
    },
    opts.agents ?? {},
    new Proxy(sip, log),
  );
  sip.calls = router;
  return {
    ...stack,
    router,
    calls,
    agent,
    transports,
    runtime,
    async browser(user) {
      const far = new FarEnd(stack.transport.connect(), user);
      const reg = (auth?: string) =>
        far.send('REGISTER', 'sip:voxgate.test', [
          { name: 'To', value: `<sip:${user}@voxgate.test>` },
          { name: 'From', value: `<sip:${user}@voxgate.test>;tag=${far.tag}` },
          { name: 'Call-ID', value: `reg-${far.tag}` },
          { name: 'Contact', value: `${far.contact};expires=600` },
          ...(auth ? [{ name: 'Authorization', value: auth }] : []),
        ]);
      reg();
      await settle();
      const challenge = far.next<SipResponse>('401');
      const md5 = challenge.headers.filter((h) => h.name === 'WWW-Authenticate').at(-1)!.value;
      reg(digestAnswer(md5, user, PASSWORDS[user], 'REGISTER', 'sip:voxgate.test'));
      await settle();
      const ok = far.next<SipResponse>('200');
      if (ok.status !== 200) throw new Error(`REGISTER answered ${ok.status}`);
      return far;
    },
    call(from, to = 'agent', o = {}) {
      return from.send(
        'INVITE',
        `sip:${to}@voxgate.test`,
        [
          { name: 'From', value: `<sip:${from.user}@voxgate.test>;tag=${from.tag}` },
          { name: 'To', value: `<sip:${to}@voxgate.test>` },
          { name: 'Call-ID', value: `call-${from.tag}-${Math.random().toString(36).slice(2, 8)}` },
          { name: 'Contact', value: from.contact },
          { name: 'Supported', value: 'timer' },
          { name: 'Session-Expires', value: '90' },
          { name: 'Content-Type', value: 'application/sdp' },
          ...(o.headers ?? []),
        ],
        o.sdp ?? browserOffer(),
      );
    },
    close() {
      for (const c of [...calls.values()]) c.close('shutdown');
      stack.close();
      void codecs.stop();
    },
  };
}

/** The status line numbers of what a far end got, responses only (after the async setup has run). */
export async function statuses(far: FarEnd): Promise<number[]> {
  await settle();
  return far.take().flatMap((m) => (m.kind === 'response' ? [m.status] : []));
}

export { header, settle };
