/**
 * What STIR/SHAKEN verification adds to call setup, for bench/stir.ts: one voxgate process
 * (`voxgate serve`, src/ through tsx, or dist/ with BENCH_GATEWAY=dist) with two inbound trunks
 * from 127.0.0.1 that differ in one thing: trunk `verify` (+15550000001) has
 * `stirShaken: { verify: true }` (top-level `stirShaken.verify` in observe mode, the STI lab's
 * root and web CA), trunk `plain` (+15550000002) has none. Every INVITE carries a fresh Identity
 * header (and Date) signed for its own From and To; the calls alternate between the trunks, one
 * at a time, so both see the same gateway, the same warm code and the same neighbours' noise.
 * For each: INVITE -> 100 / first provisional / 180 / 200, ACK, BYE (and its 200) before the next.
 * A few calls per trunk first are not counted: the first verified one fetches the certificate;
 * the rest are verified with it cached (checked: the lab serves x5u once). Verification checked
 * on /metrics: voxgate_stir_verifications_total{trunk="verify",verstat="TN-Validation-Passed"}
 * grows by the verified calls, and by nothing else.
 */
import { randomBytes } from 'node:crypto';
import type { RemoteInfo, Socket } from 'node:dgram';
import type { StirSigner } from '../src/sip/identity/stir.js';
import type { StiLab } from '../src/testing/stir.js';
import { scrapeMetrics, startGateway, type GatewayProcess } from './trunk-gateway.js';
import { openSipSocket, parseSip, pcmuOffer, type SipMessage } from './trunk-sip.js';
import { callerNumber } from './stir-measure.js';

export const TRUNKS = { verify: '+15550000001', plain: '+15550000002' } as const;
export type TrunkName = keyof typeof TRUNKS;
const T1 = 500;
const WARMUP_CALLS = 5;

export interface CallTiming {
  trunk: TrunkName;
  tryingMs: number | undefined;
  /** The first response other than 100, and when. */
  firstStatus: number;
  firstMs: number;
  ringingMs: number | undefined;
  finalStatus: number;
  finalMs: number;
  byeStatus: number;
}

/** A gateway (bench/trunk-gateway.ts) with two trunks from 127.0.0.1 that differ only in whether they verify. */
function startStirGateway(lab: StiLab): Promise<GatewayProcess> {
  const trunk = (name: TrunkName) => ({ name, inbound: { numbers: [TRUNKS[name]], allowedAddresses: ['127.0.0.1/32'], agent: 'echo' }, codecs: ['pcmu' as const] });
  return startGateway({
    trunks: [{ ...trunk('verify'), stirShaken: { verify: true } }, trunk('plain')],
    stirShaken: { verify: { trustAnchors: [lab.stiRoot], fetchCa: [lab.webCa], mode: 'observe', maxAgeSeconds: 60, allowPrivateAddresses: true } },
  });
}

const first = (m: SipMessage, name: string) => m.headers.get(name)?.[0] ?? '';
const token = (n: number) => randomBytes(n).toString('hex');
const branchOf = (via: string) => /;\s*branch=([^;,\s]+)/i.exec(via)?.[1] ?? '';
const uriOf = (value: string) => /<([^>]+)>/.exec(value)?.[1] ?? value.split(';')[0]!.trim();

/**
 * A SIP UAC for one call at a time (RFC 3261): INVITE with extra headers (Timer A until a
 * response), ACK (§13.2.2.4; again for a repeated 2xx), BYE (Timer E), 200 to the gateway's own
 * in-dialog requests. bench/trunk-sip.ts's TrunkUac has no way to add headers to its INVITE.
 */
class StirUac {
  retransmits = 0;
  readonly #tx = new Map<string, (m: SipMessage) => void>();
  /** Call-ID -> the ACK sent, for a retransmitted 2xx. */
  readonly #acks = new Map<string, string>();
  readonly #local: string;

  constructor(
    private readonly socket: Socket,
    private readonly gw: { host: string; port: number },
  ) {
    this.#local = `127.0.0.1:${socket.address().port}`;
    socket.on('message', (d, rinfo) => this.#onDatagram(d, rinfo));
  }

  async call(trunk: TrunkName, from: string, extra: { name: string; value: string }[], sdp: string): Promise<CallTiming> {
    const to = TRUNKS[trunk];
    const callId = `${token(8)}@bench-stir`;
    const branch = `z9hG4bK-${token(6)}`;
    const fromHdr = `<sip:${from}@127.0.0.1>;tag=${token(4)}`;
    const ruri = `sip:${to}@${this.gw.host}:${this.gw.port};user=phone`;
    const via = `SIP/2.0/UDP ${this.#local};branch=${branch};rport`;
    const invite =
      `INVITE ${ruri} SIP/2.0\r\nVia: ${via}\r\nMax-Forwards: 70\r\nFrom: ${fromHdr}\r\nTo: <sip:${to}@${this.gw.host};user=phone>\r\nCall-ID: ${callId}\r\nCSeq: 1 INVITE\r\n` +
      `Contact: <sip:${from}@${this.#local}>\r\n${extra.map((h) => `${h.name}: ${h.value}\r\n`).join('')}Content-Type: application/sdp\r\nContent-Length: ${Buffer.byteLength(sdp)}\r\n\r\n${sdp}`;
    const t: Partial<CallTiming> = { trunk };
    const t0 = performance.now();
    const answer = await new Promise<SipMessage>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const deadline = setTimeout(() => reject(new Error(`${trunk}: no final answer to the INVITE within 10 s`)), 10_000);
      // §17.1.1.2 Timer A, until any response.
      const resend = (ms: number) => {
        timer = setTimeout(() => {
          this.retransmits++;
          this.#send(invite);
          resend(2 * ms);
        }, ms);
      };
      this.#tx.set(branch, (res) => {
        const at = performance.now() - t0;
        clearTimeout(timer);
        if (res.status === 100) t.tryingMs ??= at;
        else if (t.firstStatus === undefined) Object.assign(t, { firstStatus: res.status, firstMs: at });
        if (res.status === 180) t.ringingMs ??= at;
        if (res.status >= 200 && t.finalStatus === undefined) {
          Object.assign(t, { finalStatus: res.status, finalMs: at });
          clearTimeout(deadline);
          resolve(res);
        }
      });
      this.#send(invite);
      resend(T1);
    });
    this.#tx.delete(branch);
    if (answer.status >= 300) {
      // §17.1.1.3: the ACK of a non-2xx is in the INVITE's transaction.
      this.#send(`ACK ${ruri} SIP/2.0\r\nVia: ${via}\r\nMax-Forwards: 70\r\nFrom: ${fromHdr}\r\nTo: ${first(answer, 'to')}\r\nCall-ID: ${callId}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n`);
      return { ...(t as CallTiming), byeStatus: 0 };
    }
    const target = uriOf(first(answer, 'contact'));
    const toHdr = first(answer, 'to');
    const ack = `ACK ${target} SIP/2.0\r\nVia: SIP/2.0/UDP ${this.#local};branch=z9hG4bK-${token(6)};rport\r\nMax-Forwards: 70\r\nFrom: ${fromHdr}\r\nTo: ${toHdr}\r\nCall-ID: ${callId}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n`;
    this.#acks.set(callId, ack);
    this.#send(ack);
    const byeBranch = `z9hG4bK-${token(6)}`;
    const bye = `BYE ${target} SIP/2.0\r\nVia: SIP/2.0/UDP ${this.#local};branch=${byeBranch};rport\r\nMax-Forwards: 70\r\nFrom: ${fromHdr}\r\nTo: ${toHdr}\r\nCall-ID: ${callId}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n`;
    const byeStatus = await new Promise<number>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const deadline = setTimeout(() => done(0), 8000);
      const done = (status: number) => {
        clearTimeout(timer);
        clearTimeout(deadline);
        this.#tx.delete(byeBranch);
        resolve(status);
      };
      // §17.1.2.2 Timer E.
      const resend = (ms: number) => {
        timer = setTimeout(() => {
          this.retransmits++;
          this.#send(bye);
          resend(Math.min(2 * ms, 4000));
        }, ms);
      };
      this.#tx.set(byeBranch, (res) => res.status >= 200 && done(res.status));
      this.#send(bye);
      resend(T1);
    });
    this.#acks.delete(callId);
    return { ...(t as CallTiming), byeStatus };
  }

  #send(text: string): void {
    this.socket.send(text, this.gw.port, this.gw.host);
  }

  #onDatagram(data: Buffer, rinfo: RemoteInfo): void {
    const m = parseSip(data);
    if (!m) return;
    if (m.status > 0) {
      const tx = this.#tx.get(branchOf(first(m, 'via')));
      if (tx) return tx(m);
      const ack = this.#acks.get(first(m, 'call-id'));
      if (ack && m.status < 300 && /\bINVITE$/.test(first(m, 'cseq'))) this.#send(ack);
      return;
    }
    if (m.method === 'ACK') return;
    const vias = (m.headers.get('via') ?? []).map((v) => `Via: ${v}\r\n`).join('');
    this.socket.send(`SIP/2.0 200 OK\r\n${vias}From: ${first(m, 'from')}\r\nTo: ${first(m, 'to')}\r\nCall-ID: ${first(m, 'call-id')}\r\nCSeq: ${first(m, 'cseq')}\r\nContent-Length: 0\r\n\r\n`, rinfo.port, rinfo.address);
  }
}

export interface CallsResult {
  timings: CallTiming[];
  /** The verifications /metrics counted during the measured calls, by trunk and verstat. */
  verifications: Map<string, number>;
  /** How often the gateway fetched x5u (from the warm-up on). */
  certificateFetches: number;
  retransmits: number;
  /** What went wrong that makes the figures not the intended ones (empty: none). */
  problems: string[];
}

/** `n` calls on each trunk, alternating, each signed fresh for its numbers by `signer`. */
export async function measureCalls(lab: StiLab, signer: StirSigner, n: number, gapMs: number): Promise<CallsResult> {
  const gw = await startStirGateway(lab);
  const socket = await openSipSocket();
  // Where the gateway's RTP goes (and is dropped): one port for every call's offer.
  const rtp = await openSipSocket();
  rtp.on('message', () => undefined);
  const sdp = () => pcmuOffer(rtp.address().port);
  const uac = new StirUac(socket, { host: '127.0.0.1', port: gw.sipPort });
  const problems: string[] = [];
  const one = async (trunk: TrunkName, i: number) => {
    const from = callerNumber(i);
    const t = await uac.call(trunk, from, await signer.headers(from, TRUNKS[trunk]), sdp());
    if (t.finalStatus !== 200 || t.byeStatus !== 200) problems.push(`${trunk} call ${i}: INVITE ${t.finalStatus}, BYE ${t.byeStatus || 'timeout'}`);
    if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
    return t;
  };
  try {
    const hits0 = lab.hits.length;
    for (let i = 0; i < WARMUP_CALLS; i++) for (const trunk of ['verify', 'plain'] as const) await one(trunk, 1_000_000 + i);
    const m0 = await scrapeMetrics(gw.url);
    const timings: CallTiming[] = [];
    // The order within each pair alternates: neither trunk always follows the other's teardown.
    for (let i = 0; i < n; i++) for (const trunk of i % 2 ? (['plain', 'verify'] as const) : (['verify', 'plain'] as const)) timings.push(await one(trunk, i));
    const m1 = await scrapeMetrics(gw.url);
    const verifications = new Map<string, number>();
    for (const [k, v] of m1) {
      if (!k.startsWith('voxgate_stir_verifications_total{')) continue;
      const d = v - (m0.get(k) ?? 0);
      if (d) verifications.set(k.slice(k.indexOf('{')), d);
    }
    const passed = [...verifications].find(([k]) => k.includes('trunk="verify"') && k.includes('verstat="TN-Validation-Passed"'))?.[1] ?? 0;
    const others = [...verifications].filter(([k]) => !(k.includes('trunk="verify"') && k.includes('verstat="TN-Validation-Passed"')));
    if (passed !== n) problems.push(`voxgate_stir_verifications_total{trunk="verify",verstat="TN-Validation-Passed"} grew by ${passed}, not by the ${n} verified calls`);
    if (others.length) problems.push(`other verifications counted: ${others.map(([k, v]) => `${k} ${v}`).join(', ')}`);
    const certificateFetches = lab.hits.length - hits0;
    if (certificateFetches !== 1) problems.push(`the gateway fetched the certificate ${certificateFetches} times (expected once, at the first warm-up call)`);
    return { timings, verifications, certificateFetches, retransmits: uac.retransmits, problems };
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- voxgate stderr ---\n${gw.stderr()}`, { cause: err });
  } finally {
    socket.close();
    rtp.close();
    await gw.stop();
  }
}
