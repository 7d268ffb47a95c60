import type { AgentLeg } from './agent-leg.js';
import type { Call } from './call.js';
import type { ListenerLeg } from './listener-leg.js';
import type { PartyLeg } from './party-leg.js';

/** A live call as `GET /api/sessions` and the console show it: who, what codec, its media counters, legs and listeners. */
export type CallView = ReturnType<typeof describeCall>;

/** `now`: the signalling clock's, for the call's age. */
export function describeCall(call: Call, now: number) {
  const caller = call.leg('caller') as PartyLeg | undefined;
  const ep = caller?.endpoint;
  const totals = call.totals();
  return {
    id: call.id,
    source: call.source.name,
    kind: call.source.kind,
    /** How the caller reached us: whip, sip-ws, sip-trunk, outbound. */
    sessionKind: call.kind,
    state: call.state,
    codec: ep?.format.codec ?? null,
    direction: ep ? (ep.format.sends ? 'sendrecv' : 'recvonly') : null,
    remoteAddress: caller?.remoteAddress ?? null,
    signalingAddress: call.signalingRemote ?? null,
    packets: totals.packetsReceived,
    bytes: totals.bytesReceived,
    firstPacketAt: ep?.received.firstArrival ? new Date(ep.received.firstArrival).toISOString() : null,
    lastPacketAt: ep?.received.lastArrival ? new Date(ep.received.lastArrival).toISOString() : null,
    createdAt: new Date(call.createdAt).toISOString(),
    connectedAt: call.connectedAt ? new Date(call.connectedAt).toISOString() : null,
    ageSeconds: Math.round((now - call.createdAt) / 100) / 10,
    sipCallId: call.sipCallId ?? null,
    trunk: call.trunk ?? null,
    pipeline: call.describe() || null,
    mode: call.mode,
    agent: (call.leg('agent') as AgentLeg | undefined)?.agent?.name ?? null,
    quality: ep?.quality ?? null,
    audio: ep ? { ...call.repairs(), codecThread: ep.codecThread } : null,
    legs: [...call.legs.entries()].map(([role, leg]) => ({ role, kind: leg.kind, codec: leg.endpoint?.format.codec ?? null, pipeline: leg.endpoint?.describe() ?? null, ...leg.counters() })),
    listeners: [...call.fanout.listeners.values()].map((l) => {
      const leg = l as ListenerLeg;
      return { id: leg.id, name: leg.name, track: leg.track, codec: leg.codec, forwarded: leg.passthrough, packetsSent: leg.sentPackets };
    }),
  };
}
