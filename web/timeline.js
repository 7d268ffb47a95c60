// What the demo page, the player and the console show of a call's events: one readable line
// each, the same wording everywhere. Served at /timeline.js.

/** Why a call ended, in words (the `reason` of an `ended` event, /api/history and the audit log). */
export const END_REASONS = {
  deleted: 'the caller hung up',
  bye: 'the caller hung up',
  cancelled: 'the caller gave up before the answer',
  admin: 'ended by the operator',
  shutdown: 'the gateway is shutting down',
  'idle-timeout': 'no audio arrived for too long',
  'agent-hangup': 'the agent hung up',
  'agent-failed': 'the agent failed',
  'agent-disconnected': 'the agent went away',
  transferred: 'transferred',
  'ice-failed': 'the network path failed (ICE)',
  'dtls-failed': 'the secure media channel failed (DTLS)',
  'peer-closed': 'the caller closed the connection',
  'flow-closed': "the caller's connection closed",
  'setup-failed': 'the call could not be set up',
  'no-ack': 'the caller never confirmed the answer',
  'session-expired': 'the session timer expired',
  'node-lost': 'the node holding the call was lost',
};

export function reasonText(reason) {
  return END_REASONS[reason] ? `${END_REASONS[reason]} (${reason})` : String(reason);
}

const fixed = (v, digits) => (typeof v === 'number' ? v.toFixed(digits) : '–');

/** A quality report (MOS, loss, jitter, buffer, RTT) as one short line. */
export function formatQuality(q) {
  const line = `MOS ${fixed(q.mos, 2)} · loss ${fixed(q.lossPercent, 1)} % · jitter ${fixed(q.jitterMs, 0)} ms · buffer ${fixed(q.jitterBufferMs, 0)} ms · RTT ${q.rttMs == null ? '–' : `${fixed(q.rttMs, 0)} ms`}`;
  // A console point for a bridged call also carries the callee's side.
  return q.calleeMos == null ? line : `${line} · callee MOS ${fixed(q.calleeMos, 2)} · loss ${fixed(q.calleeLossPercent, 1)} %`;
}

/**
 * One event as a line a person reads; null for the ones shown elsewhere (quality has its own line).
 * Data-channel events have `type`; WHEP server-sent events have `event`.
 */
export function describeEvent(ev) {
  switch (ev.type ?? ev.event) {
    case 'quality': return null;
    case 'agent-text': return `agent says: “${ev.text}”`;
    case 'turn-start': return `turn ${ev.index}: you started speaking`;
    case 'turn': return `turn ${ev.index}: you spoke for ${fixed(ev.speechMs / 1000, 1)} s`;
    case 'barge-in': return `turn ${ev.index}: you talked over the agent, and it stopped`;
    case 'cleared': return `agent audio cleared (silent ${ev.silenceAfterMs} ms later)`;
    case 'mark': return `mark “${ev.name}”: ${ev.result === 'played' ? 'played to the end' : ev.result}`;
    case 'dtmf': return `digit ${ev.digit}`;
    case 'transfer': return `transfer to ${ev.target}${ev.result ? `: ${ev.result}` : ''}`;
    case 'echo': return `echo: ${JSON.stringify(ev.data)}`;
    case 'error': return `error: ${ev.error}`;
    case 'ended': return `call ended: ${reasonText(ev.reason)}`;
    case 'active': return 'the session is live';
    case 'inactive': return 'the session ended';
    case 'viewercount': return `listeners: ${ev.viewercount}`;
    default: {
      const { type, event, ...rest } = ev;
      return `${type ?? event} ${JSON.stringify(rest)}`;
    }
  }
}

/** Appends an event's line, with the time, to a timeline element (a list that scrolls). */
export function appendEvent(el, ev, at = new Date()) {
  const text = describeEvent(ev);
  if (text === null) return;
  const li = document.createElement('li');
  const time = document.createElement('time');
  time.textContent = at.toLocaleTimeString();
  li.append(time, ` ${text}`);
  li.dataset.type = ev.type ?? ev.event;
  el.append(li);
  el.scrollTop = el.scrollHeight;
}
