import type { Binding } from './location-store.js';
import type { SipMessage } from './message.js';
import type { SipFlow } from './transport/transport.js';

/**
 * Users whose WebSocket is on another node of the fleet (cluster/nats/sip-relay.ts): their flow
 * as a stand-in here, and the messages this node's flows carry for another node's dialogs.
 */
export interface SipRelayHook {
  /** A stand-in for a binding's flow on another live node; undefined when it is not reachable. */
  flowFor(binding: Binding): SipFlow | undefined;
  /** A message on one of our flows that belongs to another node's dialog: sent there, true. */
  intercept(flow: SipFlow, msg: SipMessage, data: Buffer): boolean;
  /** One of our flows closed: the nodes that used it are told. */
  flowClosed(flow: SipFlow): void;
  /** A stand-in: its close ends the dialogs on it, never the user's registrations (their socket is elsewhere). */
  owns(flow: SipFlow): boolean;
}
