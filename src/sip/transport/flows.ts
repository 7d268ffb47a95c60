import { topVia, type SipRequest } from '../message.js';
import { responseTarget } from './received.js';
import { remoteAddress } from './remote.js';
import { viaFor, type SipFlow, type SipTransport } from './transport.js';

/** Which flow a message goes on, where RFC 3261 §18 decides it rather than the dialog. */

/**
 * Where responses to a request go. RFC 3261 §18.2.2: over UDP to the top Via's received/rport
 * (or its sent-by port when the client asked no rport), which is the source flow unless the
 * client sends from one port and listens on another; over connections, the connection itself.
 */
export function replyFlow(flow: SipFlow, req: SipRequest): SipFlow {
  // Deviation: over TCP/TLS an answer whose connection has closed is dropped, not sent on a
  // new connection to the Via's received/sent-by (§18.2.2); the client retransmits or times out.
  if (flow.transport.reliable || !flow.transport.flowTo) return flow;
  const via = topVia(req);
  const source = remoteAddress(flow.remote);
  if (!via || !source) return flow;
  const target = responseTarget(via, source, false);
  // Deviation: a Via maddr, or anything naming another host than the packet's source, is not
  // followed: a forged one would aim our answers (and trust) at someone else. Only the port
  // may differ (a client without rport listening on its sent-by port).
  if (target.host !== source.host || target.port === source.port) return flow;
  return flow.transport.flowTo(target) ?? flow;
}

/**
 * RFC 3261 §18.1.1: a request over 1300 bytes (the path MTU being unknown) goes over TCP to
 * the same address when we listen on TCP, with the top Via changed to say so.
 * Deviation: no retry over UDP when that connection fails; the transaction times out.
 */
export function largeOverTcp(transports: readonly SipTransport[], flow: SipFlow, text: string, branch: string): { flow: SipFlow; text: string } {
  if (flow.transport.protocol !== 'UDP' || Buffer.byteLength(text) <= 1300) return { flow, text };
  const tcp = transports.find((t) => t.protocol === 'TCP');
  const to = remoteAddress(flow.remote);
  const stream = to ? tcp?.flowTo?.(to) : undefined;
  if (!tcp || !stream) return { flow, text };
  return { flow: stream, text: text.replace(/^(?:Via|v)[ \t]*:[^\r\n]*/im, `Via: ${viaFor(tcp, branch)}`) };
}
