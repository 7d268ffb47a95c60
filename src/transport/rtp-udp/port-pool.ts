import { createSocket, type Socket } from 'node:dgram';
import { VoxgateError } from '../../core/errors.js';

/** A bound RTP port (even) and its RTCP port (the next, RFC 3550 §11), held by one call. */
export interface RtpPortPair {
  readonly port: number;
  readonly rtp: Socket;
  readonly rtcp: Socket;
}

export interface RtpPortPoolOptions {
  /** Where the sockets bind (`sip.rtp.bindAddress`). */
  host: string;
  /** The range `sip.rtp.portMin`..`portMax`, both inclusive; pairs start on even ports. */
  min: number;
  max: number;
  /**
   * How long a released pair stays unused, so a late packet of an ended call (a carrier still
   * sending, a retransmitted re-INVITE's media) cannot reach the next call given that port.
   */
  quarantineMs: number;
  now(): number;
}

/**
 * The RTP ports of plain-RTP legs: one even/odd pair per leg from the configured range, taken
 * round-robin so the port a call just left is the last to be handed out again, and held closed
 * for `quarantineMs` after release. Exhaustion is a 503 (VG_RTP_PORTS_EXHAUSTED): the range is
 * sized as calls x 2 ports.
 */
export class RtpPortPool {
  /** Pairs held now, by port: a stale release of an older pair on the same port changes nothing. */
  readonly #inUse = new Map<number, RtpPortPair | undefined>();
  /** Released pairs and when they may be handed out again. */
  readonly #quarantine = new Map<number, number>();
  #cursor: number;
  readonly #pairs: number;

  constructor(private readonly opts: RtpPortPoolOptions) {
    const first = opts.min % 2 === 0 ? opts.min : opts.min + 1;
    this.#cursor = first;
    this.#pairs = Math.max(0, Math.floor((opts.max - first + 1) / 2));
  }

  get size(): number {
    return this.#pairs;
  }

  /** Ports in use now (two per pair), for the `voxgate_rtp_ports_in_use` gauge. */
  get portsInUse(): number {
    return this.#inUse.size * 2;
  }

  /** The next free pair, bound; throws VG_RTP_PORTS_EXHAUSTED when every pair is taken or held. */
  async allocate(): Promise<RtpPortPair> {
    const now = this.opts.now();
    for (let tried = 0; tried < this.#pairs; tried++) {
      const port = this.#next();
      if (this.#inUse.has(port)) continue;
      const until = this.#quarantine.get(port);
      if (until !== undefined) {
        if (until > now) continue;
        this.#quarantine.delete(port);
      }
      this.#inUse.set(port, undefined);
      try {
        const rtp = await bind(this.opts.host, port);
        try {
          const rtcp = await bind(this.opts.host, port + 1);
          const pair = { port, rtp, rtcp };
          this.#inUse.set(port, pair);
          return pair;
        } catch (err) {
          rtp.close();
          throw err;
        }
      } catch {
        // Taken by another process: skip it for a while rather than fail the call.
        this.#inUse.delete(port);
        this.#quarantine.set(port, now + this.opts.quarantineMs);
      }
    }
    throw new VoxgateError('VG_RTP_PORTS_EXHAUSTED', `All ${this.#pairs} RTP port pairs of sip.rtp (${this.opts.min}-${this.opts.max}) are in use or held; widen the range (2 ports per call).`, {
      headers: { 'Retry-After': '5' },
    });
  }

  /** Closes the pair's sockets and holds its port for the quarantine. */
  release(pair: RtpPortPair): void {
    if (this.#inUse.get(pair.port) !== pair) return;
    this.#inUse.delete(pair.port);
    for (const s of [pair.rtp, pair.rtcp]) {
      try {
        s.close();
      } catch {
        // Already closed.
      }
    }
    this.#quarantine.set(pair.port, this.opts.now() + this.opts.quarantineMs);
    // Bounded: at most one entry per pair of the range; expired ones go now and then.
    if (this.#quarantine.size >= this.#pairs / 2) this.#sweep();
  }

  #next(): number {
    const port = this.#cursor;
    this.#cursor += 2;
    if (this.#cursor + 1 > this.opts.max) this.#cursor = this.opts.min % 2 === 0 ? this.opts.min : this.opts.min + 1;
    return port;
  }

  #sweep(): void {
    const now = this.opts.now();
    for (const [port, until] of this.#quarantine) if (until <= now) this.#quarantine.delete(port);
  }
}

function bind(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', reuseAddr: false });
    const fail = (err: Error) => {
      s.close();
      reject(err);
    };
    s.once('error', fail);
    s.bind(port, host, () => {
      s.off('error', fail);
      resolve(s);
    });
  });
}
