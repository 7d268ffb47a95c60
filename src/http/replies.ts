import { VoxgateError } from '../core/errors.js';
import { problemReply, type EndpointReply } from '../wish/resource.js';

const SESSION_ID = /^[A-Za-z0-9_-]{22}$/;

export const noContent = (status = 204): EndpointReply => ({ status, headers: {} });

/** 404 for a WHIP or WHEP session resource; the id is echoed only when it looks like one of ours. */
export function notFound(id: string): EndpointReply {
  return problemReply(new VoxgateError('VG_SESSION_NOT_FOUND', `There is no live WHIP session ${SESSION_ID.test(id) ? id : ''}.`.replace(' .', '.')));
}
