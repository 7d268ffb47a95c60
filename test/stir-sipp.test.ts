import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { WebSocketServer } from 'ws';
import type { Agent, AgentSession } from '../src/agent/agent.js';
import type { OutboundCallView } from '../src/call/outbound-types.js';
import { stiLab, type StiLab, type StiLabRefusals } from '../src/testing/stir.js';
import { ADMIN_TOKEN, adminSessions, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { sipHeader, SIPP_EXIT, sippWire, startSipp, runSipp, type SippProcess, type SippResult, type SippWireMessage } from './helpers/sipp.js';

/**
 * STIR/SHAKEN (RFC 8224/8225/8588) end to end, with peers we did not write: SIPp plays the
 * carrier, Debian's secsipidx signs what it sends (and checks what voxgate signs), an HTTPS
 * server on loopback serves the certificates (src/testing/stir.ts). Inbound, a verifying trunk
 * in observe mode hands the verdict to the agent (in process, and a Twilio Media Streams one);
 * in enforce mode each defect gets its RFC 8224 answer on the wire. Outbound, a signing trunk's
 * INVITE carries an Identity that secsipidx verifies.
 */

const CALLER = '+15551230000';
/** Observe gateway: to the in-process agent, and to the Twilio-protocol agent. */
const CALLED = '+15557654321';
const TWILIO_CALLED = '+15557654322';
/** Enforce gateway. */
const ENFORCED = '+15557654323';
/** Outbound: our numbers (A is configured for attestation A, B gets the default B), and whom we call. */
const OURS_A = '+15552220001';
const OURS_B = '+15552220002';
const CALLEE = '+15559870000';

const now = () => Math.floor(Date.now() / 1000);
/** RFC 8225 §5.2.1: a TN in a PASSporT is digits only. */
const tn = (e164: string) => e164.replace(/^\+/, '');

// ---------------------------------------------------------------------------------------------
// secsipidx (v1.2), the signer and checker we did not write.

interface Signed {
  /** The Identity header value. */
  identity: string;
  iat: number;
}

const payloadOf = (identity: string) => JSON.parse(Buffer.from(identity.split('.')[1]!, 'base64url').toString()) as { attest: string; iat: number; orig: { tn: string }; dest: { tn: string[] }; origid: string };

/** `secsipidx -sign-full`: the whole Identity header as secsipidx writes it, iat now. */
function secsipidxSignFull(dest: string): Signed {
  const identity = execFileSync('secsipidx', ['-sign-full', '-orig-tn', tn(CALLER), '-dest-tn', tn(dest), '-attest', 'A', '-x5u', lab.x5u, '-fprvkey', lab.signerKey], { encoding: 'utf8' }).trim();
  return { identity, iat: payloadOf(identity).iat };
}

/**
 * `secsipidx -sign` (`-sign-full` ignores `-iat`): the bare JWS, to which the RFC 8224 §4
 * parameters are added here; `info` may differ from the `x5u` signed.
 */
function secsipidxSign(o: { dest: string; key?: string; x5u?: string; info?: string; iat?: number; orig?: string }): Signed {
  const x5u = o.x5u ?? lab.x5u;
  const iat = o.iat ?? now();
  const args = ['-sign', '-orig-tn', tn(o.orig ?? CALLER), '-dest-tn', tn(o.dest), '-attest', 'A', '-x5u', x5u, '-fprvkey', o.key ?? lab.signerKey, '-orig-id', randomUUID(), '-iat', String(iat)];
  const jws = execFileSync('secsipidx', args, { encoding: 'utf8' }).trim();
  assert.match(jws, /^[\w-]+\.[\w-]+\.[\w-]+$/, `secsipidx -sign printed a JWS: ${jws}`);
  return { identity: `${jws};info=<${o.info ?? x5u}>;alg=ES256;ppt=shaken`, iat };
}

/** A token secsipidx signed for another called number, its payload changed to claim `dest`; the signature kept. */
function tamperedDest(dest: string): Signed {
  const s = secsipidxSign({ dest: '+15550000000' });
  const params = s.identity.indexOf(';');
  const [h, p, signature] = s.identity.slice(0, params).split('.');
  const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as { dest: { tn: string[] } };
  claims.dest.tn = [tn(dest)];
  return { identity: `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}${s.identity.slice(params)}`, iat: s.iat };
}

/** `secsipidx -check` of an Identity header with a public key file (-expire: its default freshness is under a second). */
function secsipidxCheck(identity: string, pub: string): { code: number; out: string } {
  const r = spawnSync('secsipidx', ['-check', '-identity', identity, '-fpubkey', pub, '-expire', '60'], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

// ---------------------------------------------------------------------------------------------
// The carrier (SIPp) and what it logged.

/** The -key values of the uac-stir-*.xml scenarios: the caller, and the Date and Identity lines (a neutral line for none). */
function stirKeys(s: Signed | undefined, name = 'Identity'): Record<string, string> {
  return { caller: CALLER, date_line: s ? `Date: ${new Date(s.iat * 1000).toUTCString()}` : 'Subject: e2e', identity: s ? `${name}: ${s.identity}` : 'Subject: e2e' };
}

function sipUdp(tg: TestGateway): string {
  const l = tg.gw.sipListening().find((x) => x.protocol === 'UDP');
  assert.ok(l, 'voxgate listens for SIP over UDP');
  return `127.0.0.1:${l.port}`;
}

/** A signed call that should be answered: starts SIPp (the test awaits `done`). */
function signedCall(tg: TestGateway, called: string, s: Signed | undefined, o: { pauseMs?: number; header?: string } = {}): Promise<SippProcess> {
  return startSipp({ scenario: 'uac-stir-call-bye.xml', remote: sipUdp(tg), service: called, keys: stirKeys(s, o.header), pauseMs: o.pauseMs ?? 500, timeoutMs: 10_000, waitListening: false });
}

function describeRun(r: SippResult): string {
  return `exit ${r.code}${r.timedOut ? ' (timed out)' : ''}\n--- errors\n${r.errors}\n--- messages\n${r.messages.slice(-5000)}`;
}

/** The final responses to SIPp's INVITE, as SIPp received them. */
const finals = (r: SippResult): SippWireMessage[] => sippWire(r.messages).filter((m) => m.dir === 'received' && m.status !== undefined && m.status >= 200 && m.cseq.endsWith(' INVITE'));

/** The address SIPp sent from, as the audit log names the remote. */
const sippAddress = (r: SippResult) => `127.0.0.1:${r.args[r.args.indexOf('-p') + 1]}`;

// ---------------------------------------------------------------------------------------------
// The gateway side.

type AuditRecord = Record<string, unknown> & { action: string };

function auditRecord(tg: TestGateway, what: string, match: (r: AuditRecord) => boolean): Promise<AuditRecord> {
  const read = () => readFileSync(tg.auditPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord);
  return waitFor(what, () => read().find(match), 5000);
}

async function stirCount(tg: TestGateway, verstat: string): Promise<number> {
  const text = await (await fetch(`${tg.url}/metrics`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
  const m = new RegExp(`^voxgate_stir_verifications_total\\{trunk="carrier-a",verstat="${verstat}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** An in-process agent that keeps the sessions voxgate hands it. */
class ProbeAgent implements Agent {
  readonly name = 'probe';
  readonly sampleRate = 8000;
  readonly sessions: AgentSession[] = [];
  attach(session: AgentSession): void {
    this.sessions.push(session);
  }
}

/** A Twilio Media Streams agent: the JSON messages of each connection, in order. */
class MediaStreamsAgent {
  readonly wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  readonly calls: Record<string, unknown>[][] = [];
  constructor() {
    this.wss.on('connection', (ws) => {
      const messages: Record<string, unknown>[] = [];
      this.calls.push(messages);
      ws.on('message', (d) => messages.push(JSON.parse(d.toString()) as Record<string, unknown>));
    });
  }
  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as { port: number }).port}/stream`;
  }
  /** The customParameters of the n-th connection's `start` message, once it came. */
  startParameters(n: number): Promise<Record<string, string>> {
    return waitFor(`the start message of agent connection ${n}`, () => (this.calls[n]?.find((m) => m.event === 'start')?.start as { customParameters?: Record<string, string> } | undefined)?.customParameters);
  }
  close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    return new Promise((r) => this.wss.close(() => r()));
  }
}

const listen = [{ transport: 'udp' as const, host: '127.0.0.1', port: 0 }];

let lab: StiLab;
let refusals: StiLabRefusals;
let keys: string;
/** An EC P-256 key that matches no certificate (openssl). */
let wrongKey: string;
before(async () => {
  lab = await stiLab({ refusals: true });
  refusals = lab.refusals!;
  keys = mkdtempSync(join(tmpdir(), 'voxgate-stir-sipp-'));
  wrongKey = join(keys, 'wrong.key');
  execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', wrongKey], { stdio: 'ignore' });
});
after(async () => {
  await lab?.close();
  if (keys) rmSync(keys, { recursive: true, force: true });
});

// =============================================================================================

describe('inbound STIR/SHAKEN in observe mode (trunk carrier-a verifies, the call goes on)', () => {
  let tg: TestGateway;
  const probe = new ProbeAgent();
  let twilio: MediaStreamsAgent;
  /** The gateway's log, for why a verification failed (observe mode says so only there). */
  const logged: Record<string, unknown>[] = [];

  before(async () => {
    twilio = new MediaStreamsAgent();
    await new Promise((r) => twilio.wss.once('listening', r));
    tg = await startGateway(
      {
        sip: {
          listen,
          rtp: { portMin: 36000, portMax: 36099 },
          agents: { [TWILIO_CALLED]: { type: 'twilio-stream', url: twilio.url } },
          trunks: [{ name: 'carrier-a', inbound: { numbers: [CALLED, TWILIO_CALLED], allowedAddresses: ['127.0.0.1/32'], agent: 'probe' }, codecs: ['pcmu'], stirShaken: { verify: true } }],
        },
        stirShaken: { verify: { trustAnchors: [lab.stiRoot], fetchCa: [lab.webCa], mode: 'observe', allowPrivateAddresses: true } },
      },
      { agents: { probe: () => probe }, log: pino({ level: 'info' }, { write: (l: string) => void logged.push(JSON.parse(l) as Record<string, unknown>) }) },
    );
  });
  after(async () => {
    await tg?.stop();
    await twilio?.close();
  });

  test('an INVITE secsipidx signed (-sign-full, attest A) is answered as TN-Validation-Passed: agent, audit, /metrics, /api/sessions', async () => {
    const signed = secsipidxSignFull(CALLED);
    assert.match(signed.identity, new RegExp(`;info=<${lab.x5u.replace(/[.]/g, '\\.')}>;alg=ES256;ppt=shaken$`), 'secsipidx wrote the RFC 8224 parameters');
    const passedBefore = await stirCount(tg, 'TN-Validation-Passed');
    const n = probe.sessions.length;
    const sipp = await signedCall(tg, CALLED, signed, { pauseMs: 1500 });
    const session = await waitFor('the agent session', () => probe.sessions[n], 5000);
    assert.deepEqual(session.caller, { number: CALLER, name: 'SIPp caller', verstat: 'TN-Validation-Passed', attest: 'A', origTn: tn(CALLER) });
    assert.equal(session.details.customParameters.StirVerstat, 'TN-Validation-Passed');
    // While the call lasts (SIPp waits 1.5 s before its BYE), the admin API shows the verdict on the trunk call.
    const live = (await adminSessions(tg.url)).find((s) => s.id === session.callId);
    assert.deepEqual(live?.trunk, { name: 'carrier-a', direction: 'inbound', from: CALLER, to: CALLED, verstat: 'TN-Validation-Passed' });

    const r = await sipp.done;
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    assert.deepEqual(finals(r).map((m) => m.status), [200]);
    const invited = await auditRecord(tg, 'the sip.invite record', (a) => a.action === 'sip.invite' && a.session === session.callId);
    assert.deepEqual([invited.outcome, invited.status, invited.trunk, invited.from, invited.verstat, invited.attest], ['ok', 200, 'carrier-a', CALLER, 'TN-Validation-Passed', 'A']);
    assert.equal(await stirCount(tg, 'TN-Validation-Passed'), passedBefore + 1, 'voxgate_stir_verifications_total counted it once');
    assert.ok(lab.hits.includes('/sp.pem'), 'the certificate was fetched from x5u');
  });

  test('a Twilio Media Streams agent gets start.customParameters.StirVerstat: TN-Validation-Passed when signed, No-TN-Validation without Identity', async () => {
    for (const [signed, verstat] of [[secsipidxSign({ dest: TWILIO_CALLED }), 'TN-Validation-Passed'], [undefined, 'No-TN-Validation']] as const) {
      const n = twilio.calls.length;
      const sipp = await signedCall(tg, TWILIO_CALLED, signed);
      const params = await twilio.startParameters(n);
      assert.equal(params.StirVerstat, verstat);
      assert.deepEqual([params.from, params.to, params.trunk], [CALLER, TWILIO_CALLED, 'carrier-a']);
      const r = await sipp.done;
      assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
      assert.deepEqual(finals(r).map((m) => m.status), [200]);
      const invited = await auditRecord(tg, 'the sip.invite record', (a) => a.action === 'sip.invite' && a.session === params.session);
      assert.equal(invited.verstat, verstat);
    }
  });

  test('a stale iat, a wrong key and a tampered claim still reach the agent, as TN-Validation-Failed without the claims (attest A is only logged as claimed)', async () => {
    const failedBefore = await stirCount(tg, 'TN-Validation-Failed');
    const cases: [string, Signed, RegExp][] = [
      ['stale iat', secsipidxSign({ dest: CALLED, iat: now() - 3600 }), /^Stale Date \(iat: /],
      ['wrong key', secsipidxSign({ dest: CALLED, key: wrongKey }), /^Invalid Identity Header \(signature: /],
      ['tampered dest', tamperedDest(CALLED), /^Invalid Identity Header \(signature: /],
    ];
    for (const [what, signed, why] of cases) {
      const before = probe.sessions.length;
      const r = await (await signedCall(tg, CALLED, signed)).done;
      assert.equal(r.code, SIPP_EXIT.ok, `${what}: ${describeRun(r)}`);
      assert.deepEqual(finals(r).map((m) => m.status), [200], what);
      assert.equal(probe.sessions.length, before + 1, `${what}: one agent session`);
      const s = probe.sessions.at(-1)!;
      assert.deepEqual([s.caller.verstat, s.caller.attest, s.details.customParameters.StirVerstat], ['TN-Validation-Failed', undefined, 'TN-Validation-Failed'], what);
      const failure = logged.filter((l) => l.msg === 'STIR/SHAKEN verification failed').at(-1);
      assert.match(String(failure?.reason), why, `${what}: failed for its own reason`);
      assert.equal((failure?.claimed as { attest?: string } | undefined)?.attest, 'A', `${what}: the claim logged`);
    }
    assert.equal(await stirCount(tg, 'TN-Validation-Failed'), failedBefore + cases.length);
  });
});

// =============================================================================================

describe('inbound STIR/SHAKEN in enforce mode: RFC 8224 §6.2.2 answers on the wire, no agent', () => {
  let tg: TestGateway;
  const logged: Record<string, unknown>[] = [];
  const probe = new ProbeAgent();

  before(async () => {
    tg = await startGateway(
      {
        sip: {
          listen,
          rtp: { portMin: 36100, portMax: 36199 },
          trunks: [{ name: 'carrier-a', inbound: { numbers: [ENFORCED], allowedAddresses: ['127.0.0.1/32'], agent: 'probe' }, codecs: ['pcmu'], stirShaken: { verify: true } }],
        },
        // Small bounds so the slow and oversized certificate URLs fail fast.
        stirShaken: { verify: { trustAnchors: [lab.stiRoot], fetchCa: [lab.webCa], mode: 'enforce', allowPrivateAddresses: true, maxAgeSeconds: 60, certificateCache: { timeoutMs: 500, maxBytes: 8192, ttlSeconds: 60 } } },
      },
      { agents: { probe: () => probe }, log: pino({ level: 'info' }, { write: (l: string) => void logged.push(JSON.parse(l) as Record<string, unknown>) }) },
    );
  });
  after(() => tg?.stop());

  test('a valid signed INVITE is answered in enforce mode too, also with the compact header name y (RFC 8224 §4)', async () => {
    for (const header of ['Identity', 'y']) {
      const n = probe.sessions.length;
      const r = await (await signedCall(tg, ENFORCED, secsipidxSign({ dest: ENFORCED }), { pauseMs: 200, header })).done;
      assert.equal(r.code, SIPP_EXIT.ok, `${header}: ${describeRun(r)}`);
      assert.deepEqual(finals(r).map((m) => m.status), [200], header);
      assert.match(sippWire(r.messages)[0]!.text, new RegExp(`^${header}: eyJ`, 'm'));
      assert.equal(probe.sessions.length, n + 1, `${header}: one agent session`);
      assert.equal(probe.sessions[n]!.caller.verstat, 'TN-Validation-Passed', header);
    }
  });

  const elsewhere = () => lab.x5u.replace('/sp.pem', '/elsewhere.pem');
  /** What the carrier is told is fixed text (no socket error, no address: RFC 8224's answer is not a port scanner); the log says what happened. */
  const cases: { what: string; sign: () => Signed | undefined; status: number; reason: RegExp; logged?: RegExp }[] = [
    { what: 'no Identity header', sign: () => undefined, status: 428, reason: /^Use Identity Header$/ },
    { what: 'a stale iat (secsipidx -iat now-3600)', sign: () => secsipidxSign({ dest: ENFORCED, iat: now() - 3600 }), status: 403, reason: /^Stale Date \(iat: 3[56]\d\d s old/ },
    { what: 'a future iat (secsipidx -iat now+3600)', sign: () => secsipidxSign({ dest: ENFORCED, iat: now() + 3600 }), status: 403, reason: /^Stale Date \(iat: 3[56]\d\d s in the future/ },
    { what: 'a key the certificate does not hold (openssl genpkey)', sign: () => secsipidxSign({ dest: ENFORCED, key: wrongKey }), status: 438, reason: /^Invalid Identity Header \(signature: the signature does not verify/ },
    { what: 'a tampered claim (dest re-encoded, signature kept)', sign: () => tamperedDest(ENFORCED), status: 438, reason: /^Invalid Identity Header \(signature:/ },
    { what: 'a claim for another caller (orig)', sign: () => secsipidxSign({ dest: ENFORCED, orig: '+15550009999' }), status: 438, reason: /^Invalid Identity Header \(orig: orig 15550009999 vs presented 15551230000\)$/ },
    { what: 'info that is not the signed x5u', sign: () => secsipidxSign({ dest: ENFORCED, x5u: elsewhere(), info: lab.x5u }), status: 436, reason: /^Bad Identity Info \(info: info https:\S+\/sp\.pem is not x5u https:\S+\/elsewhere\.pem\)$/ },
    { what: 'a certificate URL that is not served (404)', sign: () => secsipidxSign({ dest: ENFORCED, x5u: elsewhere() }), status: 436, reason: /^Bad Identity Info \(certificate: the x5u certificate could not be fetched\)$/, logged: /HTTP 404/ },
    { what: 'a chain to another root', sign: () => secsipidxSign({ dest: ENFORCED, x5u: refusals.untrusted, key: refusals.untrustedKey }), status: 437, reason: /^Unsupported Credential \(certificate: the certificate chain does not end at a trusted STI root\)$/, logged: /does not end at a configured STI trust anchor/ },
    { what: 'an oversized certificate (200 000 bytes, maxBytes 8192)', sign: () => secsipidxSign({ dest: ENFORCED, x5u: refusals.oversized }), status: 436, reason: /^Bad Identity Info \(certificate: the x5u certificate could not be fetched\)$/, logged: /more than 8192 bytes/ },
    { what: 'a certificate URL that never answers (timeoutMs 500)', sign: () => secsipidxSign({ dest: ENFORCED, x5u: refusals.slow }), status: 436, reason: /^Bad Identity Info \(certificate: the x5u certificate could not be fetched\)$/, logged: /no certificate within 500 ms/ },
    { what: 'a certificate URL that redirects', sign: () => secsipidxSign({ dest: ENFORCED, x5u: refusals.redirect }), status: 436, reason: /^Bad Identity Info \(certificate: the x5u certificate could not be fetched\)$/, logged: /HTTP 302 \(redirects are not followed\)/ },
  ];
  for (const c of cases) {
    test(`${c.what}: ${c.status}, ACKed, no agent session, audited`, async () => {
      const sessions = probe.sessions.length;
      const signed = c.sign();
      const t0 = Date.now();
      const r = await runSipp({ scenario: 'uac-stir-refused.xml', remote: sipUdp(tg), service: ENFORCED, keys: stirKeys(signed), timeoutMs: 10_000 });
      assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
      const final = finals(r);
      assert.deepEqual(final.map((m) => m.status), [c.status], describeRun(r));
      const [, phrase] = /^SIP\/2\.0 \d{3} (.*)$/.exec(final[0]!.first)!;
      assert.match(phrase!, c.reason, 'the reason phrase as SIPp logged it');
      assert.equal(sippWire(r.messages).filter((m) => m.dir === 'sent' && m.method === 'ACK').length, 1, 'SIPp ACKed it');
      assert.equal(probe.sessions.length, sessions, 'no agent session');
      assert.equal(tg.gw.calls.size, 0, 'no call left');
      const rec = await auditRecord(tg, `the ${c.status} audit record`, (a) => a.action === 'sip.invite' && a.remote === sippAddress(r));
      assert.deepEqual([rec.outcome, rec.status, rec.by, rec.verstat], ['rejected', c.status, 'stir-shaken', signed ? 'TN-Validation-Failed' : 'No-TN-Validation']);
      assert.ok(Date.now() - t0 < 3000, `answered within 3 s (${Date.now() - t0} ms)`);
      if (c.logged) assert.match(String(logged.filter((l) => l.msg === 'STIR/SHAKEN verification failed').at(-1)?.certificate), c.logged, 'the log says what happened');
    });
  }
});

// =============================================================================================

describe('outbound STIR/SHAKEN: a signing trunk\'s INVITE to SIPp, checked by secsipidx', () => {
  let tg: TestGateway;
  let uas: SippProcess;
  let pub: string;
  let strangerPub: string;

  before(async () => {
    // Two calls, one after the other: the carrier answers each and waits for voxgate's BYE.
    uas = await startSipp({ scenario: 'uas-answer-bye.xml', calls: 2, timeoutMs: 30_000 });
    tg = await startGateway(
      {
        sip: {
          listen,
          rtp: { portMin: 36200, portMax: 36299 },
          trunks: [{ name: 'carrier-a', codecs: ['pcmu'], stirShaken: { sign: true }, outbound: { address: `127.0.0.1:${uas.localPort}`, transport: 'udp', numbers: [OURS_A, OURS_B] } }],
          outboundRoutes: [{ prefix: '+1', trunk: 'carrier-a' }],
        },
        stirShaken: { sign: { privateKey: lab.signerKey, certificateUrl: lab.x5u, attestation: { default: 'B', numbers: { [OURS_A]: 'A' } } } },
      },
      { agents: { probe: () => new ProbeAgent() } },
    );
    // The signer certificate's public key, as a verifier takes it from the certificate.
    pub = join(keys, 'signer.pub.pem');
    writeFileSync(pub, execFileSync('openssl', ['x509', '-in', lab.signerCert, '-pubkey', '-noout'], { encoding: 'utf8' }));
    strangerPub = join(keys, 'wrong.pub.pem');
    writeFileSync(strangerPub, execFileSync('openssl', ['pkey', '-in', wrongKey, '-pubout'], { encoding: 'utf8' }));
  });
  after(async () => {
    await tg?.stop();
    await uas?.stop();
  });

  async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: OutboundCallView }> {
    const res = await fetch(`${tg.url}${path}`, { method, headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, body: (await res.json()) as OutboundCallView };
  }
  const callIn = (id: string, state: string) => waitFor(`call ${id} to be ${state}`, async () => ((await api('GET', `/api/calls/${id}`)).body.state === state ? true : undefined), 10_000);

  for (const [from, attest] of [[OURS_A, 'A'], [OURS_B, 'B']] as const) {
    test(`a call from ${from} carries Identity (attest ${attest}) and a Date equal to its iat; secsipidx -check passes with the certificate's key`, async () => {
      const placed = await api('POST', '/api/calls', { to: CALLEE, from, agent: 'probe' });
      assert.equal(placed.status, 201, JSON.stringify(placed.body));
      await callIn(placed.body.id, 'answered');
      const { sipCallId } = (await api('GET', `/api/calls/${placed.body.id}`)).body;
      assert.equal((await api('DELETE', `/api/calls/${placed.body.id}`)).status, 200);
      await callIn(placed.body.id, 'ended');

      const invite = sippWire(uas.messagesSoFar()).find((m) => m.dir === 'received' && m.method === 'INVITE' && sipHeader(m.text, 'Call-ID') === sipCallId);
      assert.ok(invite, `SIPp received the INVITE of ${sipCallId}`);
      const identity = sipHeader(invite.text, 'Identity');
      assert.ok(identity, 'an Identity header on the wire');
      assert.match(identity, new RegExp(`^[\\w-]+\\.[\\w-]+\\.[\\w-]+;info=<${lab.x5u.replace(/[.]/g, '\\.')}>;alg=ES256;ppt=shaken$`));
      const header = JSON.parse(Buffer.from(identity.split('.')[0]!, 'base64url').toString()) as Record<string, string>;
      assert.deepEqual(header, { alg: 'ES256', ppt: 'shaken', typ: 'passport', x5u: lab.x5u });
      const claims = payloadOf(identity);
      assert.deepEqual([claims.attest, claims.orig.tn, claims.dest.tn], [attest, tn(from), [tn(CALLEE)]]);
      assert.match(claims.origid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      const date = sipHeader(invite.text, 'Date');
      assert.ok(date, 'a Date header');
      assert.equal(Date.parse(date) / 1000, claims.iat, `RFC 8224 §4.1: Date (${date}) is the PASSporT's iat`);
      assert.ok(Math.abs(now() - claims.iat) < 30, 'and it is now');

      const good = secsipidxCheck(identity, pub);
      assert.equal(good.code, 0, `secsipidx -check: ${good.out}`);
      const bad = secsipidxCheck(identity, strangerPub);
      assert.notEqual(bad.code, 0, `secsipidx refuses it with a key that did not sign it: ${bad.out}`);
    });
  }

  test('the carrier saw both calls through (INVITE, 200, ACK, BYE): SIPp exits 0', async () => {
    const r = await uas.done;
    assert.equal(r.code, SIPP_EXIT.ok, describeRun(r));
    const msgs = sippWire(r.messages);
    assert.equal(msgs.filter((m) => m.dir === 'received' && m.method === 'INVITE').length, 2);
    assert.equal(msgs.filter((m) => m.dir === 'received' && m.method === 'BYE').length, 2);
    assert.ok(msgs.filter((m) => m.dir === 'received' && m.method === 'INVITE').every((m) => sipHeader(m.text, 'Identity')), 'each INVITE was signed');
  });
});
