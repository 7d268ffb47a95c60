import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { MAX_REPLY_BYTES, RoutingWebhook, signBody, verifySignature, type RoutingRequest } from './routing-webhook.js';

const SECRET = 'whsec_test';

function request(over: Partial<RoutingRequest> = {}): RoutingRequest {
  return {
    event: 'call.incoming',
    sipCallId: 'a84b4c76e66710@pc33.carrier.example',
    trunk: 'carrier-a',
    from: '+15550100',
    to: '+442071838750',
    callerId: { number: '+15550100', name: 'Alice', privacy: false, source: 'P-Asserted-Identity' },
    headers: { 'X-Account': '42' },
    remote: '198.51.100.7:5060',
    transport: 'UDP',
    ...over,
  };
}

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
  verified: boolean;
}

type Reply = (body: RoutingRequest, res: ServerResponse) => void;

/** A routing receiver on 127.0.0.1 that checks the signature as a customer's would, then lets the test answer. */
async function receiver(t: TestContext, reply: Reply): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const sig = req.headers['x-voxgate-signature'];
      const verified = verifySignature(SECRET, typeof sig === 'string' ? sig : undefined, body, Date.now() / 1000);
      received.push({ headers: req.headers, body, verified });
      if (!verified) {
        res.writeHead(401).end();
        return;
      }
      reply(JSON.parse(body) as RoutingRequest, res);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    // A reply the test left hanging would keep close() waiting forever.
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/route`, received };
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(value));
}

/** Routes by caller as a customer's app would: US test numbers to echo, UK to a media-stream agent, the rest refused. */
const byCaller: Reply = (body, res) => {
  if (body.from.startsWith('+1555')) json(res, 200, { agent: 'echo', customParameters: { account: body.headers['X-Account'] ?? '' } });
  else if (body.from.startsWith('+44')) json(res, 200, { agent: { type: 'twilio-stream', url: 'wss://agent.example/stream', name: 'uk' } });
  else json(res, 200, { reject: { status: 403, reason: 'Caller not allowed' } });
};

test('the POST is JSON, signed over "t.body" and says who it is; the reply picks the agent from the caller', async (t) => {
  const { url, received } = await receiver(t, byCaller);
  const hook = new RoutingWebhook({ url, secret: SECRET });
  assert.deepEqual(await hook.decide(request()), { kind: 'accept', agent: 'echo', customParameters: { account: '42' }, by: 'webhook' });
  assert.deepEqual(await hook.decide(request({ from: '+442079460000' })), {
    kind: 'accept',
    agent: { type: 'twilio-stream', url: 'wss://agent.example/stream', name: 'uk' },
    customParameters: {},
    by: 'webhook',
  });
  assert.equal(received.length, 2);
  const [first] = received;
  assert.equal(first!.verified, true);
  assert.equal(first!.headers['content-type'], 'application/json');
  assert.equal(first!.headers['user-agent'], 'voxgate');
  assert.match(String(first!.headers['x-voxgate-signature']), /^t=\d+,v1=[0-9a-f]{64}$/);
  assert.deepEqual(JSON.parse(first!.body), request());
});

test('a reject reply becomes a reject with its status and reason; without a reason, the RFC 3261 phrase', async (t) => {
  let status = 403;
  let reason: string | undefined = 'Caller not allowed';
  const { url } = await receiver(t, (_b, res) => json(res, 200, { reject: { status, reason } }));
  const hook = new RoutingWebhook({ url, secret: SECRET });
  assert.deepEqual(await hook.decide(request()), { kind: 'reject', status: 403, reason: 'Caller not allowed', by: 'webhook' });
  for (const [s, phrase] of [[486, 'Busy Here'], [603, 'Decline'], [499, 'Client Failure']] as const) {
    status = s;
    reason = undefined;
    assert.deepEqual(await hook.decide(request()), { kind: 'reject', status: s, reason: phrase, by: 'webhook' });
  }
});

test('204 and {} fall back with "no decision"; customParameters alone accept the default agent', async (t) => {
  let reply: (res: ServerResponse) => void = (res) => res.writeHead(204).end();
  const { url } = await receiver(t, (_b, res) => reply(res));
  const hook = new RoutingWebhook({ url, secret: SECRET });
  assert.deepEqual(await hook.decide(request()), { kind: 'fallback', why: 'no decision' });
  reply = (res) => json(res, 200, {});
  assert.deepEqual(await hook.decide(request()), { kind: 'fallback', why: 'no decision' });
  reply = (res) => json(res, 200, { customParameters: { lang: 'fr' } });
  assert.deepEqual(await hook.decide(request()), { kind: 'accept', agent: undefined, customParameters: { lang: 'fr' }, by: 'webhook' });
});

test('a server that never answers, or stops mid-body, is a timeout fallback after timeoutMs, not later', async (t) => {
  let mode: 'silent' | 'trickle' = 'silent';
  const { url, received } = await receiver(t, (_b, res) => {
    // Left open on purpose; the receiver's cleanup closes the connection.
    if (mode === 'trickle') res.writeHead(200, { 'Content-Type': 'application/json' }).write('{"agent":');
  });
  const hook = new RoutingWebhook({ url, secret: SECRET, timeoutMs: 200 });
  for (const m of ['silent', 'trickle'] as const) {
    mode = m;
    const started = performance.now();
    const d = await hook.decide(request());
    const took = performance.now() - started;
    assert.deepEqual(d, { kind: 'fallback', why: 'timeout' }, m);
    assert.ok(took >= 190 && took < 1500, `${m}: took ${took.toFixed(0)} ms`);
  }
  assert.equal(received.length, 2);
});

test('non-2xx answers fall back with their status; a redirect is not followed', async (t) => {
  let status = 500;
  const { url, received } = await receiver(t, (_b, res) => {
    if (status === 302) res.writeHead(302, { Location: '/elsewhere' }).end();
    else json(res, status, { agent: 'echo' });
  });
  const hook = new RoutingWebhook({ url, secret: SECRET });
  for (const s of [500, 404, 302]) {
    status = s;
    assert.deepEqual(await hook.decide(request()), { kind: 'fallback', why: `http ${s}` });
  }
  assert.equal(received.length, 3, 'the redirect target was never asked');
});

test('a reply that is not JSON, or not a reply we know, falls back naming what is wrong', async (t) => {
  let send: (res: ServerResponse) => void = () => undefined;
  const { url } = await receiver(t, (_b, res) => send(res));
  const hook = new RoutingWebhook({ url, secret: SECRET });
  const why = async (body: string): Promise<string> => {
    send = (res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
    const d = await hook.decide(request());
    assert.equal(d.kind, 'fallback', body);
    return d.kind === 'fallback' ? d.why : '';
  };
  assert.equal(await why('<Response><Dial/></Response>'), 'invalid reply: not JSON');
  assert.equal(await why(''), 'invalid reply: not JSON');
  assert.match(await why('[]'), /^invalid reply: /);
  assert.match(await why('{"agent":"echo","customParameter":{"a":"b"}}'), /^invalid reply: unknown key\(s\) "customParameter"$/);
  assert.match(await why('{"rejct":{"status":403}}'), /unknown key\(s\) "rejct"/);
  assert.match(await why('{"reject":{"status":302}}'), /^invalid reply: reject\.status: /);
  assert.match(await why('{"reject":{"status":403,"reason":"No\\r\\nX-Injected: 1"}}'), /reject\.reason: no control characters/);
  assert.match(await why('{"reject":{"status":403},"agent":"echo"}'), /either rejects or picks an agent, not both/);
  assert.match(await why('{"agent":{"url":"wss://x"}}'), /agent: /);
  assert.match(await why('{"agent":"echo","customParameters":{"n":1}}'), /customParameters\.n: /);
  assert.equal(await why('{"agent":5}'), 'invalid reply: agent: name an agent ("echo") or give an agent object');
  assert.ok((await why(JSON.stringify(Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`typo${i}`, 1]))))).length <= 215, 'the why stays short');
});

test('a reply over 64 KiB is refused unread, whether it declares its length or streams it', async (t) => {
  const big = JSON.stringify({ agent: 'echo', customParameters: { pad: 'x'.repeat(MAX_REPLY_BYTES) } });
  let chunked = false;
  const { url } = await receiver(t, (_b, res) => {
    if (!chunked) {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(big) }).end(big);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    for (let i = 0; i < big.length; i += 8192) res.write(big.slice(i, i + 8192));
    res.end();
  });
  const hook = new RoutingWebhook({ url, secret: SECRET });
  assert.deepEqual(await hook.decide(request()), { kind: 'fallback', why: 'invalid reply: too large' });
  chunked = true;
  assert.deepEqual(await hook.decide(request()), { kind: 'fallback', why: 'invalid reply: too large' });
});

test('a port nobody listens on is an unreachable fallback, not a throw', async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  const hook = new RoutingWebhook({ url: `http://127.0.0.1:${port}/route`, secret: SECRET });
  assert.deepEqual(await hook.decide(request()), { kind: 'fallback', why: 'unreachable: ECONNREFUSED' });
});

test('a fetch that throws is a fallback too, and the injected clock dates the signature', async () => {
  let seen: Headers | undefined;
  const hook = new RoutingWebhook(
    { url: 'https://route.example/in', secret: SECRET },
    {
      now: () => 1_700_000_000_999,
      fetch: async (_u, init) => {
        seen = new Headers(init?.headers);
        throw new Error('boom');
      },
    },
  );
  assert.deepEqual(await hook.decide(request()), { kind: 'fallback', why: 'unreachable: boom' });
  assert.match(seen!.get('x-voxgate-signature') ?? '', /^t=1700000000,v1=/);
});

test('a webhook with a non-http URL or an empty secret is refused when built', () => {
  assert.throws(() => new RoutingWebhook({ url: 'file:///etc/passwd', secret: SECRET }), /http:\/\/ or https:\/\//);
  assert.throws(() => new RoutingWebhook({ url: 'not a url', secret: SECRET }), /http:\/\/ or https:\/\//);
  assert.throws(() => new RoutingWebhook({ url: 'https://route.example', secret: '' }), /secret must not be empty/);
});

test('the signature matches an independent HMAC-SHA256 (openssl dgst -sha256 -hmac) of "t.body"', () => {
  const body = '{"event":"call.incoming"}';
  // printf '%s' '1700000000.{"event":"call.incoming"}' | openssl dgst -sha256 -hmac whsec_test
  assert.equal(signBody(SECRET, body, 1_700_000_000.9), 't=1700000000,v1=219b47d3fca0eaf829205c29f08550a11c40680b766001cf8d0ce2021473b364');
  assert.equal(signBody(SECRET, Buffer.from(body), 1_700_000_000), signBody(SECRET, body, 1_700_000_000));
});

test('verification refuses a tampered body, another secret, an old or far-future timestamp, and malformed headers', () => {
  const body = JSON.stringify(request());
  const now = 1_700_000_000;
  const header = signBody(SECRET, body, now);
  assert.equal(verifySignature(SECRET, header, body, now), true);
  assert.equal(verifySignature(SECRET, header, body, now + 300), true, 'within the 300 s tolerance');
  assert.equal(verifySignature(SECRET, header, body.replace('+15550100', '+15550199'), now), false, 'tampered body');
  assert.equal(verifySignature('whsec_other', header, body, now), false, 'other secret');
  assert.equal(verifySignature(SECRET, header, body, now + 301), false, 'replayed after the tolerance');
  assert.equal(verifySignature(SECRET, header, body, now + 60, 30), false, 'a tighter tolerance');
  assert.equal(verifySignature(SECRET, header, body, now - 301), false, 'dated in the future');
  // The timestamp is signed: moving it forward to pass the window breaks the HMAC.
  const v1 = header.split(',v1=')[1]!;
  assert.equal(verifySignature(SECRET, `t=${now + 1000},v1=${v1}`, body, now + 1000), false, 'restamped');
  for (const bad of [undefined, '', 'v1=' + v1, `t=${now}`, `t=${now},v1=${v1.slice(2)}`, `t=abc,v1=${v1}`, `t=${now},v0=${v1}`]) {
    assert.equal(verifySignature(SECRET, bad, body, now), false, String(bad));
  }
});

test('verification accepts any of several v1 entries, so a receiver can roll its secret', () => {
  const body = '{}';
  const now = 1_700_000_000;
  const fresh = signBody(SECRET, body, now).split(',v1=')[1]!;
  const stale = signBody('whsec_old', body, now).split(',v1=')[1]!;
  assert.equal(verifySignature(SECRET, `t=${now},v1=${stale},v1=${fresh}`, body, now), true);
});

test('a receiver that checks the signature over the wire refuses a tampered body', async (t) => {
  const { url, received } = await receiver(t, byCaller);
  const header = signBody(SECRET, JSON.stringify(request()), Date.now() / 1000);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Voxgate-Signature': header },
    body: JSON.stringify(request({ from: '+15559999' })),
  });
  await res.arrayBuffer();
  assert.equal(res.status, 401);
  assert.equal(received[0]!.verified, false);
});
