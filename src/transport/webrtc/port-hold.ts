import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { portProblem } from '../../core/startup.js';
import { WebRtcPeer, type MediaEndpointOptions } from './peer.js';

/**
 * Claims the media UDP port (`media.udpPort`) for the gateway's whole life.
 *
 * libjuice binds the shared ICE port when the first peer connection gathers and lets it go when
 * the last one closes, so without a holder an idle gateway owns nothing: a second gateway on the
 * same port started cleanly and its calls failed; and a port another process took between calls
 * made the next peer's gathering throw on a library thread, which aborts the process. So the port
 * is tried first (a one-line start-up error naming the field when it is taken), then held by one
 * idle peer connection that never signals anyone, until stop.
 */
export async function holdMediaPort(opts: MediaEndpointOptions): Promise<{ close(): void }> {
  const { udpPort: port, bindAddress: host } = opts;
  await new Promise<void>((resolve, reject) => {
    const probe = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    probe.once('error', (err) => {
      probe.close();
      reject(portProblem('media.udpPort', 'UDP', host, port, err, '--udp-port'));
    });
    probe.bind(port, host, () => probe.close(() => resolve()));
  });
  const plan = {
    audio: { mid: '0', codec: 'pcmu' as const, payloadType: 0, clockRate: 8000, channels: 1, fmtp: undefined, telephoneEvent: undefined, direction: 'recvonly' as const, offered: 'sendrecv' as const },
    inactive: [],
    hasDataChannel: false,
  };
  return WebRtcPeer.offer('voxgate-media-port', plan, opts);
}
