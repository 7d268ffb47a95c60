import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from './config.js';

const LISTEN = [{ transport: 'udp', host: '127.0.0.1', port: 0 }];
const CARRIER_A = { name: 'carrier-a', inbound: { numbers: ['+15551230000'], allowedAddresses: ['192.0.2.0/24'], agent: 'echo' } };

function sip(trunks: unknown[], extra: Record<string, unknown> = {}): unknown {
  return { sip: { listen: LISTEN, trunks, ...extra } };
}

/** The problems a refused config reports (fails when it is accepted). */
function problems(input: unknown): string[] {
  try {
    parseConfig(input);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  assert.fail('the configuration was accepted');
}

/** Asserts that one problem names exactly this field (the path, then ': '). */
function names(list: string[], path: string, message?: RegExp): void {
  const hit = list.find((p) => p.startsWith(`${path}: `));
  assert.ok(hit, `no problem names ${path}; got:\n  ${list.join('\n  ')}`);
  if (message) assert.match(hit, message);
}

describe('parseConfig: SIP trunks', () => {
  it('a trunk as in the docs parses, with the documented defaults', () => {
    const cfg = parseConfig(sip([CARRIER_A]));
    const t = cfg.sip.trunks[0]!;
    assert.equal(t.name, 'carrier-a');
    assert.deepEqual(t.codecs, ['pcmu', 'pcma', 'g722', 'opus']);
    assert.equal(t.mediaEncryption, 'allow');
    assert.equal(t.maxCalls, undefined);
    assert.deepEqual(t.inbound?.numbers, ['+15551230000']);
    assert.deepEqual(t.inbound?.allowedAddresses, ['192.0.2.0/24']);
    assert.equal(t.inbound?.agent, 'echo');
    assert.equal(t.inbound?.refer, false);
    assert.equal(t.inbound?.ringTimeoutSeconds, 30);
    assert.equal(t.inbound?.auth, undefined);
    assert.equal(t.inbound?.webhook, undefined);
    assert.deepEqual(cfg.sip.listen, [{ transport: 'udp', host: '127.0.0.1', port: 0 }]);
    assert.deepEqual([cfg.sip.rtp.portMin, cfg.sip.rtp.portMax, cfg.sip.rtp.quarantineSeconds], [20000, 29999, 10]);
  });

  it('IPv6 CIDRs, single addresses and auth-only trunks are accepted', () => {
    const cfg = parseConfig(
      sip([
        { name: 'v6', inbound: { numbers: ['+442071234567'], allowedAddresses: ['2001:db8::/32', '198.51.100.7', '::1'] } },
        { name: 'pbx', inbound: { auth: { user: 'pbx', password: 'secret' } }, mediaEncryption: 'require', maxCalls: 4 },
        { name: 'outbound-only' },
      ]),
    );
    assert.deepEqual(
      cfg.sip.trunks.map((t) => t.name),
      ['v6', 'pbx', 'outbound-only'],
    );
    assert.equal(cfg.sip.trunks[1]!.inbound?.numbers.length, 0);
  });

  it('two trunks claiming one number: the second claim is named', () => {
    const list = problems(sip([CARRIER_A, { name: 'carrier-b', inbound: { numbers: ['+15559990000', '+15551230000'], allowedAddresses: ['198.51.100.0/24'] } }]));
    assert.equal(list.length, 1);
    names(list, 'sip.trunks.1.inbound.numbers.1', /carrier-a/);
    const first = problems(sip([CARRIER_A, { name: 'carrier-b', inbound: { numbers: ['+15551230000'], allowedAddresses: ['198.51.100.0/24'] } }]));
    names(first, 'sip.trunks.1.inbound.numbers.0', /\+15551230000/);
  });

  it('two trunks with one name are refused', () => {
    names(problems(sip([CARRIER_A, { name: 'carrier-a' }])), 'sip.trunks.1.name', /duplicate/);
  });

  it('an allowed address that is not a CIDR or an address is named', () => {
    for (const bad of ['', '300.1.1.1/8', '192.0.2.0/33', '2001:db8::/129', 'carrier.example', '192.0.2.0/24/8', '192.0.2.0/x']) {
      const list = problems(sip([{ ...CARRIER_A, inbound: { ...CARRIER_A.inbound, allowedAddresses: [bad] } }]));
      names(list, 'sip.trunks.0.inbound.allowedAddresses.0', /CIDR/);
    }
  });

  it('a number that is not E.164 is named by its path', () => {
    for (const bad of ['5551230000', '+0123', '+1 555 123 0000', '+1234567890123456', '']) {
      const list = problems(sip([{ ...CARRIER_A, inbound: { ...CARRIER_A.inbound, numbers: ['+15551230000', bad] } }]));
      names(list, 'sip.trunks.0.inbound.numbers.1', /E\.164/);
    }
  });

  it('an inbound trunk with neither allowedAddresses nor auth is refused: it would be open to anyone', () => {
    const list = problems(sip([{ name: 'open', inbound: { numbers: ['+15551230000'] } }]));
    names(list, 'sip.trunks.0.inbound.allowedAddresses', /open to anyone/);
    names(problems(sip([{ name: 'open', inbound: { numbers: ['+15551230000'], allowedAddresses: [] } }])), 'sip.trunks.0.inbound.allowedAddresses');
  });

  it('trunks without any sip.listen are refused, naming sip.listen', () => {
    names(problems({ sip: { trunks: [CARRIER_A] } }), 'sip.listen', /listener/);
    names(problems({ sip: { listen: [], trunks: [CARRIER_A] } }), 'sip.listen');
    assert.doesNotThrow(() => parseConfig({ sip: { trunks: [] } }));
  });

  it('a tls listener without a cert or key names the missing field', () => {
    names(problems(sip([CARRIER_A], { listen: [{ transport: 'tls', port: 0 }] })), 'sip.listen.0.cert', /cert and key/);
    names(problems(sip([CARRIER_A], { listen: [...LISTEN, { transport: 'tls', port: 0, cert: 'c.pem' }] })), 'sip.listen.1.key');
    names(problems(sip([CARRIER_A], { listen: [{ transport: 'udp', port: 0, cert: 'c.pem' }] })), 'sip.listen.0.cert', /tls listener/);
    assert.doesNotThrow(() => parseConfig(sip([CARRIER_A], { listen: [{ transport: 'tls', port: 0, cert: 'c.pem', key: 'k.pem' }] })));
  });

  it('two listeners on one transport, host and port are refused', () => {
    const listen = [
      { transport: 'udp', host: '127.0.0.1', port: 5060 },
      { transport: 'udp', host: '127.0.0.1', port: 5060 },
    ];
    names(problems(sip([CARRIER_A], { listen })), 'sip.listen.1', /already taken/);
  });

  it('an RTP range whose portMax is not above portMin is refused', () => {
    names(problems(sip([CARRIER_A], { rtp: { portMin: 30000, portMax: 30000 } })), 'sip.rtp.portMax', /above portMin/);
    names(problems(sip([CARRIER_A], { rtp: { portMin: 30000, portMax: 20000 } })), 'sip.rtp.portMax');
    assert.equal(parseConfig(sip([CARRIER_A], { rtp: { portMin: 30000, portMax: 30001 } })).sip.rtp.portMax, 30001);
  });

  it('an unknown codec or encryption mode on a trunk is named', () => {
    names(problems(sip([{ ...CARRIER_A, codecs: ['g729'] }])), 'sip.trunks.0.codecs.0');
    names(problems(sip([{ ...CARRIER_A, mediaEncryption: 'dtls' }])), 'sip.trunks.0.mediaEncryption');
    names(problems(sip([{ ...CARRIER_A, codecs: [] }])), 'sip.trunks.0.codecs');
  });
});
