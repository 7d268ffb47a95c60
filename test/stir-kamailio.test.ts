import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Agent, AgentSession } from '../src/agent/agent.js';
import type { OutboundCallView } from '../src/call/outbound-types.js';
import { stiLab, type StiLab } from '../src/testing/stir.js';
import { ADMIN_TOKEN, freeUdpPort, startGateway, waitFor, type TestGateway } from './helpers/gateway.js';
import { trackPeer } from './helpers/peers.js';
import { sipHeader, sippWire, SIPP_EXIT, startSipp } from './helpers/sipp.js';

/**
 * STIR/SHAKEN with Kamailio (Debian kamailio + kamailio-secsipid-modules) as the carrier:
 * it signs the calls its phone (SIPp) sends towards voxgate (secsipid_add_identity), and checks
 * the Identity on the calls voxgate sends it (secsipid_check_identity with the signer's public
 * key) before passing them to its phone (SIPp), refusing them 428/438 as a terminating carrier
 * would. voxgate runs in enforce mode, so a call that reaches the agent was verified.
 */

const OUR_NUMBER = '+15551230000';
const PHONE = '+15557654321';
/** Kamailio checks calls to this number with a key that is not the signer's: they must fail. */
const STRANGER_CHECKED = '+15557650000';

/** Whether something is bound to UDP 127.0.0.1:port (from /proc/net/udp). */
function udpBound(port: number): boolean {
  const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/udp', 'utf8').split('\n').some((l) => l.trim().split(/\s+/)[1] === hex);
}

class Probe implements Agent {
  readonly name = 'probe';
  readonly sampleRate = 8000;
  readonly sessions: AgentSession[] = [];
  attach(session: AgentSession): void {
    this.sessions.push(session);
  }
}

function kamailioConfig(p: { port: number; voxgate: number; phone: number; x5u: string; key: string; pubkey: string; otherPubkey: string }): string {
  return `#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:${p.port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "secsipid.so"
modparam("secsipid", "expire", 60)

request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (has_totag()) {
    if (loose_route()) { t_relay(); exit; }
    if (is_method("ACK")) { if (t_check_trans()) t_relay(); exit; }
    sl_send_reply("404", "Not Here"); exit;
  }
  if (is_method("CANCEL")) { if (t_check_trans()) t_relay(); exit; }
  if (!is_method("INVITE")) { sl_send_reply("405", "Method Not Allowed"); exit; }
  record_route();
  if ($sp == ${p.voxgate}) {
    # voxgate's call out: checked as a terminating carrier checks it, then to the phone.
    if (!is_present_hf("Identity")) { sl_send_reply("428", "Use Identity Header"); exit; }
    if ($rU == "${STRANGER_CHECKED}") {
      if (!secsipid_check_identity("${p.otherPubkey}")) { sl_send_reply("438", "Invalid Identity Header"); exit; }
    } else if (!secsipid_check_identity("${p.pubkey}")) { sl_send_reply("438", "Invalid Identity Header"); exit; }
    $du = "sip:127.0.0.1:${p.phone}";
    t_relay();
    exit;
  }
  # The phone's call in: signed as its originating carrier (numbers without the +), then to voxgate.
  if (!secsipid_add_identity("$(fU{s.strip,1})", "$(rU{s.strip,1})", "A", "", "${p.x5u}", "${p.key}")) { sl_send_reply("500", "Not Signed"); exit; }
  $du = "sip:127.0.0.1:${p.voxgate}";
  t_relay();
}
`;
}

describe('STIR/SHAKEN against Kamailio secsipid as the carrier', () => {
  let lab: StiLab;
  let tg: TestGateway;
  let kamailio: ChildProcess;
  let kamailioLog = '';
  let kamPort = 0;
  let phonePort = 0;
  const dir = mkdtempSync(join(tmpdir(), 'voxgate-kamailio-stir-'));
  const probe = new Probe();

  before(async () => {
    lab = await stiLab();
    const pubkey = join(dir, 'signer.pub.pem');
    writeFileSync(pubkey, spawnSync('openssl', ['x509', '-in', lab.signerCert, '-pubkey', '-noout'], { encoding: 'utf8' }).stdout);
    const otherKey = spawnSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout'], { encoding: 'utf8' }).stdout;
    const otherPubkey = join(dir, 'other.pub.pem');
    writeFileSync(otherPubkey, spawnSync('openssl', ['ec', '-pubout'], { input: otherKey, encoding: 'utf8' }).stdout);
    const voxPort = await freeUdpPort();
    kamPort = await freeUdpPort();
    phonePort = await freeUdpPort();
    tg = await startGateway(
      {
        sip: {
          listen: [{ transport: 'udp', host: '127.0.0.1', port: voxPort }],
          rtp: { portMin: 37000, portMax: 37099 },
          trunks: [
            {
              name: 'kamailio',
              codecs: ['pcmu'],
              stirShaken: { sign: true, verify: true },
              inbound: { numbers: [OUR_NUMBER], allowedAddresses: ['127.0.0.1/32'], agent: 'probe' },
              outbound: { address: `127.0.0.1:${kamPort}`, transport: 'udp', numbers: [OUR_NUMBER] },
            },
            { name: 'kamailio-unsigned', codecs: ['pcmu'], outbound: { address: `127.0.0.1:${kamPort}`, transport: 'udp', numbers: [OUR_NUMBER] } },
          ],
          outboundRoutes: [{ prefix: '+1', trunk: 'kamailio' }],
        },
        stirShaken: {
          sign: { privateKey: lab.signerKey, certificateUrl: lab.x5u, attestation: { default: 'B', numbers: { [OUR_NUMBER]: 'A' } } },
          verify: { trustAnchors: [lab.stiRoot], fetchCa: [lab.webCa], mode: 'enforce', allowPrivateAddresses: true },
        },
      },
      { agents: { probe: () => probe } },
    );
    writeFileSync(join(dir, 'kamailio.cfg'), kamailioConfig({ port: kamPort, voxgate: voxPort, phone: phonePort, x5u: lab.x5u, key: lab.signerKey, pubkey, otherPubkey }));
    kamailio = spawn('kamailio', ['-DD', '-E', '-f', join(dir, 'kamailio.cfg'), '-m', '64', '-M', '8', '-Y', dir, '-P', join(dir, 'kamailio.pid')], { stdio: ['ignore', 'ignore', 'pipe'] });
    trackPeer(kamailio, dir);
    kamailio.stderr!.on('data', (d: Buffer) => (kamailioLog = (kamailioLog + d.toString()).slice(-20_000)));
    await waitFor('kamailio to listen', () => {
      if (kamailio.exitCode !== null) assert.fail(`kamailio exited: ${kamailioLog}`);
      return udpBound(kamPort);
    });
  });

  after(async () => {
    kamailio?.kill('SIGTERM');
    await tg?.stop();
    await lab?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a call Kamailio signed (secsipid_add_identity) passes voxgate\'s enforcing verification: the agent gets TN-Validation-Passed, attest A, the caller\'s number', async () => {
    const sipp = await startSipp({ scenario: 'uac-stir-call-bye.xml', remote: `127.0.0.1:${kamPort}`, service: OUR_NUMBER, keys: { caller: PHONE, date_line: 'Subject: e2e', identity: 'Subject: signed by the carrier' }, pauseMs: 500, timeoutMs: 15_000 });
    const r = await sipp.done;
    assert.equal(r.code, SIPP_EXIT.ok, `${r.errors}\n${r.messages.slice(-4000)}\n--- kamailio\n${kamailioLog.slice(-3000)}`);
    const s = probe.sessions.at(-1);
    assert.ok(s, 'the agent got the call');
    assert.deepEqual([s.caller.number, s.caller.verstat, s.caller.attest, s.caller.origTn], [PHONE, 'TN-Validation-Passed', 'A', PHONE.slice(1)]);
  });

  async function dial(to = PHONE, trunk = 'kamailio'): Promise<OutboundCallView> {
    const res = await fetch(`${tg.url}/api/calls`, { method: 'POST', headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ to, trunk, agent: 'probe' }) });
    assert.equal(res.status, 201);
    return (await res.json()) as OutboundCallView;
  }
  async function view(id: string): Promise<OutboundCallView> {
    const res = await fetch(`${tg.url}/api/calls/${id}`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    return (await res.json()) as OutboundCallView;
  }

  test('a call voxgate signs passes Kamailio\'s secsipid_check_identity: it reaches the phone behind it and is answered', async () => {
    const phone = await startSipp({ scenario: 'uas-answer-bye.xml', localPort: phonePort, timeoutMs: 20_000 });
    const call = await dial();
    const answered = await waitFor('the call answered', async () => {
      const v = await view(call.id);
      if (v.state === 'ended') assert.fail(`the call ended: ${JSON.stringify(v)}\n--- kamailio\n${kamailioLog.slice(-3000)}`);
      return v.state === 'answered' ? v : undefined;
    });
    assert.equal(answered.state, 'answered');
    // The phone must have the ACK before our BYE (a BYE first is an unexpected message to SIPp).
    await waitFor('the ACK at the phone', () => sippWire(phone.messagesSoFar()).some((m) => m.dir === 'received' && m.method === 'ACK')).catch((e: Error) => assert.fail(`${e.message}\n${phone.messagesSoFar().slice(-5000)}\n--- kamailio\n${kamailioLog.slice(-5000)}`));
    await fetch(`${tg.url}/api/calls/${call.id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    const r = await phone.done;
    assert.equal(r.code, SIPP_EXIT.ok, r.errors);
    const invite = sippWire(r.messages).find((m) => m.dir === 'received' && m.method === 'INVITE');
    assert.ok(invite, 'the phone got the INVITE through Kamailio');
    const identity = sipHeader(invite.text, 'Identity');
    assert.ok(identity, 'with our Identity header on it');
    assert.equal((JSON.parse(Buffer.from(identity.split('.')[1]!, 'base64url').toString()) as { attest: string }).attest, 'A');
  });

  test('Kamailio refuses what it cannot verify: a trunk that does not sign gets 428, a call checked against another key 438; voxgate reports each', async () => {
    for (const [to, trunk, status] of [[PHONE, 'kamailio-unsigned', 428], [STRANGER_CHECKED, 'kamailio', 438]] as const) {
      const call = await dial(to, trunk);
      const ended = await waitFor(`the call via ${trunk} to end`, async () => {
        const v = await view(call.id);
        return v.state === 'ended' ? v : undefined;
      });
      assert.equal(ended.status, status, `${trunk} ${to}: ${JSON.stringify(ended)}\n--- kamailio\n${kamailioLog.slice(-3000)}`);
    }
  });
});
