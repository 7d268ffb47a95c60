import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../core/clock.js';
import { VoxgateError } from '../core/errors.js';
import { SourceAuthenticator, signJwt } from './source-auth.js';

const SECRET = 'x'.repeat(40);
const clock = new FakeClock(1_800_000_000_000);
const auth = new SourceAuthenticator(
  [
    { name: 'obs-studio', kind: 'obs', token: 'obs-token-0123456789abcdef', codecs: ['opus'], maxSessions: 1 },
    { name: 'ward-7', kind: 'iot', token: 'iot-token-0123456789abcdef' },
  ],
  SECRET,
  clock,
);
const now = clock.now() / 1000;

function rejects(header: string | undefined): VoxgateError {
  try {
    auth.authenticate(header);
  } catch (e) {
    if (e instanceof VoxgateError) return e;
    throw e;
  }
  assert.fail('accepted');
}

test('a configured token resolves to its source identity', () => {
  const id = auth.authenticate('Bearer iot-token-0123456789abcdef');
  assert.deepEqual(id, { name: 'ward-7', kind: 'iot', agent: undefined, codecs: ['opus'], maxSessions: undefined, via: 'token' });
  assert.equal(auth.authenticate('bearer obs-token-0123456789abcdef').name, 'obs-studio');
});

test('missing, malformed and unknown tokens are 401 with an RFC 6750 challenge', () => {
  const missing = rejects(undefined);
  assert.equal(missing.code, 'VG_AUTH_MISSING');
  assert.equal(missing.headers['WWW-Authenticate'], 'Bearer realm="voxgate"');
  assert.equal(rejects('Basic dXNlcjpwYXNz').code, 'VG_AUTH_INVALID');
  assert.equal(rejects('Basic dXNlcjpwYXNz').message, 'The Authorization header must be "Bearer <source token>" (RFC 6750); it has the "Basic" scheme: put "Bearer " before the token.');
  assert.match(rejects('obs-token-0123456789abcdef').message, /it has no scheme: put "Bearer " before the token/, 'the raw key, as some players send it');
  assert.match(rejects('obs-token-0123456789abcdef').headers['WWW-Authenticate']!, /error_description="The Authorization header must be 'Bearer <source token>'/);
  assert.equal(rejects('Bearer obs token').message, 'The source token after "Bearer " is not a token (RFC 6750: letters, digits and -._~+/, then any "=").');
  assert.equal(rejects('Bearer obs-token-0123456789abcdeX').code, 'VG_AUTH_INVALID');
  assert.match(rejects('Bearer nope').headers['WWW-Authenticate']!, /error="invalid_token"/);
});

test('a signed token naming a configured source inherits its policy', () => {
  const id = auth.authenticate(`Bearer ${signJwt({ sub: 'obs-studio', exp: now + 60 }, SECRET)}`);
  assert.equal(id.kind, 'obs');
  assert.equal(id.maxSessions, 1);
  assert.equal(id.via, 'jwt');
});

test('a signed token for an unconfigured source carries its own kind and codecs', () => {
  const id = auth.authenticate(`Bearer ${signJwt({ sub: 'kiosk-12', kind: 'browser', codecs: ['pcmu', 'bogus'], exp: now + 60 }, SECRET)}`);
  assert.deepEqual([id.name, id.kind, id.codecs], ['kiosk-12', 'browser', ['pcmu']]);
});

test('expired, unsigned (alg none), wrongly signed, exp-less or sub-less tokens are refused', () => {
  assert.equal(rejects(`Bearer ${signJwt({ sub: 'obs-studio', exp: now - 1 }, SECRET)}`).code, 'VG_AUTH_EXPIRED');
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'obs-studio', exp: now + 60 })).toString('base64url')}.`;
  assert.equal(rejects(`Bearer ${none}`).code, 'VG_AUTH_INVALID');
  assert.equal(rejects(`Bearer ${signJwt({ sub: 'obs-studio', exp: now + 60 }, 'y'.repeat(40))}`).code, 'VG_AUTH_INVALID');
  assert.match(rejects(`Bearer ${signJwt({ sub: 'obs-studio' }, SECRET)}`).message, /exp/);
  assert.match(rejects(`Bearer ${signJwt({ exp: now + 60 }, SECRET)}`).message, /sub/);
});
