// What the player and the console both do against the gateway: read a server-sent events stream
// with a Bearer token, and listen to a session over WHEP. Served at /client.js.

/**
 * Reads a text/event-stream with fetch (EventSource cannot send a Bearer token), calling
 * onEvent(name, data) per event; resolves when the stream ends, rejects with the problem's
 * detail when the answer is not a stream (401, 404...).
 */
export async function readEventStream(url, token, onEvent, signal) {
  const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, signal });
  if (!res.ok) {
    const problem = await res.json().catch(() => ({}));
    throw Object.assign(new Error(problem.detail ?? `${res.status} ${res.statusText}`), { status: res.status });
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (data === undefined) continue; // a comment (keep-alive)
      onEvent(/^event: (.*)$/m.exec(block)?.[1] ?? 'message', JSON.parse(data));
    }
  }
}

/**
 * Listens to a session over WHEP: a receive-only peer connection whose audio plays in `audio`.
 * Returns { pc, resource, events } (the WHEP resource URL and its server-sent events URL, if
 * offered) and a stop() that closes the connection and DELETEs the resource.
 */
export async function listenWhep({ session, token, track = 'mix', audio }) {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.ontrack = (e) => { audio.srcObject = e.streams[0] ?? new MediaStream([e.track]); };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); else pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
    const res = await fetch(`/whep/${encodeURIComponent(session)}?track=${encodeURIComponent(track)}`, {
      method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` }, body: pc.localDescription.sdp,
    });
    if (res.status !== 201) throw new Error(`POST /whep: ${res.status} ${(await res.json().catch(() => ({}))).detail ?? ''}`);
    const resource = new URL(res.headers.get('Location'), location.href).href;
    const events = /<([^>]+)>;\s*rel="urn:ietf:params:whep:ext:core:server-sent-events"/.exec(res.headers.get('Link') ?? '')?.[1];
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    let stopped = false;
    return {
      pc, resource, events,
      async stop() {
        if (stopped) return;
        stopped = true;
        pc.close();
        await fetch(resource, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } }).catch(() => undefined);
      },
    };
  } catch (err) {
    pc.close();
    throw err;
  }
}
