/**
 * rtpengine for bench/trunk-bridge.ts, the same way /work/shared/peers/rtpengine-bridge.mjs
 * drives it: the Debian daemon (userspace, no kernel tables: `--config-file=none --table=-1`)
 * on loopback, in its own process, driven by the ng protocol (bencode over UDP). The browser's
 * WebRTC offer goes through `offer` (ICE removed, DTLS off, RTP/AVP, Opus masked and PCMU
 * transcoded to), the phone's answer through `answer` (ICE forced back for the browser).
 */
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeUdpPort } from '../test/helpers/peers.js';

export const RTPENGINE = '/usr/bin/rtpengine';

type Bencode = number | string | Buffer | Bencode[] | { [key: string]: Bencode };

/** BEP 3 bencoding; dictionary keys sorted. */
export function bencode(v: Bencode): Buffer {
  if (typeof v === 'number') return Buffer.from(`i${Math.trunc(v)}e`);
  if (typeof v === 'string' || Buffer.isBuffer(v)) {
    const b = Buffer.from(v);
    return Buffer.concat([Buffer.from(`${b.length}:`), b]);
  }
  if (Array.isArray(v)) return Buffer.concat([Buffer.from('l'), ...v.map(bencode), Buffer.from('e')]);
  return Buffer.concat([Buffer.from('d'), ...Object.keys(v).sort().flatMap((k) => [bencode(k), bencode(v[k]!)]), Buffer.from('e')]);
}

/** Bencode to values (strings as UTF-8); throws on malformed input. */
export function bdecode(buf: Buffer): Bencode {
  let i = 0;
  const parse = (): Bencode => {
    const c = buf[i];
    if (c === 0x69) {
      const e = buf.indexOf(0x65, i);
      const n = Number(buf.subarray(i + 1, e).toString());
      i = e + 1;
      return n;
    }
    if (c === 0x6c) {
      i++;
      const a: Bencode[] = [];
      while (buf[i] !== 0x65) {
        if (i >= buf.length) throw new Error('bencode: unterminated list');
        a.push(parse());
      }
      i++;
      return a;
    }
    if (c === 0x64) {
      i++;
      const o: Record<string, Bencode> = {};
      while (buf[i] !== 0x65) {
        if (i >= buf.length) throw new Error('bencode: unterminated dictionary');
        const k = parse();
        o[String(k)] = parse();
      }
      i++;
      return o;
    }
    const colon = buf.indexOf(0x3a, i);
    if (colon < 0) throw new Error('bencode: bad string');
    const len = Number(buf.subarray(i, colon).toString());
    const s = buf.subarray(colon + 1, colon + 1 + len).toString();
    i = colon + 1 + len;
    return s;
  };
  return parse();
}

export type NgReply = Record<string, Bencode>;

export interface Rtpengine {
  pid: number;
  /** ng offer: the browser's WebRTC offer -> the RTP/AVP PCMU offer for the phone. */
  offer(callId: string, fromTag: string, sdp: string): Promise<string>;
  /** ng answer: the phone's answer -> the WebRTC answer for the browser. */
  answer(callId: string, fromTag: string, toTag: string, sdp: string): Promise<string>;
  delete(callId: string, fromTag: string): Promise<void>;
  /** Lines of its log with ERR, CRIT or WARNING. */
  logProblems(): string[];
  stop(): Promise<void>;
}

/** Starts a fresh rtpengine (RTP ports 20000-24999 on 127.0.0.1) and waits for its ping. */
export async function startRtpengine(): Promise<Rtpengine> {
  if (!existsSync(RTPENGINE)) throw new Error(`${RTPENGINE} is missing: apt-get install -y --no-install-recommends rtpengine-daemon`);
  const ngPort = await freeUdpPort();
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-bench-rtpengine-'));
  const logFile = join(dir, 'rtpengine.log');
  const fd = openSync(logFile, 'w');
  const child = spawn(
    RTPENGINE,
    [
      // Debian's config turns on the kernel module's tables; this runs in userspace only.
      '--config-file=none',
      '--table=-1',
      '--interface=127.0.0.1',
      `--listen-ng=127.0.0.1:${ngPort}`,
      '--port-min=20000',
      '--port-max=24999',
      '--foreground',
      '--log-stderr',
      `--log-level=${process.env.BENCH_RTPENGINE_LOGLEVEL ?? 5}`,
      '--timeout=60',
      '--delete-delay=0',
    ],
    { stdio: ['ignore', fd, fd] },
  );
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const sock = createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  const pending = new Map<string, (r: NgReply) => void>();
  let n = 0;
  sock.on('message', (m) => {
    const sp = m.indexOf(0x20);
    const cookie = m.subarray(0, sp).toString();
    const p = pending.get(cookie);
    if (!p) return;
    pending.delete(cookie);
    try {
      p(bdecode(m.subarray(sp + 1)) as NgReply);
    } catch (err) {
      p({ result: 'error', 'error-reason': `undecodable reply: ${(err as Error).message}` });
    }
  });
  const cmd = (dict: Record<string, Bencode>, timeoutMs = 8000): Promise<NgReply> => {
    const cookie = `${process.pid}_${++n}`;
    const msg = Buffer.concat([Buffer.from(`${cookie} `), bencode(dict)]);
    return new Promise<NgReply>((resolve, reject) => {
      let tries = 0;
      const send = () => {
        if (tries++ < 4) sock.send(msg, ngPort, '127.0.0.1');
      };
      // The ng protocol is over UDP: resend until the reply (rtpengine answers a repeated cookie from its cache).
      const retry = setInterval(send, 2000);
      const timer = setTimeout(() => {
        clearInterval(retry);
        pending.delete(cookie);
        reject(new Error(`rtpengine: no reply to ng ${String(dict.command)} within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(cookie, (r) => {
        clearInterval(retry);
        clearTimeout(timer);
        resolve(r);
      });
      send();
    });
  };
  const ok = (r: NgReply, what: string): NgReply => {
    if (r.result !== 'ok') throw new Error(`rtpengine ng ${what}: ${String(r['error-reason'] ?? JSON.stringify(r))}`);
    return r;
  };
  for (let t = 0; ; t++) {
    try {
      if ((await cmd({ command: 'ping' }, 500)).result === 'pong') break;
    } catch {
      if (t > 40 || child.exitCode !== null) {
        sock.close();
        throw new Error(`rtpengine does not answer ping; its log:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
      }
    }
  }
  return {
    pid: child.pid!,
    offer: async (callId, fromTag, sdp) =>
      String(
        ok(
          await cmd({
            command: 'offer',
            'call-id': callId,
            'from-tag': fromTag,
            sdp,
            'transport-protocol': 'RTP/AVP',
            ICE: 'remove',
            DTLS: 'off',
            SDES: ['off'],
            'rtcp-mux': ['demux'],
            codec: { mask: ['all'], transcode: ['PCMU'] },
            replace: ['origin', 'session-connection'],
          }),
          'offer',
        ).sdp,
      ),
    answer: async (callId, fromTag, toTag, sdp) =>
      String(ok(await cmd({ command: 'answer', 'call-id': callId, 'from-tag': fromTag, 'to-tag': toTag, sdp, ICE: 'force', replace: ['origin', 'session-connection'] }), 'answer').sdp),
    delete: async (callId, fromTag) => {
      await cmd({ command: 'delete', 'call-id': callId, 'from-tag': fromTag }, 3000).catch(() => undefined);
    },
    logProblems: () => readFileSync(logFile, 'utf8').split('\n').filter((l) => /ERR|CRIT|WARNING/.test(l)),
    stop: async () => {
      sock.close();
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 8000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
