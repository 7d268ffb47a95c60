import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeTcpPort, trackPeer, waitFor } from './peers.js';

/**
 * Debian's baresip 1.0.0 as a real SIP phone/carrier on loopback, driven over its `ctrl_tcp`
 * module (netstring-framed JSON). What this version does, read from its v1.0.0 sources:
 *
 * - `sip_listen 127.0.0.1:P` opens UDP *and* TCP on P and TLS on P+1, always: `main.c` calls
 *   `ua_init(..., true, true, true)`. The transport of a call is chosen per request, by
 *   `;transport=` in the dialled URI or in the account's `outbound` proxy.
 * - `net_interface 127.0.0.1` pins the address put in SDP/Contact (an interface *name* such as
 *   `lo` is rejected: libre's getifaddrs lookup skips loopback). SIP and ctrl_tcp are bound to
 *   127.0.0.1; RTP/RTCP sockets are not: `stream.c` binds them to 0.0.0.0 ("we listen on all
 *   interfaces", not configurable in 1.0), as are libre's DNS client sockets (`dns_server
 *   127.0.0.1:53` below, and we only dial IP addresses). They only *send* to loopback peers;
 *   `npm run test:e2e` runs in a loopback-only network namespace anyway.
 * - Its Contact user is `<user>-0x<pointer>` (`sip:carrier-0x55d2...@127.0.0.1:P`); an incoming
 *   INVITE whose Request-URI user is not the account's gets 404 ("UA not found").
 * - `outbound=` makes every request carry `Route: <outbound;lr>` and go there (RFC 3261 §8.1.2).
 * - The microphone is `aufile` (a WAV, played once: at its end the call is closed with
 *   CALL_CLOSED "end of file") or `ausine` (endless tone; needs 48 kHz stereo source, so the
 *   helper sets `ausrc_srate 48000` / `ausrc_channels 2` and baresip resamples).
 * - `sndfile` is an audio *filter*: per call it writes `dump-<local time to the second>-enc.wav`
 *   (what baresip encodes and sends) and `...-dec.wav` (what it decoded from the far end) into
 *   `snd_path`, at the codec's rate (8 kHz for PCMU). libsndfile writes the WAV sizes on close,
 *   i.e. when the call object is freed after CALL_CLOSED: use `waitForRecording`.
 * - No audio player module is loaded, so nothing plays to a device; decoding and the filters
 *   still run for every received RTP packet.
 * - DTMF: the menu's `sndcode <digits>` queues RFC 4733 telephone-events (libre `telev`: each
 *   digit ≥ 9 packets of one ptime, then 3 end packets), sent with the payload type the far end
 *   put in its SDP; nothing is sent if the far end offered no telephone-event. Received
 *   telephone-events come back as CALL_DTMF_START (param = digit) and CALL_DTMF_END.
 * - With `answermode=auto` an incoming call is answered at once and emits no CALL_INCOMING,
 *   only CALL_ESTABLISHED (direction "incoming").
 * - libre 1.1 does not verify the server certificate on outgoing SIP/TLS connections;
 *   `sip_cafile` is loaded but not enforced. `sip_certificate` (PEM with key) is what baresip
 *   serves on its own TLS port.
 */

/** One `ctrl_tcp` event message (`{"event":true,"class":"call","type":"CALL_CLOSED",...}`). */
export interface BaresipEvent {
  /** CALL_INCOMING, CALL_RINGING, CALL_PROGRESS, CALL_ESTABLISHED, CALL_CLOSED, CALL_DTMF_START, CALL_DTMF_END, CALL_RTCP, CALL_MENC, AUDIO_ERROR, ... */
  type: string;
  /** call, register, application, VU_REPORT, other */
  class: string;
  /** CALL_CLOSED: the reason; CALL_DTMF_START: the digit; CALL_ESTABLISHED/RINGING: the peer URI. */
  param: string | undefined;
  direction: 'incoming' | 'outgoing' | undefined;
  peeruri: string | undefined;
  /** The call's SIP Call-ID. */
  callId: string | undefined;
  /** Date.now() when the helper read it. */
  at: number;
  raw: Readonly<Record<string, unknown>>;
}

export type BaresipCodec = 'pcmu' | 'pcma' | 'g722' | 'opus';
export type BaresipAnswerMode = 'manual' | 'early' | 'auto';

export interface BaresipOptions {
  /** User part of the account AOR `sip:<user>@127.0.0.1`; default 'carrier'. */
  user?: string;
  displayName?: string;
  /** Digest credentials for a 401/407 challenge (`auth_user` defaults to `user`). */
  authUser?: string;
  authPassword?: string;
  /**
   * Outbound proxy every request goes to, e.g. `sip:127.0.0.1:5070;transport=tcp`; without it
   * baresip routes by the dialled URI (host:port and `;transport=`).
   */
  outbound?: string;
  /** Codecs offered/accepted, in order; default ['pcmu']. Loads g711/g722/opus modules as needed. */
  codecs?: BaresipCodec[];
  /** `mediaenc=` on the account: SDES-SRTP; `srtp-mand` offers RTP/SAVP and requires it. */
  mediaEnc?: 'srtp' | 'srtp-mand' | 'srtp-mandf';
  /** What to do with incoming calls; default 'manual' (then call `accept()`). */
  answerMode?: BaresipAnswerMode;
  /**
   * The microphone: a 16-bit PCM WAV file (played once; the call closes at its end) or an
   * endless sine. Default `{ sineHz: 1000 }`.
   */
  source?: { wav: string } | { sineHz: number };
  /** Load sndfile and record both directions of each call; default true. */
  record?: boolean;
  /** `-s`: SIP messages in `log()`; default true (cheap, and what you want when a test fails). */
  sipTrace?: boolean;
  /** `sip_certificate`: PEM with certificate and key, served on the TLS port (sipPort + 1). */
  tlsCertificate?: string;
  /** `sip_cafile`: loaded into baresip's TLS context (not enforced by libre 1.1, see above). */
  tlsCaFile?: string;
  ptime?: number;
  /** RTP port range; default 1024-49152 (baresip's own). */
  rtpPorts?: [min: number, max: number];
  /** Extra config lines, e.g. `['rtp_timeout 5']`. */
  extraConfig?: string[];
  /** Ms to wait for baresip to come up; default 10 000. */
  startTimeoutMs?: number;
}

export interface BaresipRecording {
  path: string;
  /** enc: what baresip sent (before encoding); dec: what it received (after decoding). */
  direction: 'enc' | 'dec';
}

export interface Baresip {
  /** UDP and TCP SIP port on 127.0.0.1. */
  readonly sipPort: number;
  /** TLS SIP port (baresip 1.0 always uses sipPort + 1). */
  readonly tlsPort: number;
  readonly ctrlPort: number;
  /** `sip:carrier@127.0.0.1` */
  readonly aor: string;
  /** The temp dir with config, accounts and recordings (removed by stop()). */
  readonly dir: string;
  /** Every event read so far, in order. Use `events.length` as `since` to wait for a later one. */
  readonly events: readonly BaresipEvent[];
  /**
   * A URI that reaches this baresip over `transport`, for the far end to dial. Its user part
   * must be the account's: baresip 1.0 answers any other Request-URI user with 404 ("UA not found").
   */
  uri(transport?: 'udp' | 'tcp' | 'tls'): string;
  /** Sends one ctrl_tcp command; resolves with its `data` text, rejects when `ok` is false. */
  command(command: string, params?: string): Promise<string>;
  /** `dial <uri>`; resolves when baresip has sent the INVITE (wait for CALL_ESTABLISHED yourself). */
  dial(uri: string): Promise<void>;
  /** `hangup`: BYE (or CANCEL) for the current call. */
  hangup(): Promise<void>;
  /** `accept`: answers the current incoming call (answerMode 'manual'). */
  accept(): Promise<void>;
  /** `sndcode <digits>`: RFC 4733 events in the current call; resolves when queued, not when sent. */
  sendDtmf(digits: string): Promise<void>;
  setAnswerMode(mode: BaresipAnswerMode): Promise<void>;
  /**
   * The first event at index >= `since` (default 0, i.e. it may already have happened) matching
   * `pred` (a type name or a predicate); rejects after `ms` or when baresip exits.
   */
  waitForEvent(pred: string | ((e: BaresipEvent) => boolean), ms: number, since?: number): Promise<BaresipEvent>;
  /** The sndfile WAVs written so far, oldest first. */
  recordings(): BaresipRecording[];
  /** The newest recording of `direction` (default 'dec', the far end's audio), if any. */
  recordingPath(direction?: 'enc' | 'dec'): string | undefined;
  /** Resolves with the newest `direction` recording once libsndfile has closed it (its RIFF size is final). */
  waitForRecording(ms: number, direction?: 'enc' | 'dec'): Promise<string>;
  /** stdout + stderr so far (SIP trace when sipTrace). */
  log(): string;
  /** SIGTERM (baresip hangs up its calls), then SIGKILL if it lingers; removes the temp dir. */
  stop(): Promise<void>;
}

const MODULES = '/usr/lib/baresip/modules';
const CODEC_MODULE: Record<BaresipCodec, string> = { pcmu: 'g711.so', pcma: 'g711.so', g722: 'g722.so', opus: 'opus.so' };
const CODEC_PARAM: Record<BaresipCodec, string> = { pcmu: 'pcmu', pcma: 'pcma', g722: 'g722', opus: 'opus/48000/2' };

async function tcpFree(port: number): Promise<boolean> {
  const srv = createServer();
  const ok = await new Promise<boolean>((r) => {
    srv.once('error', () => r(false));
    srv.listen(port, '127.0.0.1', () => r(true));
  });
  if (ok) await new Promise<void>((r) => srv.close(() => r()));
  return ok;
}

/** P with UDP P, TCP P and TCP P+1 free: what `sip_listen` will bind (UDP+TCP, and TLS on P+1). */
async function freeSipPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    const { port } = s.address();
    await new Promise<void>((r) => s.close(() => r()));
    if (port < 65535 && (await tcpFree(port)) && (await tcpFree(port + 1))) return port;
  }
  throw new Error('no free SIP port pair on 127.0.0.1');
}

/** Channels and rate of a PCM WAV (so aufile's source can be resampled to the codec). */
function wavFormat(path: string): { rate: number; channels: number; bits: number } {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(4096);
    const n = readSync(fd, head, 0, head.length, 0);
    if (head.toString('ascii', 0, 4) !== 'RIFF' || head.toString('ascii', 8, 12) !== 'WAVE') throw new Error(`${path} is not a WAV file`);
    for (let off = 12; off + 8 <= n; ) {
      const id = head.toString('ascii', off, off + 4);
      const size = head.readUInt32LE(off + 4);
      if (id === 'fmt ') return { channels: head.readUInt16LE(off + 10), rate: head.readUInt32LE(off + 12), bits: head.readUInt16LE(off + 22) };
      off += 8 + size + (size & 1);
    }
    throw new Error(`${path} has no fmt chunk`);
  } finally {
    closeSync(fd);
  }
}

/** True once a WAV's RIFF size covers the whole file, i.e. libsndfile has rewritten the header on close. */
function wavClosed(path: string): boolean {
  try {
    const size = statSync(path).size;
    if (size < 44) return false;
    const fd = openSync(path, 'r');
    try {
      const head = Buffer.alloc(8);
      readSync(fd, head, 0, 8, 0);
      return head.readUInt32LE(4) === size - 8;
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

function toEvent(o: Record<string, unknown>): BaresipEvent {
  const str = (k: string) => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
  const dir = str('direction');
  return {
    type: str('type') ?? '?',
    class: str('class') ?? '?',
    param: str('param'),
    direction: dir === 'incoming' || dir === 'outgoing' ? dir : undefined,
    peeruri: str('peeruri'),
    callId: str('id'),
    at: Date.now(),
    raw: o,
  };
}

/** Splits a byte stream into netstrings (`<len>:<payload>,`), as ctrl_tcp frames both ways. */
class NetstringReader {
  #buf = Buffer.alloc(0);
  constructor(private readonly onFrame: (payload: string) => void) {}

  push(chunk: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    for (;;) {
      const colon = this.#buf.indexOf(0x3a);
      if (colon < 0) return;
      const len = Number(this.#buf.toString('ascii', 0, colon));
      if (!Number.isInteger(len) || len < 0) throw new Error(`bad netstring header ${JSON.stringify(this.#buf.toString('ascii', 0, colon))}`);
      if (this.#buf.length < colon + 1 + len + 1) return;
      if (this.#buf[colon + 1 + len] !== 0x2c) throw new Error('netstring without its trailing comma');
      const payload = this.#buf.toString('utf8', colon + 1, colon + 1 + len);
      this.#buf = this.#buf.subarray(colon + 2 + len);
      this.onFrame(payload);
    }
  }
}

function netstring(s: string): Buffer {
  const body = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length}:`, 'ascii'), body, Buffer.from(',', 'ascii')]);
}

export async function startBaresip(opts: BaresipOptions = {}): Promise<Baresip> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-baresip-'));
  const user = opts.user ?? 'carrier';
  const codecs = opts.codecs ?? ['pcmu'];
  const record = opts.record ?? true;
  const sipPort = await freeSipPort();
  const ctrlPort = await freeTcpPort();
  const source = opts.source ?? { sineHz: 1000 };

  const config: string[] = [
    'poll_method epoll',
    `sip_listen 127.0.0.1:${sipPort}`,
    // An IP, not `lo`: the address baresip puts in Contact and SDP c=.
    'net_interface 127.0.0.1',
    // Only ever ask loopback, should anything need resolving (we dial IP addresses).
    'dns_server 127.0.0.1:53',
    'call_local_timeout 120',
    'call_max_calls 4',
    'audio_buffer 20-160',
    'audio_level no',
    'audio_player none,none',
    'audio_alert none,none',
    'ausrc_format s16',
    'auplay_format s16',
    'auenc_format s16',
    'audec_format s16',
    'rtcp_mux no',
    'jitter_buffer_delay 1-10',
    'rtp_stats no',
    `module_path ${MODULES}`,
    'ringback_disabled yes',
    `ctrl_tcp_listen 127.0.0.1:${ctrlPort}`,
  ];
  if (opts.rtpPorts) config.push(`rtp_ports ${opts.rtpPorts[0]}-${opts.rtpPorts[1]}`);
  if (opts.tlsCertificate) config.push(`sip_certificate ${opts.tlsCertificate}`);
  if (opts.tlsCaFile) config.push(`sip_cafile ${opts.tlsCaFile}`);
  if ('wav' in source) {
    const f = wavFormat(source.wav);
    if (f.bits !== 16) throw new Error(`${source.wav}: aufile needs 16-bit PCM, not ${f.bits}-bit`);
    config.push(`audio_source aufile,${source.wav}`, `ausrc_srate ${f.rate}`, `ausrc_channels ${f.channels}`);
  } else {
    // ausine only makes 48 kHz stereo; baresip resamples it to the codec.
    config.push(`audio_source ausine,${source.sineHz}`, 'ausrc_srate 48000', 'ausrc_channels 2');
  }
  for (const m of new Set(codecs.map((c) => CODEC_MODULE[c]))) config.push(`module ${m}`);
  config.push(`module ${'wav' in source ? 'aufile.so' : 'ausine.so'}`);
  if (record) config.push('module sndfile.so', `snd_path ${dir}`);
  if (opts.mediaEnc) config.push('module srtp.so');
  config.push('module_tmp account.so', 'module_app menu.so', 'module_app ctrl_tcp.so');
  config.push(...(opts.extraConfig ?? []));
  writeFileSync(join(dir, 'config'), config.join('\n') + '\n');

  const aor = `sip:${user}@127.0.0.1`;
  const params = [
    'regint=0',
    `answermode=${opts.answerMode ?? 'manual'}`,
    `audio_codecs=${codecs.map((c) => CODEC_PARAM[c]).join(',')}`,
    `ptime=${opts.ptime ?? 20}`,
    'mwi=no',
    'call_transfer=no',
  ];
  if (opts.mediaEnc) params.push(`mediaenc=${opts.mediaEnc}`);
  if (opts.outbound) params.push(`outbound="${opts.outbound}"`);
  if (opts.authUser !== undefined || opts.authPassword !== undefined) params.push(`auth_user=${opts.authUser ?? user}`);
  if (opts.authPassword !== undefined) params.push(`auth_pass=${opts.authPassword}`);
  const name = opts.displayName ? `"${opts.displayName}" ` : '';
  writeFileSync(join(dir, 'accounts'), `${name}<${aor}>;${params.join(';')}\n`);

  const args = ['-4', '-f', dir];
  if (opts.sipTrace ?? true) args.push('-s');
  const proc: ChildProcess = spawn('baresip', args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
  trackPeer(proc, dir);
  let output = '';
  proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  let exitCode: number | null | undefined;
  const bus = new EventEmitter();
  const exited = new Promise<void>((r) =>
    proc.once('exit', (code, signal) => {
      exitCode = code ?? (signal ? -1 : null);
      bus.emit('exit');
      r();
    }),
  );

  const events: BaresipEvent[] = [];
  const pending: { resolve: (data: string) => void; reject: (e: Error) => void; what: string }[] = [];
  let sock: Socket | undefined;
  let tail: Promise<unknown> = Promise.resolve();

  const cleanupFailedStart = async (err: unknown): Promise<never> => {
    sock?.destroy();
    if (exitCode === undefined) {
      proc.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`baresip did not start: ${String(err)}\n${output}`);
  };

  try {
    sock = await waitFor(
      'baresip ctrl_tcp to accept',
      async () => {
        if (exitCode !== undefined) throw new Error(`baresip exited (${exitCode})`);
        return await new Promise<Socket | false>((r) => {
          const s = createConnection({ host: '127.0.0.1', port: ctrlPort });
          s.once('connect', () => r(s));
          s.once('error', () => r(false));
        });
      },
      opts.startTimeoutMs ?? 10_000,
    );
  } catch (err) {
    return cleanupFailedStart(err);
  }

  const reader = new NetstringReader((payload) => {
    let msg: unknown;
    try {
      msg = JSON.parse(payload);
    } catch {
      output += `\n[helper] unparsable ctrl_tcp frame: ${payload}\n`;
      return;
    }
    if (typeof msg !== 'object' || msg === null) return;
    const o = msg as Record<string, unknown>;
    if (o.response === true) {
      const p = pending.shift();
      if (!p) return;
      const data = typeof o.data === 'string' ? o.data : '';
      if (o.ok === true) p.resolve(data);
      else p.reject(new Error(`baresip refused ${p.what}: ${data}`));
    } else if (o.event === true || o.event === 'true') {
      const e = toEvent(o);
      events.push(e);
      bus.emit('event', e);
    }
  });
  sock.on('data', (d: Buffer) => reader.push(d));
  sock.on('error', () => undefined);
  sock.on('close', () => {
    for (const p of pending.splice(0)) p.reject(new Error(`baresip closed ctrl_tcp before answering ${p.what}\n${output}`));
  });

  // ctrl_tcp answers in order but re-assembles its input badly: one command in flight at a time.
  const command = (cmd: string, params?: string): Promise<string> => {
    const what = params === undefined ? cmd : `${cmd} ${params}`;
    const run = (): Promise<string> =>
      new Promise<string>((resolve, reject) => {
        if (!sock || sock.destroyed) return reject(new Error(`baresip ctrl_tcp is closed (${what})`));
        pending.push({ resolve, reject, what });
        const token = `t${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
        const body: Record<string, string> = { command: cmd, token };
        if (params !== undefined) body.params = params;
        sock.write(netstring(JSON.stringify(body)));
      });
    const p = tail.then(run, run);
    tail = p.catch(() => undefined);
    return p;
  };

  const waitForEvent = (pred: string | ((e: BaresipEvent) => boolean), ms: number, since = 0): Promise<BaresipEvent> => {
    const match = typeof pred === 'string' ? (e: BaresipEvent) => e.type === pred : pred;
    const what = typeof pred === 'string' ? pred : 'a matching event';
    const seen = events.slice(since).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<BaresipEvent>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        bus.off('event', onEvent);
        bus.off('exit', onExit);
      };
      const onEvent = (e: BaresipEvent) => {
        if (!match(e)) return;
        done();
        resolve(e);
      };
      const onExit = () => {
        done();
        reject(new Error(`baresip exited (${exitCode}) while waiting for ${what}\n${output}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for baresip ${what}; events: ${events.map((e) => `${e.type}(${e.param ?? ''})`).join(' ')}`));
      }, ms);
      bus.on('event', onEvent);
      bus.on('exit', onExit);
      if (exitCode !== undefined) onExit();
    });
  };

  const recordings = (): BaresipRecording[] => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return [];
    }
    return names
      .map((n) => /^dump-.*-(enc|dec)\.wav$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ path: join(dir, m[0]), direction: m[1] as 'enc' | 'dec', mtime: statSync(join(dir, m[0])).mtimeMs }))
      .sort((a, b) => a.mtime - b.mtime || a.path.localeCompare(b.path))
      .map(({ path, direction }) => ({ path, direction }));
  };
  const recordingPath = (direction: 'enc' | 'dec' = 'dec'): string | undefined => recordings().filter((r) => r.direction === direction).at(-1)?.path;

  let stopped: Promise<void> | undefined;
  return {
    sipPort,
    tlsPort: sipPort + 1,
    ctrlPort,
    aor,
    dir,
    events,
    uri(transport = 'udp') {
      return transport === 'tls' ? `sip:${user}@127.0.0.1:${sipPort + 1};transport=tls` : `sip:${user}@127.0.0.1:${sipPort}${transport === 'tcp' ? ';transport=tcp' : ''}`;
    },
    command,
    async dial(uri) {
      await command('dial', uri);
    },
    async hangup() {
      await command('hangup');
    },
    async accept() {
      await command('accept');
    },
    async sendDtmf(digits) {
      if (!/^[0-9*#A-Da-d]+$/.test(digits)) throw new Error(`not DTMF digits: ${digits}`);
      await command('sndcode', digits.toUpperCase());
    },
    async setAnswerMode(mode) {
      await command('answermode', mode);
    },
    waitForEvent,
    recordings,
    recordingPath,
    waitForRecording(ms, direction = 'dec') {
      return waitFor(
        `baresip's closed ${direction} recording`,
        () => {
          const p = recordingPath(direction);
          return p !== undefined && wavClosed(p) ? p : undefined;
        },
        ms,
      );
    },
    log: () => output,
    stop() {
      stopped ??= (async () => {
        sock?.destroy();
        if (exitCode === undefined) {
          proc.kill('SIGTERM');
          // baresip sends BYE for live calls and waits for the answers; a second signal exits at once.
          const t1 = setTimeout(() => proc.kill('SIGTERM'), 3000);
          const t2 = setTimeout(() => proc.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(t1);
          clearTimeout(t2);
        }
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
