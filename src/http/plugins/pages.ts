import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { PluginRoutes, Route } from '../router.js';

// src/http/plugins/ and dist/http/plugins/ both sit three levels below the repository's web/.
const WEB_ROOT = fileURLToPath(new URL('../../../web/', import.meta.url));

export interface PagesPluginDeps {
  /** Where the HTML lives; the repository's web/ by default. */
  webRoot?: string;
  /** In a fleet: the base URL of the node holding a session; the player for it is served there (307). */
  holderUrl?: (sessionId: string) => Promise<string | undefined>;
}

/** The demo page `/`, the listener's player `/player` and the operator's `/console`, read from disk on each GET (no-cache). */
export function pagesPlugin(deps: PagesPluginDeps = {}): PluginRoutes {
  const root = deps.webRoot ?? WEB_ROOT;
  const page = (file: string, type = 'text/html; charset=utf-8'): Route => ({
    methods: {
      GET: async () => ({
        status: 200,
        headers: { 'Content-Type': type, 'Cache-Control': 'no-cache' },
        body: await readFile(`${root}${file}`, 'utf8'),
      }),
    },
  });
  const player = page('player.html');
  const playerGet = player.methods.GET!;
  return {
    '/': page('index.html'),
    // The event wording the pages share.
    '/timeline.js': page('timeline.js', 'text/javascript; charset=utf-8'),
    // Reading server-sent events with a token, listening over WHEP: the player's and the console's.
    '/client.js': page('client.js', 'text/javascript; charset=utf-8'),
    '/console': page('console.html'),
    '/console.js': page('console.js', 'text/javascript; charset=utf-8'),
    '/player': {
      methods: {
        GET: async (ctx) => {
          const session = ctx.query.get('session');
          const holder = session ? await deps.holderUrl?.(session) : undefined;
          return holder ? { status: 307, headers: { Location: `${holder}${ctx.req.url ?? ''}` } } : playerGet(ctx);
        },
      },
    },
  };
}
