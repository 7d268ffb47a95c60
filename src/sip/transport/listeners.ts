import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { ConfigError, type SipConfig } from '../../core/config.js';
import type { Logger } from '../../core/logger.js';
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

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError([`${field}: cannot read ${path} (${(err as Error).message})`]);
  }
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
          const tls = l.transport === 'tls' ? { cert: readPem(l.cert!, `sip.listen.${i}.cert`), key: readPem(l.key!, `sip.listen.${i}.key`) } : undefined;
          opened.push(await StreamTransport.open({ ...common, tls }));
        }
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        throw new ConfigError([`sip.listen.${i}: cannot listen for SIP over ${l.transport} on ${l.host}:${port} (${(err as Error).message})`]);
      }
    }
  } catch (err) {
    for (const t of opened) t.close();
    throw err;
  }
  return opened;
}
