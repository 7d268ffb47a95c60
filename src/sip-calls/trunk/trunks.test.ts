import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig, type TrunkConfig } from '../../core/config.js';
import { AddressList, remoteHost, Trunk, TrunkTable } from './trunks.js';

/** Trunks as the config loader gives them (defaults filled in). */
function trunks(list: unknown[]): TrunkConfig[] {
  return parseConfig({ sip: { listen: [{ transport: 'udp', host: '127.0.0.1', port: 0 }], trunks: list } }).sip.trunks;
}

function table(list: unknown[]): TrunkTable {
  return new TrunkTable(trunks(list), 'voxgate.local', () => 0, 300_000);
}

const CARRIER_A = { name: 'carrier-a', inbound: { numbers: ['+15551230000', '+15551230001'], allowedAddresses: ['192.0.2.0/24'], agent: 'echo' } };
const CARRIER_B = { name: 'carrier-b', inbound: { numbers: ['+15559990000'], allowedAddresses: ['192.0.2.128/25', '2001:db8::/32'] }, maxCalls: 2 };
const AUTH_ONLY = { name: 'pbx', inbound: { numbers: ['+15557770000'], auth: { user: 'pbx', password: 'pbx-secret' } } };
const BOTH = { name: 'both', inbound: { allowedAddresses: ['203.0.113.9'], auth: { user: 'both', password: 'both-secret' } } };
const OUTBOUND_ONLY = { name: 'out' };

describe('AddressList', () => {
  it('an IPv4 CIDR holds the addresses inside it and no others', () => {
    const acl = new AddressList(['192.0.2.0/24']);
    assert.equal(acl.has('192.0.2.0'), true);
    assert.equal(acl.has('192.0.2.77'), true);
    assert.equal(acl.has('192.0.2.255'), true);
    assert.equal(acl.has('192.0.3.1'), false);
    assert.equal(acl.has('10.0.0.1'), false);
  });

  it('a single address holds that address only', () => {
    const acl = new AddressList([' 198.51.100.7 ']);
    assert.equal(acl.has('198.51.100.7'), true);
    assert.equal(acl.has('198.51.100.8'), false);
  });

  it('an IPv6 CIDR holds IPv6 addresses, bracketed or not', () => {
    const acl = new AddressList(['2001:db8::/32']);
    assert.equal(acl.has('2001:db8:1::5'), true);
    assert.equal(acl.has('[2001:db8::1]'), true);
    assert.equal(acl.has('2001:db9::1'), false);
    assert.equal(acl.has('192.0.2.1'), false);
  });

  it('an IPv4 peer seen on a dual-stack socket as ::ffff:a.b.c.d matches the IPv4 entries', () => {
    const acl = new AddressList(['192.0.2.0/24']);
    assert.equal(acl.has('::ffff:192.0.2.5'), true);
    assert.equal(acl.has('::FFFF:192.0.2.5'), true);
    assert.equal(acl.has('[::ffff:192.0.2.5]'), true);
    assert.equal(acl.has('::ffff:198.51.100.1'), false);
  });

  it('a host that is not an IP address is never held', () => {
    const acl = new AddressList(['0.0.0.0/0', '::/0']);
    assert.equal(acl.has('carrier.example'), false);
    assert.equal(acl.has(''), false);
    assert.equal(acl.has('192.0.2.1:5060'), false);
    assert.equal(acl.has('192.0.2.1'), true);
  });
});

describe('TrunkTable', () => {
  it('finds a trunk by each of its numbers, and nothing for an unknown or missing number', () => {
    const t = table([CARRIER_A, CARRIER_B]);
    assert.equal(t.byNumber('+15551230000')?.name, 'carrier-a');
    assert.equal(t.byNumber('+15551230001')?.name, 'carrier-a');
    assert.equal(t.byNumber('+15559990000')?.name, 'carrier-b');
    assert.equal(t.byNumber('+15550000000'), undefined);
    assert.equal(t.byNumber(undefined), undefined);
  });

  it('finds every trunk whose ACL holds a source address, in config order', () => {
    const t = table([CARRIER_A, CARRIER_B, AUTH_ONLY, OUTBOUND_ONLY]);
    assert.deepEqual(t.byAddress('192.0.2.10').map((x) => x.name), ['carrier-a']);
    assert.deepEqual(t.byAddress('192.0.2.200').map((x) => x.name), ['carrier-a', 'carrier-b']);
    assert.deepEqual(t.byAddress('2001:db8::7').map((x) => x.name), ['carrier-b']);
    assert.deepEqual(t.byAddress('198.51.100.1'), []);
  });

  it('authOnly lists the trunks with credentials and no ACL (not those with both, nor outbound-only ones)', () => {
    const t = table([CARRIER_A, AUTH_ONLY, BOTH, OUTBOUND_ONLY]);
    assert.deepEqual(t.authOnly.map((x) => x.name), ['pbx']);
    assert.deepEqual(t.byAddress('203.0.113.9').map((x) => x.name), ['both']);
    assert.equal(t.all.length, 4);
    assert.equal(t.all.find((x) => x.name === 'out')?.acl, undefined);
  });
});

describe('Trunk', () => {
  it('is full once its active calls reach maxCalls, and free again when one ends', () => {
    const trunk = new Trunk(trunks([CARRIER_B])[0]!);
    assert.equal(trunk.full, false);
    trunk.active.add('s1');
    assert.equal(trunk.full, false);
    trunk.active.add('s2');
    assert.equal(trunk.full, true);
    trunk.active.delete('s1');
    assert.equal(trunk.full, false);
  });

  it('without maxCalls is never full', () => {
    const trunk = new Trunk(trunks([CARRIER_A])[0]!);
    for (let i = 0; i < 100; i++) trunk.active.add(`s${i}`);
    assert.equal(trunk.full, false);
    assert.equal(trunk.webhook, undefined);
    assert.equal(trunk.acl?.has('192.0.2.1'), true);
  });
});

describe('remoteHost', () => {
  it('takes the host of an IPv4 flow remote and of a bracketed IPv6 one', () => {
    assert.equal(remoteHost('192.0.2.1:5060'), '192.0.2.1');
    assert.equal(remoteHost('[2001:db8::1]:5060'), '2001:db8::1');
    assert.equal(remoteHost('[::ffff:192.0.2.1]:5062'), '::ffff:192.0.2.1');
  });

  it('leaves a remote without a port as it is', () => {
    assert.equal(remoteHost('192.0.2.1'), '192.0.2.1');
    assert.equal(remoteHost('2001:db8::1'), '2001:db8::1');
    assert.equal(remoteHost('carrier.example:5060'), 'carrier.example');
  });
});
