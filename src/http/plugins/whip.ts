import type { AuditLog } from '../../audit/audit-log.js';
import type { SourceAuthenticator } from '../../auth/source-auth.js';
import type { Clock } from '../../core/clock.js';
import type { IceServerConfig } from '../../core/config.js';
import { VoxgateError } from '../../core/errors.js';
import { iceServerLinks } from '../../transport/webrtc/ice-servers.js';
import type { WhipEndpoint } from '../../whip/whip-endpoint.js';
import { problemReply, SDP_TYPE, TRICKLE_TYPE, type EndpointReply, type EndpointRequest } from '../../wish/resource.js';
import { abandonIfUndelivered } from '../undelivered.js';
import type { PluginRoutes } from '../router.js';
import { noContent, notFound } from '../replies.js';

export interface WhipPluginDeps {
  whip: Pick<WhipEndpoint, 'post' | 'patch' | 'delete' | 'resources'>;
  /** Only to decide whether an OPTIONS may carry TURN credentials. */
  auth: Pick<SourceAuthenticator, 'authenticate'>;
  iceServers: IceServerConfig[];
  /** For the TURN credentials' expiry in OPTIONS Links. */
  clock: Pick<Clock, 'now'>;
  draining: () => boolean;
  /** Live sessions, against `maxSessions`, for the HEAD probe. */
  sessions: () => number;
  maxSessions: number;
  /** Where to send the next publisher, when this node load-balances by redirect. */
  nextRedirect: () => string | undefined;
  retryAfterSeconds: number;
  audit: Pick<AuditLog, 'write'>;
  /**
   * In a fleet: a PATCH or DELETE of a session another node holds, carried to that node and
   * answered as it answers (undefined: no other node holds it, so this node answers, 404).
   */
  elsewhere?: (op: 'whip.patch' | 'whip.delete', id: string, req: EndpointRequest) => Promise<EndpointReply | undefined>;
}

/** WHIP (RFC 9725): the endpoint `/whip` and its session resources `/whip/:id`. */
export function whipPlugin(deps: WhipPluginDeps): PluginRoutes {
  const { whip } = deps;
  const retryAfter = String(deps.retryAfterSeconds);
  return {
    '/whip': {
      optionsHeaders: { 'Accept-Post': SDP_TYPE },
      // TURN credentials only for a valid source token: the endpoint must not be an open relay.
      optionsLinks: (req) => {
        try {
          const source = deps.auth.authenticate(req.headers.authorization);
          return iceServerLinks(deps.iceServers, `options-${source.name}`, deps.clock.now());
        } catch {
          return iceServerLinks(deps.iceServers.filter((s) => !s.secret && !s.credential), '', deps.clock.now());
        }
      },
      auditRefusals: { action: 'whip' },
      methods: {
        POST: async ({ endpointRequest, res }) => {
          if (deps.draining()) {
            return problemReply(new VoxgateError('VG_HTTP_DRAINING', 'This node is shutting down; publish to another node.', {
              headers: { 'Retry-After': retryAfter },
            }));
          }
          const target = deps.nextRedirect();
          const req = await endpointRequest();
          if (target) {
            // RFC 9725 §4.5: load balancing redirects use 307 only (301/302 would change the method).
            deps.audit.write({ action: 'whip.post', outcome: 'ok', status: 307, remote: req.remote, redirect: target });
            return { status: 307, headers: { Location: target } };
          }
          return abandonIfUndelivered(res, await whip.post(req), (id) => whip.resources.get(id)?.call.close('peer-closed'));
        },
        // RFC 9725 §4.1: GET answers 2xx with no content (older drafts said 405).
        GET: () => noContent(),
        // A capabilities/health probe: 200 while we accept sessions, 503 when we cannot.
        HEAD: (): EndpointReply => {
          const full = deps.draining() || deps.sessions() >= deps.maxSessions;
          return { status: full ? 503 : 200, headers: { 'Accept-Post': SDP_TYPE, ...(full ? { 'Retry-After': retryAfter } : {}) } };
        },
      },
    },
    '/whip/:id': {
      optionsHeaders: { 'Accept-Patch': TRICKLE_TYPE },
      auditRefusals: { action: 'whip', sessionParam: 'id' },
      methods: {
        PATCH: async ({ params, endpointRequest }) => {
          const req = await endpointRequest();
          return (!whip.resources.has(params.id!) && (await deps.elsewhere?.('whip.patch', params.id!, req))) || whip.patch(params.id!, req);
        },
        DELETE: async ({ params, endpointRequest }) => {
          const req = await endpointRequest();
          return (!whip.resources.has(params.id!) && (await deps.elsewhere?.('whip.delete', params.id!, req))) || whip.delete(params.id!, req);
        },
        GET: ({ params }) => (whip.resources.has(params.id!) ? noContent() : notFound(params.id!)),
        HEAD: ({ params }) => (whip.resources.has(params.id!) ? noContent() : notFound(params.id!)),
      },
    },
  };
}
