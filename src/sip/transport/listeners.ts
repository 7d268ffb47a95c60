import { networkInterfaces } from 'node:os';
import { ConfigError, type SipConfig } from '../../core/config.js';
import type { Logger } from '../../core/logger.js';
import { portProblem, readConfigFile } from '../../core/startup.js';
import { StreamTransport } from './stream.js';
import type { SipTransport } from './transport.js';
import { UdpTransport } from './udp.js';

/**
 * The address others reach us at on a listener: `sip.externalAddress` behind NAT, the bound
 * host when it is one address, else this machine's first non-loopback IPv4 (loopback when it has none).
 */
export function advertisedHost(bindHost: string, externalAddress: string | undefined): string {
  if (externalAddress) return externalAddress;
  if (bindHost !== '0.0.0.0' && bindHost !== '::') return bindHost;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

/**
 * Opens `sip.listen`: UDP, TCP and TLS transports (RFC 3261 §18), each with the sent-by others
 * reach it at. A listener that cannot bind is a start-up error naming its config entry.
 */
export async function openSipListeners(sip: SipConfig, log: Logger): Promise<SipTransport[]> {
  const opened: SipTransport[] = [];
  try {
    for (const [i, l] of sip.listen.entries()) {
      const port = l.port ?? (l.transport === 'tls' ? 5061 : 5060);
      const host = advertisedHost(l.host, sip.externalAddress);
      const sentBy = host.includes(':') ? `[${host}]` : host;
      const common = { host: l.host, port, sentBy, log: log.child({ transport: l.transport }), maxMessageBytes: sip.maxMessageBytes };
      try {
        if (l.transport === 'udp') opened.push(await UdpTransport.open(common));
        else {
          const tls = l.transport === 'tls' ? { cert: readConfigFile(l.cert!, `sip.listen.${i}.cert`, 'the certificate'), key: readConfigFile(l.key!, `sip.listen.${i}.key`, 'the private key') } : undefined;
          opened.push(await StreamTransport.open({ ...common, tls }));
        }
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        throw portProblem(`sip.listen.${i}.port`, l.transport === 'udp' ? 'UDP' : 'TCP', l.host, port, err);
      }
    }
  } catch (err) {
    for (const t of opened) t.close();
    throw err;
  }
  return opened;
}
