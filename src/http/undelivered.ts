import type { ServerResponse } from 'node:http';
import type { EndpointReply } from '../wish/resource.js';

/**
 * When a 201 for a resource (a WHIP session, a WHEP listener) cannot be delivered (the
 * connection closed first; a malformed request pipelined after it makes the server close it),
 * the client never learns of the resource: `abandon(id)` ends it at once instead of at its idle
 * timeout. The id is the last segment of the reply's Location.
 */
export function abandonIfUndelivered(res: ServerResponse, reply: EndpointReply, abandon: (id: string) => void): EndpointReply {
  const id = reply.status === 201 ? String(reply.headers.Location ?? '').split('/').pop() : undefined;
  if (!id) return reply;
  const undelivered = () => {
    if (!res.writableFinished) abandon(id);
  };
  if (res.destroyed) undelivered();
  else res.once('close', undelivered);
  return reply;
}
