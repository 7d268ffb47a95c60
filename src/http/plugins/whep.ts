import { VoxgateError } from '../../core/errors.js';
import type { WhepEndpoint } from '../../whep/whep-endpoint.js';
import { SDP_TYPE, TRICKLE_TYPE, type EndpointReply } from '../../wish/resource.js';
import { abandonIfUndelivered } from '../undelivered.js';
import type { PluginRoutes } from '../router.js';
import { noContent, notFound } from '../replies.js';

export interface WhepPluginDeps {
  whep: Pick<WhepEndpoint, 'post' | 'patch' | 'delete' | 'liveCall' | 'resources'>;
  /** In a fleet: the base URL of the node holding a session this node does not (a listener is sent there, 307). */
  holderUrl?: (sessionId: string) => Promise<string | undefined>;
}

/** WHEP (draft-ietf-wish-whep): a session's endpoint `/whep/:session` and its listeners `/whep/:session/:id`. */
export function whepPlugin({ whep, holderUrl }: WhepPluginDeps): PluginRoutes {
  const owns = (session: string, id: string) => whep.resources.get(id)?.sessionId === session;
  return {
    '/whep/:session': {
      optionsHeaders: { 'Accept-Post': SDP_TYPE },
      auditRefusals: { action: 'whep', sessionParam: 'session' },
      methods: {
        POST: async ({ req, res, params, query, endpointRequest }) => {
          // The media is where the call is: a listener goes to that node (307 keeps the method and body).
          const holder = await holderUrl?.(params.session!);
          if (holder) return { status: 307, headers: { Location: `${holder}${req.url ?? ''}` } };
          const reply = await whep.post(params.session!, query.get('track'), await endpointRequest());
          return abandonIfUndelivered(res, reply, (id) => whep.resources.get(id)?.leg.close('peer-closed'));
        },
        GET: () => noContent(),
        HEAD: async ({ req, params }): Promise<EndpointReply> => {
          // 200 while the session can be heard, 409 until it is live, 404 once it has ended; in a fleet, 307 to its holder.
          const holder = await holderUrl?.(params.session!);
          if (holder) return { status: 307, headers: { Location: `${holder}${req.url ?? ''}` } };
          try {
            await whep.liveCall(params.session!);
            return { status: 200, headers: { 'Accept-Post': SDP_TYPE } };
          } catch (err) {
            if (!(err instanceof VoxgateError)) throw err;
            return { status: err.status, headers: err.headers };
          }
        },
      },
    },
    '/whep/:session/:id': {
      optionsHeaders: { 'Accept-Patch': TRICKLE_TYPE },
      auditRefusals: { action: 'whep', sessionParam: 'session' },
      methods: {
        PATCH: async ({ params, endpointRequest }) => whep.patch(params.session!, params.id!, await endpointRequest()),
        DELETE: async ({ params, endpointRequest }) => whep.delete(params.session!, params.id!, await endpointRequest()),
        GET: ({ params }) => (owns(params.session!, params.id!) ? noContent() : notFound(params.id!)),
        HEAD: ({ params }) => (owns(params.session!, params.id!) ? noContent() : notFound(params.id!)),
      },
    },
  };
}
