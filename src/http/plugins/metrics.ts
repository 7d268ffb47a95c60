import type { Registry } from 'prom-client';
import type { PluginRoutes } from '../router.js';

export interface MetricsPluginDeps {
  registry: Pick<Registry, 'contentType' | 'metrics'>;
}

/** `/metrics` in the Prometheus text format. */
export function metricsPlugin({ registry }: MetricsPluginDeps): PluginRoutes {
  return {
    '/metrics': {
      methods: {
        GET: async () => ({ status: 200, headers: { 'Content-Type': registry.contentType }, body: await registry.metrics() }),
      },
    },
  };
}
