import type { PluginRoutes } from '../router.js';

export interface HealthPluginDeps {
  draining: () => boolean;
  sessions: () => number;
}

/** `/healthz`: 200 while this node takes sessions, 503 while it drains (a load balancer's probe). */
export function healthPlugin(deps: HealthPluginDeps): PluginRoutes {
  return {
    '/healthz': {
      methods: {
        GET: () => {
          const draining = deps.draining();
          return {
            status: draining ? 503 : 200,
            headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' },
            body: JSON.stringify({ status: draining ? 'draining' : 'ok', sessions: deps.sessions() }),
          };
        },
      },
    },
  };
}
