import { createEncoder, type AudioEncoder } from '../audio/codec.js';
import { samplesPerFrame } from '../audio/frame.js';
import type { CodecName } from '../core/config.js';
import { TypedEmitter } from '../core/events.js';
import type { RtpPacket } from '../rtp/packet.js';

/**
 * What a listener hears: the caller, the other party (the agent, or the person the caller was
 * bridged to), or both mixed.
 */
export type ListenTrack = 'caller' | 'agent' | 'mix';

/** One WHEP listener as the fan-out sees it. */
export interface FanoutListener {
  readonly id: string;
  readonly track: ListenTrack;
  readonly codec: CodecName;
  /** The caller's packets are forwarded to it as they come (it took the caller's codec). */
  passthrough: boolean;
  forward(p: RtpPacket): void;
  /** One 20 ms encoded frame. */
  sendFrame(payload: Buffer): void;
}

export interface FanoutEvents extends Record<string, unknown[]> {
  /** A server-sent event for WHEP listeners (active, inactive, viewercount, quality, turn). */
  event: [name: string, data: unknown];
}

/**
 * Who hears what, for one call's WHEP listeners. The caller's packets are forwarded as they
 * arrive to listeners that took the caller's codec; everything else is encoded once per
 * (track, codec) per 20 ms tick and the same payload goes to every listener of that pair.
 */
export class Fanout extends TypedEmitter<FanoutEvents> {
  readonly listeners = new Map<string, FanoutListener>();
  readonly #encoders = new Map<string, AudioEncoder>();
  #mixer: Mixer;
  #silence: Int16Array;

  constructor(
    /** The caller's codec: listeners of the caller track that take it get its packets forwarded. */
    public callerCodec: CodecName,
    public rate: number,
  ) {
    super();
    this.#silence = new Int16Array(samplesPerFrame(rate));
    this.#mixer = new Mixer(rate);
  }

  get size(): number {
    return this.listeners.size;
  }

  add(leg: FanoutListener): void {
    this.listeners.set(leg.id, leg);
    this.emit('event', 'viewercount', { viewercount: this.listeners.size });
  }

  remove(leg: FanoutListener): void {
    if (!this.listeners.delete(leg.id)) return;
    this.emit('event', 'viewercount', { viewercount: this.listeners.size });
    // Drop encoders nobody listens to any more.
    for (const key of [...this.#encoders.keys()]) {
      const [track, codec] = key.split(':') as [ListenTrack, CodecName];
      if (![...this.listeners.values()].some((l) => !l.passthrough && l.track === track && l.codec === codec)) this.#dropEncoder(key);
    }
  }

  /** An encoder goes, its native state freed now (a call's listeners come and go many times). */
  #dropEncoder(key: string): void {
    this.#encoders.get(key)?.close?.();
    this.#encoders.delete(key);
  }

  publish(name: string, data: unknown): void {
    this.emit('event', name, data);
  }

  /** How long forwarding one caller packet to every listener took, ms (benchmarks read it). */
  readonly fanoutMs: number[] = [];

  /** Every caller packet of the call's codec, as it arrives: forwarded without transcoding. */
  onCallerRtp(p: RtpPacket): void {
    if (this.listeners.size === 0) return;
    const t0 = performance.now();
    for (const l of this.listeners.values()) if (l.passthrough) l.forward(p);
    this.fanoutMs.push(performance.now() - t0);
    if (this.fanoutMs.length > 5000) this.fanoutMs.splice(0, 2500);
  }

  /** The frames it is given come at another rate now (a bridge runs at its codecs' rate): encoders start again. */
  setRate(rate: number): void {
    if (rate === this.rate) return;
    this.rate = rate;
    for (const key of [...this.#encoders.keys()]) this.#dropEncoder(key);
    this.#silence = new Int16Array(samplesPerFrame(rate));
    this.#mixer = new Mixer(rate);
  }

  /** The caller's leg changed codec (it was replaced): listeners that were forwarded to are encoded for now. */
  setCallerCodec(codec: CodecName): void {
    this.callerCodec = codec;
    for (const l of this.listeners.values()) l.passthrough = l.track === 'caller' && l.codec === codec;
  }

  /** Once per tick: the caller's decoded frame and the other party's (either may be missing). */
  onTick(caller: Int16Array | undefined, agent: Int16Array | undefined): void {
    if (this.listeners.size === 0) return;
    const encoded = new Map<string, Buffer>();
    let mixed: Int16Array | undefined | null = null;
    for (const l of this.listeners.values()) {
      if (l.passthrough) continue;
      const key = `${l.track}:${l.codec}`;
      let payload = encoded.get(key);
      if (!payload) {
        let enc = this.#encoders.get(key);
        if (!enc) {
          enc = createEncoder(l.codec, this.rate);
          this.#encoders.set(key, enc);
        }
        // The mix once per tick (the limiter has state), whatever codecs its listeners take.
        if (l.track === 'mix' && mixed === null) mixed = this.#mixer.mix(caller, agent);
        const pcm = l.track === 'caller' ? caller : l.track === 'agent' ? agent : mixed;
        payload = enc.encode(pcm ?? this.#silence);
        encoded.set(key, payload);
      }
      l.sendFrame(payload);
    }
  }

  /** The call ended: listeners hear `inactive`, then their legs close with the call. */
  end(): void {
    this.emit('event', 'inactive', {});
    for (const key of [...this.#encoders.keys()]) this.#dropEncoder(key);
  }
}

/** The mix's peak ceiling: -3 dBFS, headroom for a lossy codec's overshoot at the listener's decoder. */
export const MIX_CEILING = 23197;

/**
 * Caller and agent mixed for listeners: each at -3 dB (two uncorrelated voices sum to the level
 * of one), then a peak limiter. A sample-by-sample soft clipper (tanh) let a loud caller and
 * the echo of its own voice sum to within 0.05 dB of full scale, which Opus then overshot at the
 * listener: thousands of clipped samples per second. The limiter rides the gain instead: it
 * drops at once to what keeps the next sample under the ceiling, so no sample ever exceeds it,
 * and recovers over ~100 ms, so speech is not pumped between syllables.
 */
export class Mixer {
  #gain = 1;
  readonly #release: number;

  constructor(rate: number) {
    // Gain recovers with a 100 ms time constant.
    this.#release = 1 - Math.exp(-1 / (0.1 * rate));
  }

  mix(a: Int16Array | undefined, b: Int16Array | undefined): Int16Array | undefined {
    if (!a && !b) return undefined;
    const n = (a ?? b)!.length;
    const out = new Int16Array(n);
    // One party alone is as loud as it came (its own codec produced it); together, -3 dB each.
    const g = a && b ? Math.SQRT1_2 : 1;
    let gain = this.#gain;
    for (let i = 0; i < n; i++) {
      const x = ((a?.[i] ?? 0) + (b?.[i] ?? 0)) * g;
      const ax = Math.abs(x);
      gain += (1 - gain) * this.#release;
      if (ax * gain > MIX_CEILING) gain = MIX_CEILING / ax;
      out[i] = Math.round(x * gain);
    }
    this.#gain = gain;
    return out;
  }
}
