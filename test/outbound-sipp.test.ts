import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { Agent, AgentSession } from '../src/agent/agent.js';
import { encodeG711 } from '../src/audio/g711.js';
import { concatPcm, tone, toneShare } from '../src/audio/test-signals.js';
import type { OutboundCallState, OutboundCallView, TrunkView } from '../src/call/outbound-types.js';
import type { ConfigInput } from '../src/core/config.js';
import { ADMIN_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { onCleanup } from './helpers/cleanup.js';
import { sipBody, sipHeader, sippWire, SIPP_EXIT, startSipp, type SippOptions, type SippProcess, type SippResult, type SippWireMessage } from './helpers/sipp.js';

/**
 * Calls voxgate places (`POST /api/calls`, src/sip-calls/outbound-calls.ts) through a trunk
 * (src/sip-calls/trunk/outbound.ts) to SIPp playing the carrier, and the trunk's registration
 * with SIPp as its registrar (src/sip-calls/trunk/registration.ts). Each test asserts on what
 * SIPp logged on the wire (-trace_msg) and on what the HTTP API says (GET /api/calls/{id},
 * GET /api/trunks), and, where media flows, on the audio the agent heard.
 */

const CALLEE = '+15557654321';
const CALLER_ID = '+15551230000';
const ACCOUNT = 'acct-123';
const PASSWORD = 'secret';
const CARRIER_DOMAIN = 'carrier.test';
/** What the probe agent plays (and hears again through SIPp's -rtp_echo). */
const AGENT_HZ = 700;
/** What the carrier plays as early media (rtp_stream of a µ-law file). */
const CARRIER_HZ = 1000;
const RATE = 8000;

// ---------------------------------------------------------------------------------------------
// The agent.

interface HeardFrame {
  at: number;
  samples: Int16Array;
}

interface ProbeSession {
  session: AgentSession;
  attachedAt: number;
  frames: HeardFrame[];
  ended: string | undefined;
}

/** An in-process agent that plays a tone when attached (if told to) and keeps what it hears. */
class ProbeAgent implements Agent {
  readonly name = 'probe';
  readonly sampleRate = RATE;
  readonly sessions: ProbeSession[] = [];

  constructor(private readonly toneSeconds = 0) {}

  attach(session: AgentSession): void {
    const s: ProbeSession = { session, attachedAt: Date.now(), frames: [], ended: undefined };
    this.sessions.push(s);
    session.on('frame', (f) => s.frames.push({ at: Date.now(), samples: f.samples.slice() }));
    session.on('ended', (reason) => (s.ended = reason));
    if (this.toneSeconds > 0) session.play(tone(AGENT_HZ, RATE, RATE * this.toneSeconds, 12000));
  }
}

// ---------------------------------------------------------------------------------------------
// Per-test cleanups, last registered first (SIPp after the gateway that calls it: the gateway's
// BYE or un-REGISTER then still has somewhere to go), whatever order node:test runs hooks in.


async function carrier(t: TestContext, opts: SippOptions): Promise<SippProcess> {
  const p = await startSipp(opts);
  onCleanup(t, () => p.stop());
  return p;
}

type OutboundConfig = NonNullable<NonNullable<NonNullable<NonNullable<ConfigInput['sip']>['trunks']>[number]['outbound']>>;

interface OutboundGateway {
  tg: TestGateway;
  /** Every state the call service reported, per call id, consecutive repeats dropped. */
  states: Map<string, OutboundCallState[]>;
}

/** A gateway with trunk carrier-a toward the given SIPp ports (in order), +1 routed to it. */
async function startOutboundGateway(t: TestContext, ports: number[], agent: Agent, extra: Partial<OutboundConfig> = {}): Promise<OutboundGateway> {
  const tg = await startGateway(
    {
      sip: {
        listen: [{ transport: 'udp', host: '127.0.0.1', port: 0 }],
        rtp: { portMin: 35000, portMax: 35199 },
        trunks: [
          {
            name: 'carrier-a',
            codecs: ['pcmu'],
            outbound: {
              address: ports.map((p) => `127.0.0.1:${p}`),
              transport: 'udp',
              auth: { user: ACCOUNT, password: PASSWORD },
              fromUser: ACCOUNT,
              fromHost: CARRIER_DOMAIN,
              numbers: [CALLER_ID],
              callerIdHeader: 'pai',
              ...extra,
            },
          },
        ],
        outboundRoutes: [{ prefix: '+1', trunk: 'carrier-a' }],
      },
    },
    { agents: { probe: () => agent } },
  );
  onCleanup(t, () => tg.stop());
  const states = new Map<string, OutboundCallState[]>();
  tg.gw.sipCalls.outbound.on('state', (v) => {
    const list = states.get(v.id) ?? [];
    if (list.at(-1) !== v.state) list.push(v.state);
    states.set(v.id, list);
  });
  return { tg, states };
}

// ---------------------------------------------------------------------------------------------
// The HTTP API.

async function api(tg: TestGateway, method: string, path: string, body?: unknown): Promise<{ status: number; location: string | null; body: unknown }> {
  const res = await fetch(`${tg.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, location: res.headers.get('location'), body: text ? (JSON.parse(text) as unknown) : undefined };
}

async function dial(tg: TestGateway, req: Record<string, unknown>): Promise<OutboundCallView> {
  const r = await api(tg, 'POST', '/api/calls', { to: CALLEE, agent: 'probe', ...req });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const view = r.body as OutboundCallView;
  assert.equal(r.location, `${tg.url}/api/calls/${view.id}`);
  assert.equal(view.state, 'dialing');
  assert.equal(view.trunk, 'carrier-a');
  assert.equal(view.from, CALLER_ID, "the trunk's first outbound.numbers entry is the default caller ID");
  return view;
}

async function getCall(tg: TestGateway, id: string): Promise<OutboundCallView> {
  const r = await api(tg, 'GET', `/api/calls/${id}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body as OutboundCallView;
}

/** Polls GET /api/calls/{id} until the call is in `state`; every state seen on the way is kept in `seen`. */
function callState(tg: TestGateway, id: string, state: OutboundCallState, ms = 10_000, seen: OutboundCallState[] = []): Promise<OutboundCallView> {
  return waitFor(
    `GET /api/calls/${id} to show ${state} (seen: ${seen.join(', ')})`,
    async () => {
      const v = await getCall(tg, id);
      if (seen.at(-1) !== v.state) seen.push(v.state);
      if (v.state === 'ended' && state !== 'ended') throw new Error(`the call ended before it was ${state}: ${JSON.stringify(v)}`);
      return v.state === state ? v : undefined;
    },
    ms,
  );
}

async function trunkView(tg: TestGateway): Promise<TrunkView> {
  const r = await api(tg, 'GET', '/api/trunks');
  assert.equal(r.status, 200);
  const trunk = (r.body as { trunks: TrunkView[] }).trunks.find((x) => x.name === 'carrier-a');
  assert.ok(trunk, JSON.stringify(r.body));
  return trunk;
}

/** Once a call has ended: no call, trunk call or dialog is left behind. */
async function nothingLeft(tg: TestGateway): Promise<void> {
  const left = async () => ({ calls: tg.gw.calls.size, trunkCalls: (await trunkView(tg)).calls.outbound });
  await waitFor('every call to be cleaned up', async () => {
    const l = await left();
    return l.calls === 0 && l.trunkCalls === 0 ? l : undefined;
  }, 5000).catch(async (err: Error) => assert.fail(`${err.message}: ${JSON.stringify(await left())}`));
}

// ---------------------------------------------------------------------------------------------
// What went over the wire.

function describeRun(r: SippResult): string {
  return `exit ${r.code}${r.timedOut ? ' (timed out)' : ''}\n--- errors\n${r.errors}\n--- logs\n${r.logs}\n--- messages\n${r.messages.slice(-8000)}`;
}

const received = (msgs: SippWireMessage[], method: string) => msgs.filter((m) => m.dir === 'received' && m.method === method);
/** The statuses SIPp sent in answer to requests of one method, in order. */
const sentStatuses = (msgs: SippWireMessage[], cseqMethod: string) => msgs.filter((m) => m.dir === 'sent' && m.status !== undefined && m.cseq.endsWith(` ${cseqMethod}`)).map((m) => m.status!);

/** The parameters of a Digest credentials header (RFC 2617 §3.2.2): quoted or token values. */
function digestParams(value: string): Record<string, string> {
  assert.match(value, /^Digest\s/i);
  const out: Record<string, string> = {};
  for (const m of value.replace(/^Digest\s+/i, '').matchAll(/([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) out[m[1]!.toLowerCase()] = m[2] ?? m[3]!;
  return out;
}

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

/** The tone's share of what the agent heard in a span of frames (the median over 100 ms windows). */
function heardShare(frames: HeardFrame[], hz: number): number {
  return toneShare(concatPcm(frames.map((f) => f.samples)), hz, RATE);
}

// =============================================================================================

describe('outbound calls through a trunk to SIPp (POST /api/calls)', () => {
  let media: string;
  let carrierTone: string;

  before(() => {
    media = mkdtempSync(join(tmpdir(), 'voxgate-outbound-sipp-'));
    // 10 s of 1 kHz, µ-law: what the carrier's rtp_stream plays (looped) as early media.
    carrierTone = join(media, 'tone-1k.ul');
    writeFileSync(carrierTone, encodeG711(tone(CARRIER_HZ, RATE, RATE * 10, 12000), 'pcmu'));
  });
  after(() => {
    if (media) rmSync(media, { recursive: true, force: true });
  });

  test('a call to a number: 407, the INVITE again with digest over the Request-URI, PAI caller ID, 180, 200; the agent\'s tone goes out and comes back; DELETE sends BYE', async (t) => {
    const agent = new ProbeAgent(5);
    const uas = await carrier(t, { scenario: 'uas-auth-answer-bye.xml', vars: { user: ACCOUNT }, rtpEcho: true, timeoutMs: 20_000 });
    const { tg, states } = await startOutboundGateway(t, [uas.localPort], agent);

    const placed = await dial(tg, {});
    const answered = await callState(tg, placed.id, 'answered');
    assert.equal(answered.status, 200);
    assert.ok(answered.answeredAt, 'answeredAt is set');
    assert.ok(answered.sipCallId, 'the SIP Call-ID is shown');
    assert.equal((await trunkView(tg)).calls.outbound, 1, 'GET /api/trunks counts the call on carrier-a');

    // The agent's tone went to SIPp, which echoed it back: the agent hears its own tone.
    const probe = await waitFor('the agent to be attached', () => agent.sessions[0]);
    const heard = await waitFor('1.5 s of audio back from the carrier', () => (probe.frames.length >= 75 ? probe.frames : undefined), 5000);
    const share = heardShare(heard.slice(25, 75), AGENT_HZ);
    assert.ok(share > 0.8, `the agent's ${AGENT_HZ} Hz tone is only ${(share * 100).toFixed(0)} % of what came back through SIPp's RTP echo`);

    const deleted = await api(tg, 'DELETE', `/api/calls/${placed.id}`);
    assert.equal(deleted.status, 200);
    // The BYE ends an answered call at once: DELETE's own answer says how it ended.
    assert.equal((deleted.body as OutboundCallView).state, 'ended');
    assert.equal((deleted.body as OutboundCallView).endReason, 'deleted');
    const ended = await callState(tg, placed.id, 'ended', 5000);
    assert.equal(ended.endReason, 'deleted');
    assert.equal(ended.status, 200, 'an answered call keeps its 200');
    assert.ok(ended.endedAt, 'endedAt is set');

    const r = await uas.done;
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const msgs = sippWire(r.messages);
    const invites = received(msgs, 'INVITE');
    assert.equal(invites.length, 2, 'the INVITE, then the INVITE with credentials');
    const ruri = `sip:${CALLEE}@127.0.0.1:${uas.localPort};user=phone`;
    for (const inv of invites) {
      assert.equal(inv.first, `INVITE ${ruri} SIP/2.0`);
      assert.match(sipHeader(inv.text, 'From') ?? '', new RegExp(`^<sip:${ACCOUNT}@${CARRIER_DOMAIN.replace('.', '\\.')}>;tag=`), 'From carries the account user at fromHost');
      assert.equal(sipHeader(inv.text, 'P-Asserted-Identity'), `<sip:${CALLER_ID}@${CARRIER_DOMAIN};user=phone>`);
      assert.match(sipHeader(inv.text, 'To') ?? '', new RegExp(`^<sip:\\${CALLEE}@127\\.0\\.0\\.1;user=phone>$`));
      assert.equal(sipHeader(inv.text, 'Call-ID'), answered.sipCallId);
      assert.match(sipBody(inv.text), /^m=audio \d+ RTP\/AVP 0 101\s*$/m, "the trunk's codec, then telephone-event");
    }
    assert.equal(sipHeader(invites[0]!.text, 'Proxy-Authorization'), undefined);
    // RFC 3261 §22.3 / RFC 2617 §3.2.2: the digest, its uri the Request-URI, recomputed here
    // (SIPp's <verifyauth> reads only Authorization, so the scenario cannot check the response).
    const pa = digestParams(sipHeader(invites[1]!.text, 'Proxy-Authorization') ?? 'Digest (none)');
    const nonce = /nonce="([^"]+)"/.exec(msgs.find((m) => m.status === 407)!.text)![1]!;
    assert.equal(pa.username, ACCOUNT);
    assert.equal(pa.realm, CARRIER_DOMAIN);
    assert.equal(pa.nonce, nonce);
    assert.equal(pa.uri, ruri);
    assert.equal(pa.qop, 'auth');
    const expected = md5(`${md5(`${ACCOUNT}:${CARRIER_DOMAIN}:${PASSWORD}`)}:${nonce}:${pa.nc}:${pa.cnonce}:auth:${md5(`INVITE:${ruri}`)}`);
    assert.equal(pa.response, expected, 'the digest response is MD5 over the account password and the Request-URI');
    assert.deepEqual(sentStatuses(msgs, 'INVITE'), [407, 100, 180, 200], describeRun(r));
    assert.equal(received(msgs, 'ACK').length, 2, 'the 407 and the 200 were ACKed');
    assert.equal(received(msgs, 'BYE').length, 1, 'DELETE sent one BYE');
    assert.deepEqual(sentStatuses(msgs, 'BYE'), [200]);

    assert.deepEqual(states.get(placed.id), ['dialing', 'ringing', 'answered', 'ended']);
    assert.ok(probe.ended, 'the agent session ended');
    await nothingLeft(tg);
  });

  for (const password of [PASSWORD, 'not-the-secret']) {
    const right = password === PASSWORD;
    test(`a 401 challenge to the INVITE, verified by SIPp (<verifyauth>): ${right ? 'the account password passes, the call is answered' : 'a wrong password gets 403 and the call ends 403'}`, async (t) => {
      const agent = new ProbeAgent();
      const uas = await carrier(t, { scenario: 'uas-auth401-answer-bye.xml', vars: { user: ACCOUNT, password: PASSWORD }, timeoutMs: 15_000 });
      const { tg, states } = await startOutboundGateway(t, [uas.localPort], agent, { auth: { user: ACCOUNT, password } });

      const placed = await dial(tg, {});
      if (right) {
        await callState(tg, placed.id, 'answered');
        assert.equal((await api(tg, 'DELETE', `/api/calls/${placed.id}`)).status, 200);
      }
      const ended = await callState(tg, placed.id, 'ended');
      const r = await uas.done;
      const msgs = sippWire(r.messages);
      const invites = received(msgs, 'INVITE');
      assert.equal(invites.length, 2, describeRun(r));
      const auth = digestParams(sipHeader(invites[1]!.text, 'Authorization') ?? 'Digest (none)');
      assert.equal(auth.username, ACCOUNT);
      assert.equal(auth.uri, `sip:${CALLEE}@127.0.0.1:${uas.localPort};user=phone`, 'RFC 3261 §22.4: the digest-uri is the Request-URI');
      if (right) {
        assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
        assert.deepEqual(sentStatuses(msgs, 'INVITE'), [401, 100, 180, 200]);
        assert.equal(ended.endReason, 'deleted');
        assert.deepEqual(states.get(placed.id), ['dialing', 'ringing', 'answered', 'ended']);
      } else {
        assert.equal(r.code, SIPP_EXIT.failed, `SIPp counts the unverified call as failed\n${describeRun(r)}`);
        assert.deepEqual(sentStatuses(msgs, 'INVITE'), [401, 403]);
        assert.equal(received(msgs, 'ACK').length, 2, 'the 401 and the 403 were ACKed');
        assert.equal(ended.status, 403);
        assert.equal(ended.reason, 'Forbidden');
        assert.equal(ended.endReason, 'failed');
        assert.deepEqual(states.get(placed.id), ['dialing', 'ended']);
      }
      await nothingLeft(tg);
    });
  }

  test('486 Busy Here from the first address ends the call 486 (cause 17) and the second address gets nothing', async (t) => {
    const agent = new ProbeAgent();
    const busy = await carrier(t, { scenario: 'uas-busy.xml', timeoutMs: 10_000 });
    const spare = await carrier(t, { scenario: 'uas-answer-bye.xml', timeoutMs: 10_000 });
    const { tg, states } = await startOutboundGateway(t, [busy.localPort, spare.localPort], agent);

    const placed = await dial(tg, {});
    const ended = await callState(tg, placed.id, 'ended');
    assert.equal(ended.status, 486);
    assert.equal(ended.reason, 'Busy Here');
    assert.equal(ended.cause, 17, 'the Q.850 cause of the Reason header');
    assert.equal(ended.endReason, 'failed');
    assert.equal(ended.answeredAt, null);
    assert.equal(agent.sessions.length, 0, 'no agent for a call nobody answered');

    const r = await busy.done;
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const msgs = sippWire(r.messages);
    assert.equal(received(msgs, 'INVITE').length, 1);
    assert.deepEqual(sentStatuses(msgs, 'INVITE'), [100, 486]);
    assert.equal(received(msgs, 'ACK').length, 1, 'the 486 was ACKed');
    // The call is ended only once no address is left to try: anything for the second would be out by now.
    const other = await spare.stop();
    assert.equal(sippWire(other.messages).length, 0, `no failover after a 486, yet the second address got:\n${other.messages}`);
    assert.deepEqual(states.get(placed.id), ['dialing', 'ended']);
    await nothingLeft(tg);
  });

  test('503 from the first address fails over: the second address answers, and the call is up there', async (t) => {
    const agent = new ProbeAgent(3);
    const down = await carrier(t, { scenario: 'uas-unavailable.xml', timeoutMs: 15_000 });
    const up = await carrier(t, { scenario: 'uas-answer-bye.xml', rtpEcho: true, timeoutMs: 15_000 });
    const { tg, states } = await startOutboundGateway(t, [down.localPort, up.localPort], agent);

    const placed = await dial(tg, {});
    const answered = await callState(tg, placed.id, 'answered');
    assert.equal(answered.status, 200);
    const d = await down.done;
    assert.equal(d.code, SIPP_EXIT.ok, describeRun(d));
    const downMsgs = sippWire(d.messages);
    assert.deepEqual(sentStatuses(downMsgs, 'INVITE'), [503]);
    assert.equal(received(downMsgs, 'ACK').length, 1, 'the 503 was ACKed');

    const probe = await waitFor('the agent to be attached', () => agent.sessions[0]);
    await waitFor('1 s of audio back from the second address', () => probe.frames.length >= 50, 5000);
    assert.ok(heardShare(probe.frames.slice(10, 50), AGENT_HZ) > 0.8, 'the agent hears its tone echoed by the second address');

    assert.equal((await api(tg, 'DELETE', `/api/calls/${placed.id}`)).status, 200);
    const ended = await callState(tg, placed.id, 'ended', 5000);
    assert.equal(ended.endReason, 'deleted');
    const u = await up.done;
    assert.equal(u.code, SIPP_EXIT.ok, describeRun(u));
    const upMsgs = sippWire(u.messages);
    const [invite] = received(upMsgs, 'INVITE');
    assert.ok(invite, describeRun(u));
    assert.equal(invite.first, `INVITE sip:${CALLEE}@127.0.0.1:${up.localPort};user=phone SIP/2.0`, 'the Request-URI names the address tried');
    assert.equal(sipHeader(invite.text, 'Call-ID'), ended.sipCallId, 'the API shows the Call-ID of the INVITE that was answered');
    assert.ok(invite.at >= downMsgs.find((m) => m.status === 503)!.at, 'the second address was tried after the 503');
    assert.deepEqual(sentStatuses(upMsgs, 'INVITE'), [100, 180, 200]);
    assert.equal(received(upMsgs, 'BYE').length, 1);
    assert.deepEqual(states.get(placed.id), ['dialing', 'ringing', 'answered', 'ended']);
    await nothingLeft(tg);
  });

  for (const earlyMedia of [true, false]) {
    test(`a 183 with SDP shows early-media before answered; with earlyMedia ${earlyMedia} the agent ${earlyMedia ? 'starts at the 183 and hears the carrier\'s tone before the 200' : 'starts only at the 200'}`, async (t) => {
      const agent = new ProbeAgent();
      const uas = await carrier(t, { scenario: 'uas-early-media.xml', pauseMs: 2000, keys: { audio: `${carrierTone},-1,0` }, timeoutMs: 20_000 });
      const { tg, states } = await startOutboundGateway(t, [uas.localPort], agent);

      const placed = await dial(tg, earlyMedia ? { earlyMedia: true } : {});
      const seen: OutboundCallState[] = [];
      const answered = await callState(tg, placed.id, 'answered', 10_000, seen);
      assert.ok(seen.indexOf('early-media') >= 0 && seen.indexOf('early-media') < seen.indexOf('answered'), `GET showed early-media before answered: ${seen.join(', ')}`);
      const answeredAt = Date.parse(answered.answeredAt!);
      const probe = await waitFor('the agent to be attached', () => agent.sessions[0]);
      if (earlyMedia) {
        assert.ok(probe.attachedAt < answeredAt - 1000, `the agent attached ${answeredAt - probe.attachedAt} ms before the answer; the early media lasted 2 s`);
        const early = probe.frames.filter((f) => f.at < answeredAt);
        assert.ok(early.length >= 50, `the agent heard ${early.length} frames before the 200`);
        const share = heardShare(early.slice(10), CARRIER_HZ);
        assert.ok(share > 0.8, `the carrier's ${CARRIER_HZ} Hz early media is only ${(share * 100).toFixed(0)} % of what the agent heard before the 200`);
      } else {
        assert.ok(probe.attachedAt >= answeredAt, `the agent attached ${answeredAt - probe.attachedAt} ms before the answer without earlyMedia`);
      }
      // After the answer the stream goes on: the agent hears the carrier.
      const after = await waitFor('1 s of audio after the answer', () => {
        const f = probe.frames.filter((x) => x.at >= answeredAt);
        return f.length >= 50 ? f : undefined;
      }, 5000);
      assert.ok(heardShare(after.slice(10, 50), CARRIER_HZ) > 0.8, 'the carrier\'s tone after the answer');

      assert.equal((await api(tg, 'DELETE', `/api/calls/${placed.id}`)).status, 200);
      assert.equal((await callState(tg, placed.id, 'ended', 5000)).endReason, 'deleted');
      const r = await uas.done;
      assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
      const msgs = sippWire(r.messages);
      assert.deepEqual(sentStatuses(msgs, 'INVITE'), [100, 183, 200]);
      assert.equal(received(msgs, 'BYE').length, 1);
      assert.deepEqual(states.get(placed.id), ['dialing', 'early-media', 'answered', 'ended']);
      await nothingLeft(tg);
    });
  }

  test('timeoutSeconds: 3 on a callee that only rings: CANCEL after 3 s, 487 ACKed, the call ends 408', async (t) => {
    const agent = new ProbeAgent();
    const uas = await carrier(t, { scenario: 'uas-no-answer.xml', timeoutMs: 15_000 });
    const { tg, states } = await startOutboundGateway(t, [uas.localPort], agent);

    const placed = await dial(tg, { timeoutSeconds: 3 });
    await callState(tg, placed.id, 'ringing', 5000);
    const ended = await callState(tg, placed.id, 'ended', 8000);
    assert.equal(ended.status, 408, JSON.stringify(ended));
    assert.match(ended.reason ?? '', /^Request Timeout/);
    assert.equal(ended.endReason, 'timeout');
    assert.equal(agent.sessions.length, 0);

    const r = await uas.done;
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const msgs = sippWire(r.messages);
    const [invite] = received(msgs, 'INVITE');
    const [cancel] = received(msgs, 'CANCEL');
    assert.ok(invite && cancel, describeRun(r));
    const rang = cancel.at - invite.at;
    assert.ok(rang >= 2900 && rang <= 3700, `the CANCEL came ${rang.toFixed(0)} ms after the INVITE (timeoutSeconds: 3)`);
    assert.deepEqual(sentStatuses(msgs, 'INVITE'), [100, 180, 487]);
    assert.deepEqual(sentStatuses(msgs, 'CANCEL'), [200]);
    assert.equal(received(msgs, 'ACK').length, 1, 'the 487 was ACKed');
    assert.deepEqual(states.get(placed.id), ['dialing', 'ringing', 'ended']);
    await nothingLeft(tg);
  });

  test('DELETE while it rings sends CANCEL at once; the 487 is ACKed and the call ends 487, deleted', async (t) => {
    const agent = new ProbeAgent();
    const uas = await carrier(t, { scenario: 'uas-no-answer.xml', timeoutMs: 15_000 });
    const { tg, states } = await startOutboundGateway(t, [uas.localPort], agent);

    const placed = await dial(tg, {});
    await callState(tg, placed.id, 'ringing', 5000);
    const deletedAt = Date.now();
    assert.equal((await api(tg, 'DELETE', `/api/calls/${placed.id}`)).status, 200);
    const ended = await callState(tg, placed.id, 'ended', 5000);
    assert.equal(ended.status, 487, JSON.stringify(ended));
    assert.equal(ended.endReason, 'deleted');
    assert.equal(ended.answeredAt, null);
    assert.equal(agent.sessions.length, 0);

    const r = await uas.done;
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const msgs = sippWire(r.messages);
    const [cancel] = received(msgs, 'CANCEL');
    assert.ok(cancel, describeRun(r));
    assert.ok(cancel.at - deletedAt < 1000, `the CANCEL came ${(cancel.at - deletedAt).toFixed(0)} ms after the DELETE`);
    assert.deepEqual(sentStatuses(msgs, 'INVITE'), [100, 180, 487]);
    assert.deepEqual(sentStatuses(msgs, 'CANCEL'), [200]);
    assert.equal(received(msgs, 'ACK').length, 1, 'the 487 was ACKed');
    assert.deepEqual(states.get(placed.id), ['dialing', 'ringing', 'ended']);
    await nothingLeft(tg);
  });
});

describe("a trunk's registration with SIPp as the registrar (outbound.register)", () => {
  test('401, REGISTER with Authorization, 200 granting 6 s: registered in /api/trunks, and the refresh comes at 90 % of the grant', async (t) => {
    const granted = 6;
    const uas = await carrier(t, { scenario: 'uas-register.xml', vars: { user: ACCOUNT, password: PASSWORD, expires: String(granted) }, timeoutMs: 20_000 });
    const { tg } = await startOutboundGateway(t, [uas.localPort], new ProbeAgent(), { register: { expires: 60 } });

    const registered = await waitFor('the registration to be registered', async () => {
      const reg = (await trunkView(tg)).registration;
      return reg?.state === 'registered' ? reg : undefined;
    }, 5000);
    assert.equal(registered.lastStatus, 200);
    assert.equal(registered.aor, `sip:${ACCOUNT}@${CARRIER_DOMAIN}`);
    assert.equal(registered.registrar, `127.0.0.1:${uas.localPort}`);
    assert.ok(registered.expiresInSeconds !== null && registered.expiresInSeconds <= granted && registered.expiresInSeconds >= granted - 1, `expiresInSeconds ${registered.expiresInSeconds}: what the registrar granted, not the 60 asked`);
    assert.ok(registered.nextAttemptInSeconds !== null && registered.nextAttemptInSeconds <= Math.ceil(0.9 * granted), `the refresh is due in ${registered.nextAttemptInSeconds} s`);

    // The scenario ends at the refresh's 200 (it checks the refresh came after half the grant and before its end).
    const r = await uas.done;
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const msgs = sippWire(r.messages);
    const registers = received(msgs, 'REGISTER');
    assert.equal(registers.length, 4, 'REGISTER, with credentials, the refresh, with credentials');
    for (const reg of registers) {
      assert.equal(reg.first, `REGISTER sip:${CARRIER_DOMAIN} SIP/2.0`, 'RFC 3261 §10.2: the domain, no user part');
      assert.match(sipHeader(reg.text, 'To') ?? '', new RegExp(`^<sip:${ACCOUNT}@carrier\\.test>$`));
      assert.equal(sipHeader(reg.text, 'Expires'), '60', 'voxgate asks for its configured expiry');
      assert.equal(sipHeader(reg.text, 'Call-ID'), sipHeader(registers[0]!.text, 'Call-ID'), '§10.2: one Call-ID for the registration');
    }
    assert.equal(sipHeader(registers[0]!.text, 'Authorization'), undefined);
    const auth = digestParams(sipHeader(registers[1]!.text, 'Authorization') ?? 'Digest (none)');
    assert.equal(auth.username, ACCOUNT);
    assert.equal(auth.uri, `sip:${CARRIER_DOMAIN}`);
    assert.deepEqual(sentStatuses(msgs, 'REGISTER'), [401, 200, 401, 200]);
    const firstOk = msgs.filter((m) => m.dir === 'sent' && m.status === 200)[0]!;
    const refreshAfter = registers[2]!.at - firstOk.at;
    assert.ok(refreshAfter >= 0.9 * granted * 1000 - 300 && refreshAfter <= 0.9 * granted * 1000 + 700, `the refresh came ${refreshAfter.toFixed(0)} ms after the 200; max(90 %, granted - 30 s) of ${granted} s is ${0.9 * granted * 1000} ms`);

    const after = (await trunkView(tg)).registration;
    assert.equal(after?.state, 'registered', JSON.stringify(after));
    assert.equal(after.lastStatus, 200);
  });

  test('403 Forbidden to the REGISTER: the registration is failed with lastStatus 403 and waits for its backoff', async (t) => {
    const uas = await carrier(t, { scenario: 'uas-register-forbidden.xml', timeoutMs: 10_000 });
    const { tg } = await startOutboundGateway(t, [uas.localPort], new ProbeAgent(), { register: { expires: 60 } });

    const failed = await waitFor('the registration to fail', async () => {
      const reg = (await trunkView(tg)).registration;
      return reg?.state === 'failed' ? reg : undefined;
    }, 5000);
    assert.equal(failed.lastStatus, 403);
    assert.equal(failed.lastReason, 'Forbidden');
    assert.equal(failed.expiresInSeconds, null);
    assert.ok(failed.nextAttemptInSeconds !== null && failed.nextAttemptInSeconds > 25 && failed.nextAttemptInSeconds <= 30, `the retry is due in ${failed.nextAttemptInSeconds} s (the first backoff is 30 s)`);

    const r = await uas.done;
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const msgs = sippWire(r.messages);
    assert.equal(received(msgs, 'REGISTER').length, 1);
    assert.deepEqual(sentStatuses(msgs, 'REGISTER'), [403]);
  });
});
