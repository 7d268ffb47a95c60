import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { CallHistory } from '../../call/call-history.js';
import type { CallMonitor, MonitorEvent } from '../../call/call-monitor.js';
import type { SessionRecord } from '../../call/session-directory.js';
import type { PluginRoutes, Route } from '../router.js';
import { requireAdminToken } from './admin.js';

export interface ConsolePluginDeps {
  adminToken: string;
  monitor: Pick<CallMonitor, 'snapshot' | 'watch'>;
  history: Pick<CallHistory, 'recent'>;
  nodeId?: string;
  /** In a fleet: every node's live sessions (the other nodes' are listed beside this node's calls). */
  fleet?: () => Promise<SessionRecord[]>;
}

/** A comment line this often keeps proxies and the browser from timing the stream out. */
const HEARTBEAT_MS = 15_000;
/** Recently ended calls the console starts with. */
const RECENT = 50;
/** Bytes a stream may have waiting for a slow client before it is dropped (it reconnects to a fresh snapshot). */
const MAX_BUFFERED = 1 << 20;
/** How long the snapshot waits for the other nodes' sessions (NATS away: this node's calls still come). */
const FLEET_READ_MS = 2000;

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

// The charting library, from node_modules (npm install put it there; nothing is fetched at run time).
const require = createRequire(import.meta.url);
const UPLOT_DIR = require.resolve('uplot/package.json').replace(/package\.json$/, 'dist/');

const vendor = (file: string, type: string): Route => ({
  methods: {
    GET: async () => ({ status: 200, headers: { 'Content-Type': type, 'Cache-Control': 'public, max-age=3600' }, body: await readFile(`${UPLOT_DIR}${file}`, 'utf8') }),
  },
});

/**
 * `GET /api/events` (admin): the operator's live view as server-sent events. First `snapshot`
 * (this node's live calls with their charts and timelines so far, the other nodes' sessions,
 * recent calls), then each change as it happens: `session` (a call began or changed), `quality`,
 * `event` (its timeline), `levels` (every call's, twice a second), `ended` (with its record),
 * `fleet` (another node's session events). Read with fetch: EventSource cannot send a token.
 */
export function consolePlugin(deps: ConsolePluginDeps): PluginRoutes {
  return {
    '/api/events': {
      methods: {
        GET: async ({ req, res, cors }) => {
          requireAdminToken(req.headers.authorization, deps.adminToken);
          const node = deps.nodeId ?? 'local';
          res.writeHead(200, { ...cors, 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
          if (req.method === 'HEAD') return void res.end();
          const write = (name: string, data: unknown) => {
            if (res.writableEnded || res.destroyed) return;
            // A client that stopped reading (a sleeping laptop) is dropped, not buffered for without end.
            if (res.writableLength > MAX_BUFFERED) return void res.destroy();
            res.write(name === '' ? ': keep-alive\n\n' : `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
          };
          // This node's calls are read and watched in the same turn, so no change falls between;
          // what happens while the other nodes' sessions are read waits, then follows the snapshot.
          const waiting: MonitorEvent[] = [];
          let live = false;
          const stop = deps.monitor.watch((ev) => (live ? write(ev.type, ev) : waiting.push(ev)), () => res.end());
          const calls = deps.monitor.snapshot();
          const recent = deps.history.recent(RECENT);
          const beat = setInterval(() => write('', undefined), HEARTBEAT_MS);
          beat.unref();
          res.on('close', () => {
            clearInterval(beat);
            stop();
          });
          let fleet: SessionRecord[] = [];
          let fleetError: string | undefined;
          try {
            fleet = ((await within(deps.fleet?.() ?? Promise.resolve([]), FLEET_READ_MS)) ?? []).filter((r) => r.node !== node);
          } catch (err) {
            fleetError = `the other nodes' sessions could not be read: ${(err as Error).message}`;
          }
          write('snapshot', { node, calls, fleet, ...(fleetError ? { fleetError } : {}), recent });
          for (const ev of waiting.splice(0)) write(ev.type, ev);
          live = true;
          return undefined;
        },
      },
    },
    '/vendor/uplot.js': vendor('uPlot.esm.js', 'text/javascript; charset=utf-8'),
    '/vendor/uplot.css': vendor('uPlot.min.css', 'text/css; charset=utf-8'),
  };
}
