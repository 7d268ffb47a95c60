import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { VoxgateError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { problemReply, type EndpointReply, type EndpointRequest } from '../../wish/resource.js';

/**
 * Requests for a session held by another node, carried to it over NATS request/reply (issue 17,
 * build 2: "forwarded to the holder ... and answered as if local"). WHIP/WHEP resource requests
 * and replies are plain data (EndpointRequest, EndpointReply), so the holder runs the very
 * handler it runs for its own clients, audit and all, and the answer (status, ETag, problem
 * body) goes back unchanged. Subject: `<prefix>.node.<nodeId>.session`.
 */

export type ForwardOp = 'whip.patch' | 'whip.delete' | 'session.delete' | 'session.transfer';

interface Wire {
  op: ForwardOp;
  id: string;
  req: { headers: EndpointRequest['headers']; body: string; remote: string; baseUrl: string };
}

const subjectOf = (prefix: string, nodeId: string) => `${prefix}.node.${nodeId}.session`;
const TIMEOUT_MS = 5000;
/** A transfer is answered when the target answers: it may ring up to its timeoutSeconds (at most 600). */
const TRANSFER_TIMEOUT_MS = 605_000;

/** Answers other nodes' forwarded requests with this node's handlers. */
export function serveForwarded(nc: NatsConnection, prefix: string, nodeId: string, handlers: Partial<Record<ForwardOp, (id: string, req: EndpointRequest) => Promise<EndpointReply> | EndpointReply>>, log: Logger): Subscription {
  return nc.subscribe(subjectOf(prefix, nodeId), {
    callback: (err, msg) => {
      if (err) return log.warn({ err }, 'forwarded-request subscription failed');
      void (async () => {
        let reply: EndpointReply;
        try {
          const w = msg.json<Wire>();
          const handler = handlers[w.op];
          if (!handler || typeof w.id !== 'string') throw new VoxgateError('VG_REQUEST_INVALID', `unknown forwarded operation ${String(w.op)}`);
          reply = await handler(w.id, { headers: w.req.headers, body: Buffer.from(w.req.body, 'base64'), remote: w.req.remote, baseUrl: w.req.baseUrl });
        } catch (e) {
          const ve = e instanceof VoxgateError ? e : new VoxgateError('VG_INTERNAL', 'The forwarded request failed on the node holding the session', { cause: e });
          if (!(e instanceof VoxgateError)) log.error({ err: e }, 'a forwarded request failed');
          reply = problemReply(ve);
        }
        try {
          msg.respond(JSON.stringify(reply));
        } catch (err) {
          log.warn({ err }, 'the answer to a forwarded request could not be sent (draining, or too large)');
        }
      })();
    },
  });
}

/** Sends a request to the node holding the session; a node that does not answer is a 503 (it may be gone). */
export async function forward(nc: NatsConnection, prefix: string, nodeId: string, op: ForwardOp, id: string, req: EndpointRequest): Promise<EndpointReply> {
  const wire: Wire = { op, id, req: { headers: req.headers, body: req.body.toString('base64'), remote: req.remote, baseUrl: req.baseUrl } };
  try {
    const res = await nc.request(subjectOf(prefix, nodeId), JSON.stringify(wire), { timeout: op === 'session.transfer' ? TRANSFER_TIMEOUT_MS : TIMEOUT_MS });
    return res.json<EndpointReply>();
  } catch (err) {
    return problemReply(new VoxgateError('VG_CAPACITY', `Session ${id} is held by node ${nodeId}, which did not answer (${(err as Error).message}); try again shortly.`, { headers: { 'Retry-After': '2' } }));
  }
}
