import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, type ConfigInput } from '../../src/core/config.js';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createLogger, type Logger } from '../../src/core/logger.js';
import { Gateway, type GatewayOptions } from '../../src/gateway.js';
import { freeUdpPort, waitFor } from './peers.js';


export interface TestGateway {
  gw: Gateway;
  url: string;
  auditPath: string;
  stop(): Promise<void>;
}

export const SOURCE_TOKEN = 'test-source-token-0123456789';
export const OTHER_TOKEN = 'other-source-token-0123456789';
export const ADMIN_TOKEN = 'test-admin-token-0123456789';

/** Starts a gateway on loopback with a fresh audit file, a free UDP port and two sources. */
export async function startGateway(overrides: ConfigInput = {}, opts: GatewayOptions = {}): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-test-'));
  const auditPath = join(dir, 'audit.jsonl');
  const udpPort = await freeUdpPort();
  const config = (() => {
    try {
      return parseConfig({
        http: { host: '127.0.0.1', port: 0 },
        media: { udpPort },
        sources: [
          { name: 'browser-widget', kind: 'browser', token: SOURCE_TOKEN, codecs: ['opus', 'pcmu'], maxSessions: 50 },
          { name: 'ward-7-mic', kind: 'iot', token: OTHER_TOKEN, maxSessions: 2 },
        ],
        admin: { token: ADMIN_TOKEN },
        audit: { path: auditPath },
        limits: { requestsPerSecond: 1000, requestBurst: 1000 },
        log: { level: process.env.VOXGATE_TEST_LOG ? 'debug' : 'silent' },
        ...overrides,
      });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true }); // nothing is left behind by a config that does not parse
      throw err;
    }
  })();
  let gw: Gateway;
  try {
    gw = await Gateway.start(config, { ...opts, log: opts.log ?? createLogger(config.log.level) });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true }); // a gateway that did not start leaves no audit file behind
    throw err;
  }
  return {
    gw,
    url: gw.url,
    auditPath,
    async stop() {
      await gw.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export { freeUdpPort, waitFor };

/** A logger at info whose JSON lines the test reads back (pass `log` to startGateway's options). */
export function captureLog(): { log: Logger; lines: { level: number; msg: string; [k: string]: unknown }[] } {
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as { level: number; msg: string });
      done();
    },
  });
  return { log: pino({ level: 'info' }, sink), lines };
}

export async function adminSessions(url: string): Promise<{ id: string; state: string; packets: number; codec: string; source: string; remoteAddress: string | null; sipCallId: string | null; trunk: { name: string; from: string; to: string } | null }[]> {
  const res = await fetch(`${url}/api/sessions`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
  if (res.status !== 200) throw new Error(`/api/sessions answered ${res.status}`);
  return ((await res.json()) as { sessions: [] }).sessions;
}

/** Rejects after `ms` if `p` has not settled: an event that should come, with a bound on the wait. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
