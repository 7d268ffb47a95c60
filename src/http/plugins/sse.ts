import type { WhepEndpoint } from '../../whep/whep-endpoint.js';
import type { PluginRoutes } from '../router.js';

export interface SsePluginDeps {
  whep: Pick<WhepEndpoint, 'forEvents'>;
}

/** The WHEP server-sent events extension on `/whep/:session/:id/events`: POST picks the events, GET streams them. */
export function ssePlugin({ whep }: SsePluginDeps): PluginRoutes {
  return {
    '/whep/:session/:id/events': {
      auditRefusals: { action: 'whep', sessionParam: 'session' },
      methods: {
        POST: async ({ params, req, endpointRequest }) => {
          whep.forEvents(params.session!, params.id!, req.headers.authorization);
          const { baseUrl } = await endpointRequest();
          return { status: 201, headers: { Location: `${baseUrl}/whep/${params.session}/${params.id}/events` } };
        },
        GET: ({ params, req, res, cors }) => {
          const r = whep.forEvents(params.session!, params.id!, req.headers.authorization);
          const hub = r.call.fanout;
          res.writeHead(200, { ...cors, 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
          const write = (name: string, data: unknown) => {
            if (!res.writableEnded) res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
          };
          if (r.call.state === 'connected') write('active', {});
          write('viewercount', { viewercount: hub.listeners.size });
          const onEvent = (name: string, data: unknown) => {
            write(name, data);
            if (name === 'inactive' && !res.writableEnded) res.end();
          };
          const onClosed = () => {
            if (!res.writableEnded) res.end();
          };
          hub.on('event', onEvent);
          r.leg.once('closed', onClosed);
          res.on('close', () => {
            hub.off('event', onEvent);
            r.leg.off('closed', onClosed);
          });
          return undefined;
        },
      },
    },
  };
}
