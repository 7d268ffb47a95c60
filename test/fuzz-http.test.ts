/**
 * An HTTP fuzz run beside a live call (issue 19): thousands of requests to every route the
 * gateway has, with mutated SDP offers and trickle fragments, odd methods, headers and bodies,
 * and raw-socket abuse (chunked bodies, broken framing). Nothing but 503 may be a 5xx, the live
 * call's packets keep rising, and no session is left behind once the fuzz's own are deleted.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { publishConnected } from './helpers/ndc-publisher.js';
import { ADMIN_TOKEN, captureLog, SOURCE_TOKEN, startGateway, waitFor } from './helpers/gateway.js';
import { offerSdp, trickleFor } from './helpers/offers.js';

/** Deterministic: a failure replays with the same seed (printed). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const JUNK = ['', ' ', '\u0000', 'í', '%', '%zz', '-1', '99999999999999999999', 'NaN', '{', '"', '<script>', '\u202e', 'x'.repeat(300), '::', 'sha-256', 'a=', '\t'];

/** An SDP offer with one of many damages: lines lost, doubled, swapped, values replaced, bytes flipped. */
function mutateSdp(sdp: string, r: () => number): string {
  const lines = sdp.split('\r\n').filter(Boolean);
  const pick = <T>(a: T[]) => a[Math.floor(r() * a.length)]!;
  const n = 1 + Math.floor(r() * 3);
  for (let k = 0; k < n; k++) {
    const i = Math.floor(r() * lines.length);
    const what = Math.floor(r() * 7);
    if (what === 0) lines.splice(i, 1);
    else if (what === 1) lines.splice(i, 0, lines[i]!);
    else if (what === 2) lines[i] = lines[i]!.replace(/[:= ][^:= ]*$/, (m) => m[0] + pick(JUNK));
    else if (what === 3) lines[i] = lines[i]!.slice(0, Math.floor(r() * lines[i]!.length));
    else if (what === 4) lines.splice(i, 0, `a=${pick(['ice-ufrag', 'ice-pwd', 'fingerprint', 'rtpmap', 'fmtp', 'ssrc', 'extmap', 'candidate', 'mid', 'group', 'setup', 'rtcp-fb'])}:${pick(JUNK)}`);
    else if (what === 5) {
      const j = Math.floor(r() * lines.length);
      [lines[i], lines[j]] = [lines[j]!, lines[i]!];
    } else {
      const chars = [...lines[i]!];
      chars[Math.floor(r() * chars.length)] = String.fromCharCode(Math.floor(r() * 256));
      lines[i] = chars.join('');
    }
  }
  return lines.join(r() < 0.9 ? '\r\n' : '\n') + '\r\n';
}

test('HTTP fuzz beside a live call: no 5xx but 503, the call keeps flowing, nothing left behind', async (t) => {
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
  const r = rng(seed);
  const captured = captureLog();
  const tg = await startGateway({ limits: { requestsPerSecond: 100_000, requestBurst: 100_000, maxSessions: 500 } }, { log: captured.log });
  t.after(() => tg.stop());
  const live = await publishConnected(`${tg.url}/whip`, SOURCE_TOKEN);
  t.after(() => live.close());
  live.startRtp();
  const liveId = live.location!.split('/').pop()!;
  const call = tg.gw.calls.get(liveId)!;
  await waitFor('the live call flowing', async () => call.totals().packetsReceived > 20);
  const packetsBefore = call.totals().packetsReceived;

  const routes = tg.gw.routes();
  const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)]!;
  const created: string[] = [];
  const listeners: string[] = [];
  const statuses = new Map<number, number>();
  const fiveHundreds: string[] = [];
  const base = offerSdp();
  // Mostly valid tokens, so most requests get past authentication to the parsers.
  const auths = [...Array(5).fill(`Bearer ${SOURCE_TOKEN}`), ...Array(3).fill(`Bearer ${ADMIN_TOKEN}`), 'Bearer nope', SOURCE_TOKEN, 'Basic Zm9vOmJhcg==', '', `Bearer ${pick(JUNK)}`];
  const types = ['application/sdp', 'application/sdp', 'application/sdp', 'application/trickle-ice-sdpfrag', 'application/json', 'text/plain', '', 'application/sdp; charset=utf-8', pick(JUNK)];

  const one = async () => {
    // Half the requests go where offers are parsed (WHIP and WHEP), the rest anywhere.
    const route = r() < 0.5 ? pick(routes.filter((x) => /^\/(whip|whep)/.test(x.pattern))) : pick(routes);
    const method = route.methods.includes('POST') && r() < 0.6 ? 'POST' : r() < 0.85 ? pick(route.methods) : pick(['PUT', 'TRACE', 'PROPFIND', 'PATCH', 'DELETE', 'OPTIONS', 'GET', 'POST']);
    const path = route.pattern.replace(/:session|:id/g, () => (r() < 0.6 ? liveId : r() < 0.5 ? pick(created.length ? created : [liveId]) : encodeURIComponent(pick(JUNK) || 'x')));
    const body = method === 'GET' || method === 'HEAD' ? undefined : r() < 0.5 ? mutateSdp(base, r) : r() < 0.5 ? trickleFor(base) + pick(JUNK) : JSON.stringify({ to: pick(JUNK), x: r() });
    const headers: Record<string, string> = {};
    const auth = pick(auths);
    if (auth) headers.Authorization = auth;
    const type = pick(types);
    if (type && body !== undefined) headers['Content-Type'] = type;
    if (r() < 0.2) headers['If-Match'] = pick(['*', '"x"', pick(JUNK).replace(/[^\x20-\x7e]/g, '') || 'x']);
    if (r() < 0.1) headers.Origin = pick(['http://evil.example', 'null', tg.url]);
    // The live call is never deleted or patched on purpose: the point is that it survives the rest.
    if ((method === 'DELETE' || method === 'PATCH') && path.includes(liveId)) return;
    const res = await fetch(`${tg.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) }).catch((err: Error) => err);
    if (res instanceof Error) return;
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    if (res.status >= 500 && res.status !== 503) fiveHundreds.push(`${method} ${path} -> ${res.status} ${await res.text()}`);
    if (res.status === 201 && method === 'POST' && path === '/whip') created.push(res.headers.get('location')!.split('/').pop()!);
    if (res.status === 201 && method === 'POST' && path.startsWith('/whep/')) listeners.push(new URL(res.headers.get('location')!, tg.url).href);
    await res.body?.cancel().catch(() => undefined);
  };

  // Framing the fetch client will not send: chunked bodies over the limit, bad lengths, garbage.
  const raw = (text: string) =>
    new Promise<void>((resolve) => {
      const url = new URL(tg.url);
      const sock = connect(Number(url.port), url.hostname, () => sock.end(text));
      sock.on('data', (d) => {
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(d.toString())?.[1] ?? 0);
        if (status >= 500 && status !== 503) fiveHundreds.push(`raw -> ${status}`);
      });
      sock.on('close', () => resolve());
      sock.on('error', () => resolve());
      sock.setTimeout(3000, () => sock.destroy());
    });
  const host = new URL(tg.url).host;
  const rawCases = [
    `POST /whip HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${SOURCE_TOKEN}\r\nContent-Type: application/sdp\r\nTransfer-Encoding: chunked\r\n\r\n${'10000\r\n' + 'x'.repeat(0x10000) + '\r\n'}0\r\n\r\n`,
    `POST /whip HTTP/1.1\r\nHost: ${host}\r\nContent-Length: -5\r\n\r\n`,
    `POST /whip HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n0123456789`,
    `PATCH /whip/${liveId} HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n`,
    `GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
    `\u0000\u0001\u0002 garbage\r\n\r\n`,
    `DELETE /api/sessions/%zz HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n\r\n`,
  ];

  const N = Number(process.env.FUZZ_REQUESTS ?? 3000);
  const workers = 8;
  let done = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (done < N) {
        done++;
        if (done % 100 === 0) await raw(pick(rawCases));
        else await one();
      }
    }),
  );
  t.diagnostic(`seed ${seed}; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}; ${created.length} sessions created`);
  assert.deepEqual(fiveHundreds.slice(0, 5), [], `5xx other than 503 (seed ${seed})`);
  assert.equal(captured.lines.filter((l) => l.level >= 50).length, 0, `error-level lines: ${captured.lines.filter((l) => l.level >= 50).map((l) => l.msg).slice(0, 3).join(' | ')}`);

  // The live call went on the whole time, and still does.
  assert.equal(call.state, 'connected');
  const during = call.totals().packetsReceived;
  assert.ok(during > packetsBefore + 50, `the live call received ${during - packetsBefore} packets during the fuzz`);
  await waitFor('packets still rising', async () => call.totals().packetsReceived > during + 10);

  // Whatever the fuzz created is deleted (or already gone): only the live call remains.
  for (const id of created) await fetch(`${tg.url}/api/sessions/${id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
  for (const url of listeners) await fetch(url, { method: 'DELETE', headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
  await waitFor('only the live call left', async () => tg.gw.calls.size === 1 && tg.gw.whep.resources.size === 0, 5000);
});
