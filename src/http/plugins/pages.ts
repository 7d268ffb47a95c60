import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { PluginRoutes, Route } from '../router.js';

// src/http/plugins/ and dist/http/plugins/ both sit three levels below the repository's web/.
const WEB_ROOT = fileURLToPath(new URL('../../../web/', import.meta.url));

export interface PagesPluginDeps {
  /** Where the HTML lives; the repository's web/ by default. */
  webRoot?: string;
}

/** The demo page `/` and the listener's player `/player`, read from disk on each GET (no-cache). */
export function pagesPlugin(deps: PagesPluginDeps = {}): PluginRoutes {
  const root = deps.webRoot ?? WEB_ROOT;
  const page = (file: string): Route => ({
    methods: {
      GET: async () => ({
        status: 200,
        headers: { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-cache' },
        body: await readFile(`${root}${file}`, 'utf8'),
      }),
    },
  });
  return { '/': page('index.html'), '/player': page('player.html') };
}
