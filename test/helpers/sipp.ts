import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { trackPeer, waitFor } from './peers.js';

/**
 * Debian's SIPp (sip-tester 3.6.1, built `-SCTP-PCAP-RTPSTREAM`: pcap play and rtp_stream yes,
 * TLS no: `-t l1` exits with "To use a TLS transport you must compile SIPp with OpenSSL").
 * See test/sipp/README.md for the scenario conventions.
 *
 * Everything is bound to 127.0.0.1: `-i` (Via/Contact/From), `-bind_local` (else SIPp listens
 * on 0.0.0.0), `-mi` (media sockets), `-ci` (its UDP control socket, which it otherwise binds
 * on 0.0.0.0:8888-8947). Media sockets are bound at start-up ([media_port], from `-mp` or the
 * first free even port from 6000).
 */

/** test/sipp/, where scenario files live. */
export const SIPP_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'sipp');

export type SippTransport = 'u1' | 't1' | 'l1';

/**
 * SIPp's exit codes (include/defines.h), as this build uses them: 1 is also what a bad scenario
 * or option gives (read `errors`), and a SIGTERM gives 0 when no call had failed.
 */
export const SIPP_EXIT = { ok: 0, failed: 1, internalCommand: 97, noCallsProcessed: 99, fatal: 255, bindError: 254 } as const;

export interface SippOptions {
  /** A scenario file: relative to test/sipp/ (e.g. 'uac-call-bye.xml') or absolute. */
  scenario?: string;
  /** One of SIPp's embedded scenarios instead (`-sn`), e.g. 'uas' or 'uac'. */
  builtin?: 'uac' | 'uas' | 'regexp' | 'branchc' | 'branchs';
  /** host:port of the peer; omit for a UAS that only answers. */
  remote?: string;
  /** `-t`; default 'u1'. 'l1' is refused by this SIPp build (no OpenSSL). */
  transport?: SippTransport;
  /** `-p`; default a free port (UDP and TCP both free). */
  localPort?: number;
  /** `-s`: user part of the Request-URI ([service]); default 'service'. */
  service?: string;
  /** `-m`: exit after this many calls; default 1. */
  calls?: number;
  /** `-r`: calls per second; default SIPp's 10. */
  rate?: number;
  /** `-d`: length of each `<pause/>` without `milliseconds`, in ms; default 1000 (SIPp's own is 0). */
  pauseMs?: number;
  /** `-set name value`: global variables, which the scenario must declare in `<Global variables="..."/>`. */
  vars?: Record<string, string>;
  /** `-key name value`: [name] keywords, also usable as a whole `play_pcap_audio`/`rtp_stream` value. */
  keys?: Record<string, string>;
  /** `-mp`: the media port ([media_port]); default SIPp's search from 6000. */
  mediaPort?: number;
  /** `-rtp_echo`: echo RTP received on [media_port] (and +2) back to its sender. */
  rtpEcho?: boolean;
  /** `-au`/`-ap`: credentials for `<send ... auth>` / [authentication]. */
  auth?: { user: string; password: string };
  /**
   * Bound on the whole run. SIPp's own `-timeout <s> -timeout_error` ends it first (whole seconds,
   * rounded up; it exits 255 "timed out after"); SIGTERM then SIGKILL 3 s later is the backstop.
   */
  timeoutMs: number;
  /**
   * Resolve startSipp() only once SIPp listens on localPort; default true when there is no
   * `remote` (a UAS must be up before the other side dials).
   */
  waitListening?: boolean;
  extraArgs?: string[];
}

export interface SippResult {
  /** SIPp's exit code (see SIPP_EXIT): 0 all calls succeeded, 1 some failed; -1 if killed by a signal. */
  code: number;
  /** True when timeoutMs ran out (SIPp's global timeout fired, or the helper had to kill it). */
  timedOut: boolean;
  args: string[];
  /** stdout + stderr (SIPp prints its statistics screens there). */
  stdout: string;
  /** The `-trace_msg` log: every SIP message sent and received, with timestamps. */
  messages: string;
  /** The `-trace_err` log: unexpected messages and errors. */
  errors: string;
  /** The `-trace_screen` dump (per-message counters, statistics) SIPp writes at a normal end; may be empty. */
  screen: string;
  /** The `-trace_logs` file: what the scenario's `<log message="..."/>` actions wrote, one line each. */
  logs: string;
}

export interface SippProcess {
  readonly localPort: number;
  readonly pid: number | undefined;
  /** Settles when SIPp exits (or is killed at timeoutMs). */
  readonly done: Promise<SippResult>;
  /** SIGTERM now (SIPp flushes its logs; exits 0 unless a call failed); resolves with the result. */
  stop(): Promise<SippResult>;
  /** The `-trace_msg` log as written so far (SIPp writes each message as it goes), for waiting on a message. */
  messagesSoFar(): string;
}

async function freeSippPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    const { port } = s.address();
    await new Promise<void>((r) => s.close(() => r()));
    const srv = createServer();
    const ok = await new Promise<boolean>((r) => {
      srv.once('error', () => r(false));
      srv.listen(port, '127.0.0.1', () => r(true));
    });
    if (ok) {
      await new Promise<void>((r) => srv.close(() => r()));
      return port;
    }
  }
  throw new Error('no free port on 127.0.0.1 for SIPp');
}

/** Whether 127.0.0.1:port is bound (UDP) or listening (TCP), from /proc/net: observable, no probing. */
function listening(port: number, tcp: boolean): boolean {
  const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  try {
    return readFileSync(tcp ? '/proc/net/tcp' : '/proc/net/udp', 'utf8')
      .split('\n')
      .some((l) => {
        const f = l.trim().split(/\s+/);
        return f[1] === hex && (tcp ? f[3] === '0A' : true);
      });
  } catch {
    return false;
  }
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Spawns SIPp on loopback; resolves once it runs (and, for a UAS, listens). */
export async function startSipp(opts: SippOptions): Promise<SippProcess> {
  if (!opts.scenario === !opts.builtin) throw new Error('give exactly one of scenario and builtin');
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-sipp-'));
  const localPort = opts.localPort ?? (await freeSippPort());
  const transport = opts.transport ?? 'u1';
  const args: string[] = [];
  if (opts.remote) args.push(opts.remote);
  let cwd = dir;
  if (opts.scenario) {
    const file = isAbsolute(opts.scenario) ? opts.scenario : join(SIPP_DIR, opts.scenario);
    if (!existsSync(file)) throw new Error(`no SIPp scenario ${file}`);
    args.push('-sf', file);
    // play_pcap_audio / rtp_stream files are opened relative to the working directory:
    // run beside the scenario so they can sit next to it. Every log goes to `dir` by name.
    cwd = dirname(file);
  } else if (opts.builtin) {
    args.push('-sn', opts.builtin);
  }
  args.push(
    '-t', transport,
    '-i', '127.0.0.1',
    '-bind_local',
    '-p', String(localPort),
    '-mi', '127.0.0.1',
    '-ci', '127.0.0.1',
    '-m', String(opts.calls ?? 1),
    '-d', String(opts.pauseMs ?? 1000),
    '-timeout', `${Math.max(1, Math.ceil(opts.timeoutMs / 1000))}s`, '-timeout_error',
    '-nostdin',
    '-trace_msg', '-message_file', join(dir, 'messages.log'),
    '-trace_err', '-error_file', join(dir, 'errors.log'),
    '-trace_screen', '-screen_file', join(dir, 'screen.log'),
    // The scenario's <log/> actions (none in most: the file then stays empty).
    '-trace_logs', '-log_file', join(dir, 'logs.log'),
  );
  if (opts.service !== undefined) args.push('-s', opts.service);
  if (opts.rate !== undefined) args.push('-r', String(opts.rate));
  if (opts.mediaPort !== undefined) args.push('-mp', String(opts.mediaPort));
  if (opts.rtpEcho) args.push('-rtp_echo');
  if (opts.auth) args.push('-au', opts.auth.user, '-ap', opts.auth.password);
  for (const [k, v] of Object.entries(opts.keys ?? {})) args.push('-key', k, v);
  for (const [k, v] of Object.entries(opts.vars ?? {})) args.push('-set', k, v);
  args.push(...(opts.extraArgs ?? []));

  const proc: ChildProcess = spawn('sipp', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  trackPeer(proc, dir);
  let stdout = '';
  // SIPp redraws its statistics screen every second; keep the end, which is what matters.
  const keep = (d: Buffer) => {
    stdout += d.toString();
    if (stdout.length > 1_000_000) stdout = stdout.slice(-500_000);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);

  let timedOut = false;
  let exited = false;
  let final: SippResult | undefined;
  const killTimers: NodeJS.Timeout[] = [];
  const terminate = () => {
    if (exited) return;
    proc.kill('SIGTERM');
    killTimers.push(setTimeout(() => proc.kill('SIGKILL'), 2000));
  };
  const timer = setTimeout(() => {
    timedOut = true;
    terminate();
  }, Math.max(1000, Math.ceil(opts.timeoutMs / 1000) * 1000) + 3000);

  const done = new Promise<SippResult>((resolveDone) => {
    const finish = (code: number | null) => {
      exited = true;
      clearTimeout(timer);
      killTimers.forEach(clearTimeout);
      const errors = readOr(join(dir, 'errors.log'));
      const result: SippResult = {
        code: code ?? -1,
        timedOut: timedOut || / timed out after /.test(errors + stdout.slice(-4000)),
        args,
        stdout,
        messages: readOr(join(dir, 'messages.log')),
        errors,
        screen: readOr(join(dir, 'screen.log')),
        logs: readOr(join(dir, 'logs.log')),
      };
      rmSync(dir, { recursive: true, force: true });
      final = result;
      resolveDone(result);
    };
    proc.once('exit', (code) => finish(code));
    proc.once('error', (err) => {
      stdout += `\n[helper] spawn failed: ${String(err)}\n`;
      finish(-1);
    });
  });

  if (opts.waitListening ?? !opts.remote) {
    try {
      await waitFor(`SIPp to listen on 127.0.0.1:${localPort}`, () => {
        if (exited) throw new Error(`SIPp exited early:\n${stdout.slice(-4000)}`);
        return listening(localPort, transport !== 'u1');
      });
    } catch (err) {
      terminate();
      await done;
      throw err;
    }
  }

  return {
    localPort,
    pid: proc.pid,
    done,
    stop() {
      terminate();
      return done;
    },
    messagesSoFar() {
      return final ? final.messages : readOr(join(dir, 'messages.log'));
    },
  };
}

/** Runs SIPp to its end (or until timeoutMs) and resolves with what it did. */
export async function runSipp(opts: SippOptions): Promise<SippResult> {
  return (await startSipp({ waitListening: false, ...opts })).done;
}

/** One SIP message of a `-trace_msg` log. */
export interface SippWireMessage {
  /** When SIPp logged it, ms since the epoch (local time; for differences). */
  at: number;
  dir: 'sent' | 'received';
  text: string;
  /** The start line. */
  first: string;
  /** A response's status, else undefined. */
  status: number | undefined;
  /** A request's method, else undefined. */
  method: string | undefined;
  /** CSeq as `n METHOD`. */
  cseq: string;
}

/** The messages of a `-trace_msg` log (SippResult.messages), in order. */
export function sippWire(trace: string): SippWireMessage[] {
  const banner = /^-{20,} (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{1,6})\r?\n(?:UDP|TCP) message (sent|received)[^\n]*\n/gm;
  const marks = [...trace.matchAll(banner)];
  return marks.map((m, i) => {
    const start = m.index + m[0].length;
    const end = i + 1 < marks.length ? marks[i + 1]!.index : trace.length;
    const text = trace.slice(start, end).replace(/^\s*\r?\n/, '');
    const [y, mo, d, h, mi, s, frac] = m.slice(1, 8).map((x) => x!);
    const at = new Date(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)).getTime() + Number(frac.padEnd(6, '0')) / 1000;
    const first = text.split(/\r?\n/)[0]!.trim();
    const status = /^SIP\/2\.0 (\d{3})/.exec(first)?.[1];
    return {
      at,
      dir: m[8] as 'sent' | 'received',
      text,
      first,
      status: status === undefined ? undefined : Number(status),
      method: status === undefined ? first.split(' ')[0] : undefined,
      cseq: sipHeader(text, 'CSeq') ?? '',
    };
  });
}

/** Every value of a header in a message's text (its header part only; compact forms are not expanded). */
export function sipHeaders(text: string, name: string): string[] {
  const head = text.split(/\r?\n\r?\n/)[0]!;
  const re = new RegExp(`^${name}\\s*:\\s*(.*?)\\s*$`, 'gim');
  return [...head.matchAll(re)].map((m) => m[1]!);
}

/** The first value of a header, or undefined. */
export function sipHeader(text: string, name: string): string | undefined {
  return sipHeaders(text, name)[0];
}

/** A message's body (after the blank line), trimmed. */
export function sipBody(text: string): string {
  const i = text.search(/\r?\n\r?\n/);
  return i < 0 ? '' : text.slice(i).trim();
}
