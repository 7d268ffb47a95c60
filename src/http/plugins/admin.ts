import type { IncomingMessage } from 'node:http';
import { bearerToken, secretEquals } from '../../auth/source-auth.js';
import type { Call } from '../../call/call.js';
import type { ListenerLeg } from '../../call/listener-leg.js';
import type { SessionRecord } from '../../call/session-directory.js';
import type { PartyLeg } from '../../call/party-leg.js';
import type { Clock } from '../../core/clock.js';
import { VoxgateError } from '../../core/errors.js';
import type { Binding } from '../../sip/registrar.js';
import type { EndpointReply } from '../../wish/resource.js';
import type { PluginRoutes } from '../router.js';

export interface AdminPluginDeps {
  /** Bearer token for `/api/sessions` and `/api/registrations`. */
  adminToken: string;
  /** The generated dev source's token, when the gateway runs on one; `/api/dev-token` hands it to loopback clients. */
  devToken: string | undefined;
  /** This node's live calls. */
  calls: () => Iterable<Call>;
  /** SIP registrations (RFC 3261 §10) this node holds. */
  registrations: () => Binding[] | Promise<Binding[]>;
  /** For session ages and registration expiries. */
  clock: Pick<Clock, 'now'>;
  /** This node's name in the fleet ('local' alone). */
  nodeId?: string;
  /** In a fleet: every node's live sessions from the shared directory (the other nodes' are listed from it). */
  fleet?: () => Promise<SessionRecord[]>;
}

const json = (body: unknown): EndpointReply => ({ status: 200, headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, body: JSON.stringify(body) });

/** The operator's read-only API: live sessions, SIP registrations, and the dev token for the demo page. */
export function adminPlugin(deps: AdminPluginDeps): PluginRoutes {
  const requireAdmin = (req: IncomingMessage): void => {
    if (!req.headers.authorization) {
      throw new VoxgateError('VG_AUTH_MISSING', 'Send "Authorization: Bearer <admin token>".', { headers: { 'WWW-Authenticate': 'Bearer realm="voxgate-admin"' } });
    }
    if (!secretEquals(bearerToken(req.headers.authorization), deps.adminToken)) {
      throw new VoxgateError('VG_AUTH_INVALID', 'The admin token is not valid.', {
        headers: { 'WWW-Authenticate': 'Bearer realm="voxgate-admin", error="invalid_token"' },
      });
    }
  };
  return {
    '/api/sessions': {
      methods: {
        GET: async ({ req }) => {
          requireAdmin(req);
          const now = deps.clock.now();
          const node = deps.nodeId ?? 'local';
          const local = [...deps.calls()].map((call) => ({ ...describeCall(call, now), node }));
          const mine = new Set(local.map((s) => s.id));
          // Another node's session: what the directory knows (its node has the media counters).
          let fleet: SessionRecord[] = [];
          let fleetError: string | undefined;
          try {
            fleet = deps.fleet ? await deps.fleet() : [];
          } catch (err) {
            fleetError = `the other nodes' sessions could not be read: ${(err as Error).message}`; // this node's still are
          }
          const others = fleet
            .filter((r) => r.node !== node && !mine.has(r.id))
            .map((r) => ({ id: r.id, node: r.node, source: r.source, kind: r.sourceKind, state: r.state, ageSeconds: Math.round((now - r.createdAt) / 100) / 10 }));
          return json({ sessions: [...local, ...others], ...(fleetError ? { fleetError } : {}) });
        },
      },
    },
    '/api/registrations': {
      methods: {
        GET: async ({ req }) => {
          requireAdmin(req);
          const bindings = await deps.registrations();
          const now = deps.clock.now();
          const registrations = bindings.map((b) => ({
            user: b.aor,
            contact: b.contact,
            instance: b.instance ?? null,
            regId: b.regId ?? null,
            flow: b.flowId,
            remoteAddress: b.remote,
            userAgent: b.userAgent ?? null,
            expiresInSeconds: Math.max(0, Math.round((b.expiresAt - now) / 1000)),
          }));
          return json({ registrations });
        },
      },
    },
    '/api/dev-token': {
      methods: {
        // Only a gateway running on its generated dev source, and only to loopback clients.
        GET: ({ req }) => {
          const a = req.socket.remoteAddress ?? '';
          if (!deps.devToken || !(a === '127.0.0.1' || a === '::1' || a === '::ffff:127.0.0.1')) {
            throw new VoxgateError('VG_HTTP_NOT_FOUND', 'No development token here: this gateway has configured sources; ask its operator for a token.');
          }
          return json({ token: deps.devToken, source: 'dev' });
        },
      },
    },
  };
}

function describeCall(call: Call, now: number) {
  const caller = call.leg('caller') as PartyLeg | undefined;
  const ep = caller?.endpoint;
  const totals = call.totals();
  return {
    id: call.id,
    source: call.source.name,
    kind: call.source.kind,
    state: call.state,
    codec: ep?.format.codec ?? null,
    direction: ep ? (ep.format.sends ? 'sendrecv' : 'recvonly') : null,
    remoteAddress: caller?.remoteAddress ?? null,
    signalingAddress: call.signalingRemote ?? null,
    packets: totals.packetsReceived,
    bytes: totals.bytesReceived,
    firstPacketAt: ep?.received.firstArrival ? new Date(ep.received.firstArrival).toISOString() : null,
    lastPacketAt: ep?.received.lastArrival ? new Date(ep.received.lastArrival).toISOString() : null,
    ageSeconds: Math.round((now - call.createdAt) / 100) / 10,
    sipCallId: call.sipCallId ?? null,
    trunk: call.trunk ?? null,
    pipeline: call.describe() || null,
    mode: call.mode,
    quality: ep?.quality ?? null,
    audio: ep ? { ...call.repairs(), codecThread: ep.codecThread } : null,
    legs: [...call.legs.entries()].map(([role, leg]) => ({ role, kind: leg.kind, codec: leg.endpoint?.format.codec ?? null, pipeline: leg.endpoint?.describe() ?? null, ...leg.counters() })),
    listeners: [...call.fanout.listeners.values()].map((l) => {
      const leg = l as ListenerLeg;
      return { id: leg.id, name: leg.name, track: leg.track, codec: leg.codec, forwarded: leg.passthrough, packetsSent: leg.sentPackets };
    }),
  };
}
