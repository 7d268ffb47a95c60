import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchChromium, publishFromPage, type TestBrowser } from './helpers/chromium.js';
import { startCoturn, type Coturn } from './helpers/coturn.js';
import { adminSessions, SOURCE_TOKEN, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { toneWav } from './helpers/media.js';

/** Parses RFC 8288 ice-server Links into RTCIceServer entries. */
function iceServersFromLinks(header: string): RTCIceServer[] {
  return header.split(/,\s*(?=<)/).map((link) => {
    const url = /^<([^>]+)>/.exec(link)![1]!;
    const param = (name: string) => new RegExp(`;\\s*${name}="([^"]*)"`).exec(link)?.[1];
    return { urls: url, username: param('username'), credential: param('credential') };
  });
}

describe('Chromium publishes through coturn with the credentials voxgate minted', () => {
  let turn: Coturn;
  let tg: TestGateway;
  let chrome: TestBrowser;

  before(async () => {
    turn = await startCoturn();
    tg = await startGateway({ iceServers: [{ urls: `turn:127.0.0.1:${turn.port}?transport=udp`, secret: turn.secret, ttlSeconds: 300 }] });
    chrome = await launchChromium(`${tg.url}/healthz`, toneWav(440));
  });
  after(async () => {
    await chrome?.close();
    await tg?.stop();
    await turn?.stop();
  });

  test('OPTIONS without a token gets no TURN credentials', async () => {
    const res = await fetch(`${tg.url}/whip`, { method: 'OPTIONS' });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('link'), null);
  });

  test("iceTransportPolicy 'relay': media reaches voxgate through the TURN relay", async () => {
    const options = await fetch(`${tg.url}/whip`, { method: 'OPTIONS', headers: { Authorization: `Bearer ${SOURCE_TOKEN}` } });
    const link = options.headers.get('link');
    assert.ok(link, 'an authenticated OPTIONS carries ice-server Links');
    const iceServers = iceServersFromLinks(link);
    assert.match(iceServers[0]!.username!, /^\d+:options-browser-widget$/);

    const r = await publishFromPage(chrome.page, `${tg.url}/whip`, { token: SOURCE_TOKEN, trickle: false, iceServers, relayOnly: true });
    assert.equal(r.status, 201);
    assert.equal(r.connectionState, 'connected');
    const id = r.location!.split('/').pop()!;
    const s = await waitFor('RTP through the relay', async () => (await adminSessions(tg.url)).find((x) => x.id === id && x.packets > 20));
    // voxgate sees the relay's allocated address, not Chromium's own socket.
    const relayPort = Number(s.remoteAddress!.split(':')[1]);
    assert.ok(relayPort >= 40000 + (turn.port % 20000) && relayPort <= 40050 + (turn.port % 20000), `remote ${s.remoteAddress} is a coturn relay port`);
    // The 201 also carries freshly minted credentials bound to this session.
    assert.match(r.links!, new RegExp(`username="\\d+:${id}"`));
  });
});
