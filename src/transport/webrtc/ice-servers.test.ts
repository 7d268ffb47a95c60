import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { iceServerLinks } from './ice-servers.js';

test('STUN and static TURN servers become quoted RFC 8288 links', () => {
  const links = iceServerLinks(
    [
      { urls: 'stun:stun.example.net:3478', ttlSeconds: 60 },
      { urls: ['turn:turn.example.net:3478?transport=udp', 'turns:turn.example.net:5349?transport=tcp'], username: 'u=1', credential: 'p"w', ttlSeconds: 60 },
    ],
    'sess',
    0,
  );
  assert.deepEqual(links, [
    '<stun:stun.example.net:3478>; rel="ice-server"',
    '<turn:turn.example.net:3478?transport=udp>; rel="ice-server"; username="u=1"; credential="p\\"w"; credential-type="password"',
    '<turns:turn.example.net:5349?transport=tcp>; rel="ice-server"; username="u=1"; credential="p\\"w"; credential-type="password"',
  ]);
});

test('TURN REST credentials: username "<expiry>:<session>", password base64(HMAC-SHA1(secret, username))', () => {
  const [link] = iceServerLinks([{ urls: 'turn:t:3478', secret: 's3cret', ttlSeconds: 600 }], 'abc', 1_000_000);
  const username = `${1000 + 600}:abc`;
  const credential = createHmac('sha1', 's3cret').update(username).digest('base64');
  assert.equal(link, `<turn:t:3478>; rel="ice-server"; username="${username}"; credential="${credential}"; credential-type="password"`);
});
