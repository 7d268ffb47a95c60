import type { TransferOptions, TransferTarget } from '../agent/agent.js';
import type { SourceIdentity } from '../auth/source-auth.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { TypedEmitter } from '../core/events.js';
import { CallActivity } from './call-activity.js';
import type { CodecName } from '../core/config.js';
import type { AudioRepairs, MediaEndpoint, MediaFormat, Quality } from '../media/endpoint.js';
import { Fanout, type FanoutListener } from '../media/fan-out.js';
import type { FrameSource } from '../media/frames.js';

export type CallState = 'connecting' | 'connected' | 'ended';

export type EndReason =
  | 'deleted'
  | 'idle-timeout'
  | 'ice-failed'
  | 'dtls-failed'
  | 'peer-closed'
  | 'setup-failed'
  | 'agent-hangup'
  | 'agent-failed'
  | 'agent-disconnected'
  | 'shutdown'
  /** SIP: the caller sent BYE, CANCEL, or its WebSocket closed; the caller was transferred; no ACK came. */
  | 'bye'
  | 'cancelled'
  | 'flow-closed'
  | 'transferred'
  | 'no-ack'
  /** RFC 4028: the session's refresh never came (or ours was refused); a fleet's node stopped heartbeating. */
  | 'session-expired' | 'node-lost'
  /** An operator ended it (DELETE /api/sessions/:id). */
  | 'admin';

const TRANSITIONS: Record<CallState, CallState[]> = { connecting: ['connected', 'ended'], connected: ['ended'], ended: [] };

/**
 * Who a leg is in the call: the party who called (or published), the party voxgate bridged
 * them to, the agent, and any number of listeners.
 */
export type LegRole = 'caller' | 'callee' | 'agent' | `listener:${string}`;

export interface LegCounters {
  packetsReceived: number;
  bytesReceived: number;
  packetsSent: number;
  bytesSent: number;
}

/** A participant in a call: a WebRTC peer, an RTP trunk leg, an agent, a listener. */
export interface Leg {
  readonly kind: string;
  /** Legs that carry media over a transport. */
  readonly endpoint?: MediaEndpoint;
  /** Epoch ms of the last media received on this leg (0: none yet). */
  lastMediaAt(): number;
  counters(): LegCounters;
  close(reason: EndReason): void;
}

/** What a call needs of an agent leg (call/agent-leg.ts): frames in, a source of frames out. */
export interface AgentParty extends Leg, FrameSource {
  readonly kind: 'agent';
  /** The rate it takes and gives frames at: the caller's endpoint runs at it while they talk. */
  readonly sampleRate: number;
  writeFrame(frame: { samples: Int16Array; sampleRate: number; timestampMs: number }): void;
  deliverDtmf(digit: string): void;
  deliverMessage(data: unknown): void;
}

/** A WHEP listener's leg: the fan-out sends to it. */
export type ListenerParty = Leg & FanoutListener;

export interface CallEvents extends Record<string, unknown[]> {
  state: [state: CallState];
  /** The caller's stream quality, every 5 s. */
  quality: [quality: Quality];
  /** A digit from a party, before it is routed (logs and tests). */
  dtmf: [from: LegRole, digit: string];
  /** A digit for a party whose media has no telephone-event: its signalling carries it (SIP INFO). */
  'dtmf-out': [to: LegRole, digit: string];
  ended: [reason: EndReason];
}

/** How the caller's audio reaches the other party, if there is one. */
export type BridgeMode = 'agent' | 'forward' | 'transcode' | 'none';

const ZERO: LegCounters = { packetsReceived: 0, bytesReceived: 0, packetsSent: 0, bytesSent: 0 };

/**
 * One session: owns its legs by role, decides who hears whom, owns the WHEP fan-out, ends once
 * with a reason, and ends itself when no leg has received media for the idle timeout.
 *
 * Routing: the caller talks with the agent, or with the callee once there is one (a transfer
 * to a person, a browser-to-phone bridge); listeners hear the caller and whoever the caller
 * talks with. Two legs that share a codec have their packets forwarded; otherwise each side is
 * decoded once and encoded once for the other.
 */
export class Call extends TypedEmitter<CallEvents> {
  readonly legs = new Map<LegRole, Leg>();
  readonly createdAt: number;
  readonly fanout: Fanout;
  /** Its event timeline and, while the console meters it, its levels. */
  readonly activity: CallActivity;
  /** The rate the call's legs exchange PCM at (its agent's rate). */
  readonly pcmRate: number;
  /** How the caller reached us (`whip`, `sip-ws`, ...): the session kind in the directory. */
  readonly kind: string;
  connectedAt: number | undefined;
  endReason: EndReason | undefined;
  /** Where its signalling came from, and the SIP Call-ID of the caller's dialog, for /api/sessions. */
  signalingRemote: string | undefined;
  sipCallId: string | undefined;
  /** A phone call through a SIP trunk: which, which way (a carrier's to us, or ours out), the numbers, the STIR/SHAKEN verdict. */
  trunk: { name: string; direction: 'inbound' | 'outbound'; from: string; to: string; verstat?: string } | undefined;
  /** What the agent's transfer(target) does (set by whoever set the call up). */
  transferHandler: ((target: TransferTarget, opts?: TransferOptions) => Promise<void>) | undefined;
  #state: CallState = 'connecting';
  #idleTimer: TimerHandle | undefined;
  /** Legs stamp media arrivals on the media clock, which may not be the signalling clock. */
  readonly #mediaNow: () => number;
  readonly #createdAtMedia: number;
  /** The last media of legs that left. */
  #retiredLastMedia = 0;
  /** What to undo on each leg when it leaves: the call's listeners on its endpoint and transport. */
  readonly #leaving = new Map<Leg, (() => void)[]>();
  /** Counters of legs that left (a transfer, a listener): totals never go down. */
  #retired: LegCounters = { ...ZERO };
  readonly #retiredRepairs: AudioRepairs = { fecRecovered: 0, concealed: 0, decodeErrors: 0, shed: 0 };
  #mode: BridgeMode = 'none';
  /** The other party's latest decoded frame, for listeners, when the caller's endpoint did not send it. */
  #otherFrame: Int16Array | undefined;

  constructor(
    readonly id: string,
    readonly source: SourceIdentity,
    private readonly clock: Clock,
    private readonly idleTimeoutMs: number,
    opts: { pcmRate?: number; kind?: string; mediaNow?: () => number } = {},
  ) {
    super();
    this.pcmRate = opts.pcmRate ?? 48000;
    this.kind = opts.kind ?? source.kind;
    this.#mediaNow = opts.mediaNow ?? (() => clock.now());
    this.#createdAtMedia = this.#mediaNow();
    this.createdAt = clock.now();
    this.fanout = new Fanout('opus', this.pcmRate);
    this.activity = new CallActivity(() => clock.now());
    this.#armIdle(idleTimeoutMs);
  }

  get state(): CallState {
    return this.#state;
  }

  get mode(): BridgeMode {
    return this.#mode;
  }

  leg(role: LegRole): Leg | undefined {
    return this.legs.get(role);
  }

  /** The listener legs, in the order they joined. */
  listeners(): Leg[] {
    return [...this.legs.entries()].filter(([role]) => role.startsWith('listener:')).map(([, leg]) => leg);
  }

  /** Adds a listener; it hears the call through the fan-out until it or the call ends. */
  addListener(leg: ListenerParty): void {
    this.addLeg(`listener:${leg.id}`, leg);
  }

  /** Adds a leg in a free role (a leg added to an ended call is closed at once). */
  addLeg(role: LegRole, leg: Leg): void {
    if (this.#state === 'ended') {
      leg.close(this.endReason ?? 'shutdown');
      return;
    }
    if (this.legs.has(role)) throw new Error(`call ${this.id} already has a ${role} leg`);
    this.legs.set(role, leg);
    this.#joined(role, leg);
    this.#rewire();
  }

  /** The leg in `role` is replaced by `leg`: the old one is closed, its counters folded in. */
  replaceLeg(role: LegRole, leg: Leg, reason: EndReason = 'transferred'): void {
    const old = this.legs.get(role);
    if (old) this.#retire(role, old, reason);
    this.addLeg(role, leg);
  }

  /** The leg in `role` leaves (a listener hung up, the agent handed over); the call goes on. */
  removeLeg(role: LegRole, reason: EndReason): void {
    const leg = this.legs.get(role);
    // A leg closing with its call (a listener's close calls back here) changes nothing.
    if (!leg || this.#state === 'ended') return;
    this.#retire(role, leg, reason);
    this.#rewire();
  }

  /**
   * Hands a party's leg over to another call, open (an attended transfer, a bridge built from two
   * calls): this call forgets it without closing it, and its counters go with it, so a total
   * counted over both calls counts them once.
   */
  takeLeg(role: 'caller' | 'callee'): Leg | undefined {
    const leg = this.legs.get(role);
    if (!leg || this.#state === 'ended') return undefined;
    this.legs.delete(role);
    this.#left(leg);
    // It goes unwired: the call that takes it wires it to its own parties.
    if (leg.endpoint) unwire(leg.endpoint);
    this.#rewire();
    return leg;
  }

  /** Does `to` hear `from`? */
  route(from: LegRole, to: LegRole): boolean {
    if (from === to || !this.legs.has(from) || !this.legs.has(to)) return false;
    if (to.startsWith('listener:')) return from === 'caller' || from === this.#partnerOf('caller');
    return this.#partnerOf(from) === to;
  }

  markConnected(): void {
    if (this.#state !== 'connecting') return;
    this.connectedAt = this.clock.now();
    this.#transition('connected');
  }

  /** A digit from a party (RFC 4733 from its endpoint, or SIP INFO): to whoever it talks with. */
  dtmf(from: LegRole, digit: string): void {
    this.emit('dtmf', from, digit);
    const to = this.#partnerOf(from);
    const target = to ? this.legs.get(to) : undefined;
    if (!target) return;
    if (target.kind !== 'agent') return void this.#sendDigit(to!, digit);
    (target as AgentParty).deliverDtmf(digit);
    this.message(from, { type: 'dtmf', digit });
  }

  /** Digits a leg (the agent) sends to whoever it talks with; false when some could not go. */
  sendDtmf(from: LegRole, digits: string): boolean {
    const to = this.#partnerOf(from);
    return !!to && !!this.legs.get(to)?.endpoint && [...digits].map((d) => this.#sendDigit(to, d)).every(Boolean);
  }

  /** RFC 4733 on the party's media; without telephone-event, on its signalling (SIP INFO) if something carries it. */
  #sendDigit(to: LegRole, digit: string): boolean {
    if (this.legs.get(to)?.endpoint?.sendDtmf(digit)) return true;
    if (!this.hasListeners('dtmf-out')) return false;
    this.emit('dtmf-out', to, digit);
    return true;
  }

  /** JSON to a party's data channel, if it has one. */
  message(to: LegRole, data: unknown): boolean {
    return this.legs.get(to)?.endpoint?.transport.dataChannel?.send(JSON.stringify(data)) ?? false;
  }

  /** Everything every leg received and sent, including legs that have left. */
  totals(): LegCounters {
    const t = { ...this.#retired };
    for (const leg of this.legs.values()) add(t, leg.counters());
    return t;
  }

  /** Frames the call's endpoints had to repair, including legs that have left. */
  repairs(): AudioRepairs {
    const r = { ...this.#retiredRepairs };
    for (const leg of this.legs.values()) if (leg.endpoint) addRepairs(r, leg.endpoint.repairs);
    return r;
  }

  /** The media path as wired now, e.g. `RTP -> Jitter(20-200ms) -> Opus(decode@16k, FEC) -> Agent(demo@16k) -> Pacer -> Opus(encode@16k) -> RTP`. */
  describe(): string {
    const caller = this.legs.get('caller')?.endpoint;
    const callee = this.legs.get('callee')?.endpoint;
    const agent = this.legs.get('agent') as AgentParty | undefined;
    if (!caller) return '';
    if (this.#mode === 'agent' && agent) {
      const inbound = `${caller.describeIn()} -> ${agent.describe()}`;
      return caller.format.sends ? `${inbound} -> Pacer -> ${caller.describeOut()}` : inbound;
    }
    if (this.#mode === 'forward' && callee) return `caller RTP -> forwarded (${caller.format.codec}) -> RTP callee; callee RTP -> forwarded -> RTP caller`;
    if (this.#mode === 'transcode' && callee) {
      return `caller ${caller.describeIn()} -> ${callee.describeOut()} callee; callee ${callee.describeIn()} -> ${caller.describeOut()} caller`;
    }
    return caller.describeIn();
  }

  /** Ends the call and every leg, exactly once. */
  close(reason: EndReason): void {
    if (this.#state === 'ended') return;
    this.endReason = reason;
    if (this.#idleTimer) this.clock.clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#transition('ended');
    // A party with a data channel (the demo page, a WHIP app) is told why, before its peer closes.
    for (const party of ['caller', 'callee'] as const) this.message(party, { type: 'ended', reason });
    // Listeners hear 'inactive' before their legs close with the call.
    this.fanout.end();
    for (const leg of this.legs.values()) leg.close(reason);
    this.#leaving.clear();
    // Listeners of 'ended' still see the legs (final counters); the map is emptied after.
    this.emit('ended', reason);
    // Nothing stays in a map after close; quietly, since 'inactive' was the listeners' last word.
    this.fanout.listeners.clear();
    this.legs.clear();
    this.removeAllListeners();
  }

  /** The agent hung up (or its socket went): the end reason says which. */
  closeByAgent(reason: string): void {
    this.close(reason === 'agent-disconnected' ? 'agent-disconnected' : 'agent-hangup');
  }

  lastMediaAt(): number {
    let last = this.#retiredLastMedia;
    for (const leg of this.legs.values()) last = Math.max(last, leg.lastMediaAt());
    return last;
  }

  /** Who `role` talks with: the caller with the callee if there is one, else the agent. */
  #partnerOf(role: LegRole): LegRole | undefined {
    const callee = this.legs.has('callee');
    if (role === 'caller') return callee ? 'callee' : this.legs.has('agent') ? 'agent' : undefined;
    if (role === 'callee') return 'caller';
    if (role === 'agent') return callee ? undefined : 'caller';
    return undefined;
  }

  #joined(role: LegRole, leg: Leg): void {
    const ep = leg.endpoint;
    if (isListener(role, leg)) {
      this.fanout.add(leg);
      return;
    }
    if (!ep) return;
    const onDtmf = (digit: string) => {
      // Forwarded telephone-events already reached the other party.
      if (this.#mode !== 'forward' || !this.#eventsForwarded()) this.dtmf(role, digit);
      else this.emit('dtmf', role, digit);
    };
    ep.on('dtmf', onDtmf);
    const offs: (() => void)[] = [() => ep.off('dtmf', onDtmf)];
    this.#leaving.set(leg, offs);
    if (role !== 'caller') return;
    this.fanout.setCallerCodec(ep.format.codec);
    const onQuality = (q: Quality) => {
      this.fanout.publish('quality', q);
      this.message('caller', { type: 'quality', ...q });
      this.emit('quality', q);
    };
    const onTick = (received: Int16Array | undefined, sent: Int16Array | undefined) => {
      const other = sent ?? this.#otherFrame;
      this.#otherFrame = undefined;
      this.activity.tick(received, other);
      this.fanout.onTick(received, other);
    };
    const onMessage = (text: string) => this.#onMessage(text);
    ep.on('quality', onQuality);
    ep.on('tick', onTick);
    ep.transport.on('message', onMessage);
    offs.push(() => ep.off('quality', onQuality), () => ep.off('tick', onTick), () => ep.transport.off('message', onMessage));
  }

  /** The leg no longer belongs here: the call's listeners on it go. */
  #left(leg: Leg): void {
    for (const off of this.#leaving.get(leg) ?? []) off();
    this.#leaving.delete(leg);
  }

  #retire(role: LegRole, leg: Leg, reason: EndReason): void {
    this.legs.delete(role);
    // Its media kept the call alive until now: a transferee whose first packet is still on the way must not idle out.
    this.#retiredLastMedia = Math.max(this.#retiredLastMedia, leg.lastMediaAt());
    this.#left(leg);
    add(this.#retired, leg.counters());
    if (leg.endpoint) addRepairs(this.#retiredRepairs, leg.endpoint.repairs);
    if (isListener(role, leg)) this.fanout.remove(leg);
    leg.close(reason);
  }

  #eventsForwarded(): boolean {
    const a = this.legs.get('caller')?.endpoint?.format;
    const b = this.legs.get('callee')?.endpoint?.format;
    return a?.telephoneEvent !== undefined && b?.telephoneEvent !== undefined;
  }

  /** Connects the legs as the roles say (called whenever a leg joins or leaves). */
  #rewire(): void {
    const caller = this.legs.get('caller')?.endpoint;
    const callee = this.legs.get('callee')?.endpoint;
    const agent = this.legs.get('agent') as AgentParty | undefined;
    const listening = this.fanout.size > 0;
    for (const ep of [caller, callee]) if (ep) unwire(ep);
    // Listeners need each side's PCM only for the tracks they hear that are not forwarded as packets.
    const tracks = new Set([...this.fanout.listeners.values()].filter((l) => !l.passthrough).map((l) => l.track));
    const callerPcm = tracks.has('caller') || tracks.has('mix');
    const otherPcm = tracks.has('agent') || tracks.has('mix');
    this.#otherFrame = undefined;
    const toListeners = listening ? (p: Parameters<Fanout['onCallerRtp']>[0], event: boolean) => !event && this.fanout.onCallerRtp(p) : undefined;
    if (!caller) {
      this.#mode = 'none';
    } else if (callee && sameStream(caller.format, callee.format)) {
      this.#mode = 'forward';
      caller.onPacket = (p, event) => {
        callee.forward(p, event);
        toListeners?.(p, event);
      };
      callee.onPacket = (p, event) => caller.forward(p, event);
      caller.decode = callerPcm;
      callee.decode = otherPcm;
      if (otherPcm) callee.onFrame = (f) => (this.#otherFrame = f.samples);
    } else if (callee) {
      this.#mode = 'transcode';
      // Both sides at the lower of their codecs' own rates: no resampler runs where none is needed
      // (Opus <-> PCMU at 16 kHz cost 3.4 times as much CPU, two resamplers a frame each way).
      const rate = Math.min(NATURAL_RATE[caller.format.codec], NATURAL_RATE[callee.format.codec]);
      caller.setPcmRate(rate);
      callee.setPcmRate(rate);
      caller.decode = callee.decode = true;
      caller.onFrame = (f) => callee.sendFrame(f.samples);
      callee.onFrame = (f) => {
        caller.sendFrame(f.samples);
        this.#otherFrame = f.samples;
      };
      caller.onPacket = toListeners;
    } else if (agent) {
      this.#mode = 'agent';
      caller.setPcmRate(agent.sampleRate);
      caller.decode = true;
      caller.onFrame = (f) => agent.writeFrame(f);
      caller.source = agent;
      caller.onPacket = toListeners;
    } else {
      this.#mode = 'none';
      caller.decode = callerPcm;
      caller.onPacket = toListeners;
    }
    // Listeners are encoded from the caller's frames, at the rate its endpoint runs at now.
    if (caller) this.fanout.setRate(caller.pcmRate);
  }

  #onMessage(text: string): void {
    const agent = this.legs.get('agent') as AgentParty | undefined;
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      this.message('caller', { type: 'error', error: 'messages must be JSON' });
      return;
    }
    if (agent && this.#partnerOf('caller') === 'agent') agent.deliverMessage(data);
  }

  #transition(to: CallState): void {
    if (!TRANSITIONS[this.#state].includes(to)) throw new Error(`illegal call transition ${this.#state} -> ${to}`);
    this.#state = to;
    this.emit('state', to);
  }

  // One timer per call, re-armed only when it fires: the packet path just stores a timestamp.
  // The timer runs on the signalling clock; how long media has been quiet is read on the media clock.
  #armIdle(ms: number): void {
    this.#idleTimer = this.clock.setTimeout(() => {
      const idleFor = this.#mediaNow() - Math.max(this.#createdAtMedia, this.lastMediaAt());
      if (idleFor >= this.idleTimeoutMs) this.close('idle-timeout');
      else this.#armIdle(this.idleTimeoutMs - idleFor);
    }, ms);
  }
}

/** Each codec's own rate, where it needs no resampling (Opus decodes and encodes at any): a bridge meets at the lower; the echo runs at it. */
export const NATURAL_RATE: Record<CodecName, 8000 | 16000 | 48000> = { opus: 48000, g722: 16000, pcmu: 8000, pcma: 8000 };

/** An endpoint connected to nobody: it decodes nothing and sends nothing of its own accord. */
function unwire(ep: MediaEndpoint): void {
  ep.decode = false;
  ep.onFrame = ep.onPacket = ep.source = undefined;
}

function isListener(role: LegRole, leg: Leg): leg is ListenerParty {
  return role.startsWith('listener:') && 'sendFrame' in leg;
}

/** Two legs whose packets can be forwarded as they are: same codec at the same clock rate. */
function sameStream(a: MediaFormat, b: MediaFormat): boolean {
  return a.codec === b.codec && a.clockRate === b.clockRate;
}

function add(t: LegCounters, c: LegCounters): void {
  for (const k of ['packetsReceived', 'bytesReceived', 'packetsSent', 'bytesSent'] as const) t[k] += c[k];
}

function addRepairs(t: AudioRepairs, r: AudioRepairs): void {
  for (const k of ['fecRecovered', 'concealed', 'decodeErrors', 'shed'] as const) t[k] += r[k];
}
