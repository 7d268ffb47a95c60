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
import type { Call } from '../call/call.js';
import type { MediaRuntime } from '../media/endpoint.js';
import type { PartyDialog, PartyDialogState } from '../sip-calls/party-dialog.js';
import { CallRouter } from '../sip-calls/router.js';
import { header, type SipRequest, type SipResponse } from '../sip/message.js';
import { Proxy } from '../sip/proxy.js';
import { FakeTransportFactory, fakeSdp, type FakeNegotiatedTransport } from '../transport/fake.js';
import type { SendStream } from '../transport/media-transport.js';
import { planAnswer, type AnswerPlan } from '../sdp/codec-policy.js';
import { parseSdp } from '../sdp/sdp.js';
import { FarEnd, registerWithDigest, settle, testStack, type TestStack } from './sip.js';

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

/**
 * A FakeTransportFactory whose answers and offers can be held: while `holding`, answer() and
 * offer() wait until release(), as a WebRTC stack still gathering candidates would (a CANCEL,
 * a BYE can then arrive while the call is being set up).
 */
export class HeldTransportFactory extends FakeTransportFactory {
  holding = false;
  readonly #waiting: (() => void)[] = [];

  /** Answers and offers waiting for release(). */
  get held(): number {
    return this.#waiting.length;
  }

  override async answer(id: string, offerSdp: string, plan: AnswerPlan, out?: SendStream): Promise<FakeNegotiatedTransport> {
    if (this.holding) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    return super.answer(id, offerSdp, plan, out);
  }

  override async offer(id: string, plan: AnswerPlan, out?: SendStream): Promise<FakeNegotiatedTransport> {
    if (this.holding) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    return super.offer(id, plan, out);
  }

  /** The held answers and offers go ahead, and later ones are not held. */
  release(): void {
    this.holding = false;
    for (const go of this.#waiting.splice(0)) go();
  }
}

export interface SipCallsHarness extends TestStack {
  router: CallRouter;
  calls: CallTable;
  agent: TestAgent;
  transports: HeldTransportFactory;
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
  const transports = new HeldTransportFactory();
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
      await registerWithDigest(far, user, PASSWORDS[user]);
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

/** What a browser answers to our offer: the same codec, a WebRTC-shaped answer. */
export function browserAnswer(invite: SipRequest): string {
  const plan = planAnswer(parseSdp(invite.body.toString()), { codecs: ['opus', 'pcmu', 'pcma', 'g722'], allowSendRecv: true, role: 'ingest' });
  return fakeSdp(plan, 'active', 'browser-answer');
}

/** A browser's call to the agent, answered 200 (and ACKed unless `ack: false`). */
export interface AgentCall {
  far: FarEnd;
  invite: SipRequest;
  ok: SipResponse;
  call: Call;
  /** The dialog that carries the caller. */
  dialog: PartyDialog;
  /** The caller's media transport. */
  transport: FakeNegotiatedTransport;
}

export async function agentCall(h: SipCallsHarness, user: 'alice' | 'bob' | 'carol' = 'alice', opts: { ack?: boolean; far?: FarEnd } = {}): Promise<AgentCall> {
  const far = opts.far ?? (await h.browser(user));
  const made = h.transports.made.length;
  // ICE cannot connect before the browser has our answer: the transport connects after the 200.
  const connect = h.transports.connect;
  h.transports.connect = false;
  const invite = h.call(far, 'agent');
  await settle();
  h.transports.connect = connect;
  const ok = far.take().find((m): m is SipResponse => m.kind === 'response' && m.status === 200);
  if (!ok) throw new Error('the INVITE to the agent was not answered 200');
  const call = h.calls.get(h.agent.last.session.callId)!;
  const dialog = h.router.ctx.dialogs.current(call)!;
  const transport = h.transports.made[made]!;
  transport.connect();
  if (opts.ack !== false) {
    far.callerRequest('ACK', invite, ok);
    await settle();
  }
  return { far, invite, ok, call, dialog, transport };
}

/**
 * The states a PartyDialog moves through from now on. It has no state event, so its
 * transition() (which every move goes through) is observed on this one instance.
 */
export function recordStates(d: PartyDialog): PartyDialogState[] {
  const seen: PartyDialogState[] = [d.state];
  const transition = d.transition.bind(d);
  d.transition = (to) => {
    transition(to);
    if (seen.at(-1) !== d.state) seen.push(d.state);
  };
  return seen;
}
