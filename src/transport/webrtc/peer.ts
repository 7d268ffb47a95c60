import { VoxgateError } from '../../core/errors.js';
import ndc from 'node-datachannel';
import { TypedEmitter } from '../../core/events.js';
import type { AnswerPlan } from '../../sdp/codec-policy.js';
import type { RtpSink } from '../../rtp/rtp-counter.js';
import type { MediaTransportEvents, SendStream, TransportState } from '../media-transport.js';

export type { SendStream };
import { isMdnsCandidate, type OfferingTransport, type TrickleTransport, type TrickleTransportFactory } from '../factory.js';

const { PeerConnection, Audio, Video } = ndc;
type NdcPeerConnection = InstanceType<typeof PeerConnection>;
type NdcTrack = ReturnType<NdcPeerConnection['addTrack']>;
type NdcDataChannel = ReturnType<NdcPeerConnection['createDataChannel']>;

export interface MediaEndpointOptions {
  /** Every peer shares this one UDP port (ICE UDP mux). */
  udpPort: number;
  bindAddress: string;
  /** Written into our candidates instead of the bound address (NAT). */
  announcedAddress?: string;
}

export type PeerState = TransportState;


/** RFC 5761 §4: RTCP packet types 192-223 share the RTP port; tell them apart by the second byte. */
export function isRtcp(packet: Buffer): boolean {
  const pt = packet[1] ?? 0;
  return pt >= 192 && pt <= 223;
}

/**
 * node-datachannel releases a native Track or DataChannel wrapper (and the thread-safe callback
 * that keeps Node's event loop alive) only from its JS `onClosed` callback, and a PeerConnection
 * only from `onStateChange('closed')`. Without them, a collected wrapper stays in the library's
 * instance set as a dangling pointer (its cleanup() then crashes) and the process never exits.
 * So every native object gets those callbacks, and stays referenced here until they have run.
 */
const closing = new Set<object>();

/** Peers whose data channels are still sending their last messages before the connection closes. */
const lingering = new Set<Promise<void>>();
/** How long a closing peer's channels get to send what is queued (the `ended` notice) before DTLS goes. */
const LINGER_MS = 150;
/** Messages kept for a data channel that is not open yet (the agent's greeting races the channel). */
const MAX_QUEUED_MESSAGES = 64;

/** Resolves once every closed peer's last data-channel messages have had their chance to go (shutdown waits). */
export async function peersSettled(): Promise<void> {
  while (lingering.size) await Promise.all([...lingering]);
}

function trackClosing<T extends { onClosed(cb: () => void): void }>(obj: T, onClosed?: () => void): T {
  obj.onClosed(() => {
    closing.delete(obj);
    onClosed?.();
  });
  return obj;
}

/**
 * One WebRTC peer connection: full ICE, DTLS-SRTP, BUNDLE, rtcp-mux, consent freshness
 * (RFC 7675, done by libjuice). Usually we answer (WHIP, WHEP, an INVITE to the agent); for
 * a call voxgate places itself (a transfer) we offer. Holds strong references to the native
 * PeerConnection and every Track: a collected wrapper silently stops delivering packets.
 */
export class WebRtcPeer extends TypedEmitter<MediaTransportEvents> implements TrickleTransport, OfferingTransport {
  readonly kind = 'webrtc' as const;
  /** Our SDP: the answer, or for an offering peer the offer. */
  readonly localSdp: string;
  rtpSink: RtpSink | undefined;
  #pc: NdcPeerConnection;
  readonly #tracks: NdcTrack[] = [];
  readonly #channels: NdcDataChannel[] = [];
  /** Text sent before any channel opened, for the first one that does (bounded; undefined: no channel was offered). */
  #queued: string[] | undefined;
  #state: PeerState = 'connecting';

  private constructor(pc: NdcPeerConnection, audioTrack: NdcTrack, localSdp: string, expectChannel: boolean) {
    super();
    this.#pc = pc;
    this.localSdp = localSdp;
    this.#tracks.push(trackClosing(audioTrack));
    audioTrack.onMessage((msg) => {
      if (isRtcp(msg)) this.emit('rtcp', msg);
      else this.rtpSink?.writeRtp(msg);
    });
    pc.onTrack((t) => this.#tracks.push(trackClosing(t)));
    if (expectChannel) this.#queued = [];
    pc.onDataChannel((dc) => {
      this.#channels.push(trackClosing(dc));
      dc.onOpen(() => this.#flush());
      if (dc.isOpen()) this.#flush();
      dc.onMessage((msg) => {
        if (typeof msg === 'string') this.emit('message', msg);
        else this.emit('message', Buffer.from(msg as ArrayBuffer).toString('utf8'));
      });
    });
  }

  /** Answers an offer with our plan; resolves once every local candidate is gathered (RFC 9725 §4.3.2: no server trickle). */
  static async answer(id: string, offerSdp: string, plan: AnswerPlan, opts: MediaEndpointOptions, send?: SendStream): Promise<WebRtcPeer> {
    const held = holdCandidates(stripUnresolvableCandidates(offerSdp));
    const peer = await WebRtcPeer.#negotiate(id, plan, opts, send, (pc) => {
      try {
        pc.setRemoteDescription(held.sdp, 'offer');
      } catch (err) {
        // The stack refused the client's offer: the client's to fix (400; SIP 488), with the stack's reason.
        const reason = err instanceof Error ? err.message : String(err);
        throw new VoxgateError('VG_SDP_REFUSED', `The WebRTC stack refused the offer: ${reason.slice(0, 200)}.`, { cause: err });
      }
    });
    if (held.candidates.length) peer.#releaseLater(held.candidates);
    return peer;
  }

  /**
   * The offer's candidates, held back from the stack until the offerer has had time to read our
   * answer: until then ICE learns the offerer only from its own checks (peer-reflexive), as an
   * ICE-lite server (mediasoup) does. Our early checks made libdatachannel offerers (OBS) fail
   * about 1 publish in 100: answered before the answer arrived, they let the offerer's ICE
   * connect and its DTLS verify our certificate inside its setRemoteDescription, before it has
   * stored our fingerprint ("unknown CA", the peer closes). Candidates still unneeded after
   * EARLY_CHECKS_MS go to the stack as if trickled, for an offerer whose checks cannot reach us.
   */
  #releaseLater(candidates: { candidate: string; mid: string }[]): void {
    // Nothing to cancel: a peer that connected, failed or closed meanwhile needs none of them.
    setTimeout(() => {
      if (this.#state !== 'connecting') return;
      for (const c of candidates) this.addRemoteCandidate(c.candidate, c.mid);
    }, EARLY_CHECKS_MS).unref();
  }

  /**
   * Offers one audio track as `plan.audio` describes it (codec, payload type, telephone-event,
   * direction); resolves with every candidate in the offer. The answer goes to acceptAnswer().
   */
  static offer(id: string, plan: AnswerPlan, opts: MediaEndpointOptions, send?: SendStream): Promise<WebRtcPeer> {
    return WebRtcPeer.#negotiate(id, plan, opts, send, (pc) => pc.setLocalDescription('offer'));
  }

  /** The remote answer to our offer; throws when libdatachannel cannot use it. */
  acceptAnswer(answerSdp: string): void {
    this.#pc.setRemoteDescription(stripUnresolvableCandidates(answerSdp), 'answer');
  }

  static #negotiate(id: string, plan: AnswerPlan, opts: MediaEndpointOptions, send: SendStream | undefined, describe: (pc: NdcPeerConnection) => void): Promise<WebRtcPeer> {
    const pc = new PeerConnection(id, {
      iceServers: [],
      enableIceUdpMux: true,
      portRangeBegin: opts.udpPort,
      portRangeEnd: opts.udpPort,
      bindAddress: opts.bindAddress,
    });
    // Registered exactly once: a second registration after 'closed' would never be released.
    let peer: WebRtcPeer | undefined;
    pc.onStateChange((s) => {
      if (s === 'closed') closing.delete(pc);
      if (peer) peer.#onState(s);
    });
    try {
      const a = plan.audio;
      const audio = new Audio(a.mid, a.direction === 'sendrecv' ? 'SendRecv' : a.direction === 'sendonly' ? 'SendOnly' : 'RecvOnly');
      if (a.codec === 'opus') audio.addOpusCodec(a.payloadType, a.fmtp ?? 'minptime=10;useinbandfec=1');
      else audio.addAudioCodec(a.payloadType, `${a.codec.toUpperCase()}/${a.clockRate}`);
      if (a.telephoneEvent) {
        audio.addAudioCodec(a.telephoneEvent.payloadType, `telephone-event/${a.telephoneEvent.clockRate}`, '0-16');
      }
      for (const alt of a.alternatives ?? []) {
        if (alt.codec === 'opus') audio.addOpusCodec(alt.payloadType, 'minptime=10;useinbandfec=1');
        else audio.addAudioCodec(alt.payloadType, `${alt.codec.toUpperCase()}/${alt.clockRate}`);
        if (alt.telephoneEvent) audio.addAudioCodec(alt.telephoneEvent.payloadType, `telephone-event/${alt.telephoneEvent.clockRate}`, '0-16');
      }
      if (send && a.direction !== 'recvonly') audio.addSSRC(send.ssrc, send.cname, 'voxgate', 'agent');
      const track = pc.addTrack(audio);
      const others = plan.inactive.map((m) => {
        const media = m.type === 'video' ? new Video(m.mid, 'Inactive') : new Audio(m.mid, 'Inactive');
        if (media instanceof Video) media.addVideoCodec(m.payloadType, m.encoding.toUpperCase());
        else media.addAudioCodec(m.payloadType, `${m.encoding}/${m.clockRate}`);
        return pc.addTrack(media);
      });
      return new Promise<WebRtcPeer>((resolve, reject) => {
        let done = false;
        const finish = () => {
          if (done) return;
          const local = pc.localDescription();
          if (!local) return;
          done = true;
          peer = new WebRtcPeer(pc, track, rewriteLocal(local.sdp, opts.announcedAddress), plan.hasDataChannel);
          peer.#tracks.push(...others.map((t) => trackClosing(t)));
          resolve(peer);
        };
        // Registered before the description is set: with UDP mux, gathering can complete synchronously.
        pc.onGatheringStateChange((s) => {
          if (s === 'complete') finish();
        });
        try {
          describe(pc);
        } catch (err) {
          done = true;
          closeNative(pc, [track, ...others].map((t) => trackClosing(t)), []);
          reject(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        if (pc.gatheringState() === 'complete') finish();
      });
    } catch (err) {
      closeNative(pc, [], []);
      throw err;
    }
  }

  get state(): PeerState {
    return this.#state;
  }

  /** Sends an RTP packet on the audio track (libdatachannel protects it with SRTP). */
  sendRtp(packet: Buffer): boolean {
    return this.#sendOnTrack(packet);
  }

  /** RTCP goes on the same track (rtcp-mux, RFC 5761), protected with SRTCP. */
  sendRtcp(packet: Buffer): boolean {
    return this.#sendOnTrack(packet);
  }

  /** The data channel capability: JSON text to every open channel of this peer. */
  readonly dataChannel = { send: (text: string): boolean => this.sendMessage(text) };

  #sendOnTrack(packet: Buffer): boolean {
    const track = this.#tracks[0];
    if (this.#state !== 'connected' || !track?.isOpen()) return false;
    try {
      return track.sendMessageBinary(packet);
    } catch {
      return false;
    }
  }

  /**
   * Sends a text message on every open data channel; before one is open (the offer had one),
   * the message waits for it, so an agent's first words are not lost to the race.
   */
  sendMessage(text: string): boolean {
    if (this.#state === 'closed') return false;
    if (this.#queued && !this.#channels.some((dc) => dc.isOpen())) {
      if (this.#queued.length >= MAX_QUEUED_MESSAGES) return false;
      this.#queued.push(text);
      return true;
    }
    let sent = false;
    for (const dc of this.#channels) {
      try {
        if (dc.isOpen()) sent = dc.sendMessage(text) || sent;
      } catch {
        // a channel closing under us: the message is dropped
      }
    }
    return sent;
  }

  /** The first channel is open: what waited goes, in order; later messages go directly. */
  #flush(): void {
    const queued = this.#queued;
    this.#queued = undefined;
    for (const text of queued ?? []) this.sendMessage(text);
  }

  /** RFC 8840 trickle: a candidate we cannot use is dropped silently (RFC 9725 §4.3.2). */
  addRemoteCandidate(candidate: string, mid: string): boolean {
    if (this.#state === 'closed' || isMdnsCandidate(candidate)) return false;
    try {
      this.#pc.addRemoteCandidate(candidate, mid);
      return true;
    } catch {
      return false;
    }
  }

  /** The remote transport address ICE selected, once connected. */
  remoteAddress(): string | undefined {
    try {
      const pair = this.#pc.getSelectedCandidatePair();
      return pair ? `${pair.remote.address}:${pair.remote.port}` : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Closes at once for us; on the wire, open data channels close first (their reset follows the
   * messages still queued, such as the `ended` notice) and DTLS a moment later, so the remote
   * learns why and sees the connection close instead of waiting for consent to expire.
   */
  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.rtpSink = undefined;
    this.#queued = undefined;
    const open = this.#channels.filter((dc) => {
      try {
        return dc.isOpen();
      } catch {
        return false;
      }
    });
    if (!open.length) closeNative(this.#pc, this.#tracks, this.#channels);
    else {
      for (const dc of open) {
        closing.add(dc);
        try {
          dc.close();
        } catch {
          closing.delete(dc);
        }
      }
      const [pc, tracks, channels] = [this.#pc, this.#tracks, this.#channels];
      const done = new Promise<void>((resolve) => setTimeout(() => {
        closeNative(pc, tracks, channels);
        lingering.delete(done);
        resolve();
      }, LINGER_MS));
      lingering.add(done);
    }
    this.emit('state', 'closed', undefined);
    this.removeAllListeners();
  }

  #onState(s: string): void {
    if (this.#state === 'closed' || this.#state === 'failed') return;
    if (s === 'connected' && this.#state !== 'connected') {
      this.#state = 'connected';
      this.emit('state', 'connected', undefined);
    } else if (s === 'closed') {
      // The remote closed DTLS (close_notify): the publisher is gone.
      this.#state = 'failed';
      this.emit('state', 'failed', 'peer-closed');
    } else if (s === 'failed') {
      this.#state = 'failed';
      let ice: string;
      try {
        ice = this.#pc.iceState();
      } catch {
        ice = 'failed';
      }
      this.emit('state', 'failed', ice === 'failed' || ice === 'disconnected' ? 'ice-failed' : 'dtls-failed');
    }
  }
}

/** WebRTC transports (SIP calls, WHIP publishers, WHEP listeners): every peer on the one shared UDP port. */
export function webRtcTransports(opts: MediaEndpointOptions): TrickleTransportFactory {
  return {
    answer: (id, offerSdp, plan, out) => WebRtcPeer.answer(id, offerSdp, plan, opts, out),
    offer: (id, plan, out) => WebRtcPeer.offer(id, plan, opts, out),
  };
}

/** Closes tracks, channels and the connection, keeping them referenced until their close callbacks ran. */
function closeNative(pc: NdcPeerConnection, tracks: NdcTrack[], channels: NdcDataChannel[]): void {
  const objs: { close(): void }[] = [...tracks, ...channels];
  for (const obj of [...objs, pc]) closing.add(obj);
  // An object that was already closed never calls back again: let go of everything after a while.
  setTimeout(() => [...objs, pc].forEach((o) => closing.delete(o)), 10_000).unref();
  for (const obj of [...objs, pc]) {
    try {
      obj.close();
    } catch {
      closing.delete(obj);
    }
  }
}

/** mDNS (.local) host candidates cannot be resolved here; ICE finds the peer as peer-reflexive instead. */
function stripUnresolvableCandidates(sdp: string): string {
  return sdp
    .split(/\r?\n/)
    .filter((l) => !(l.startsWith('a=candidate:') && isMdnsCandidate(l)))
    .join('\r\n');
}

/** How long the offer's candidates are held back (see #releaseLater): a slow 201 on a loaded machine still arrives first. */
const EARLY_CHECKS_MS = 1000;

/**
 * The offer without its candidate lines (and end-of-candidates, which would end ICE before any
 * check), and the candidates with the mid of the m-section each was in. An ICE-lite offerer
 * never checks, so its offer is left whole.
 */
export function holdCandidates(offerSdp: string): { sdp: string; candidates: { candidate: string; mid: string }[] } {
  if (/^a=ice-lite\b/m.test(offerSdp)) return { sdp: offerSdp, candidates: [] };
  const candidates: { candidate: string; mid: string }[] = [];
  // A candidate line may come before its section's a=mid: it gets the mid when that is read.
  let section: { candidate: string; mid: string }[] = [];
  let mid = '';
  const kept = offerSdp.split(/\r?\n/).filter((l) => {
    if (l.startsWith('m=')) [section, mid] = [[], ''];
    else if (l.startsWith('a=mid:')) {
      mid = l.slice(6).trim();
      for (const c of section) c.mid = mid;
    }
    if (l.startsWith('a=candidate:')) {
      const c = { candidate: l.slice(2), mid };
      section.push(c);
      candidates.push(c);
      return false;
    }
    return !l.startsWith('a=end-of-candidates');
  });
  return { sdp: kept.join('\r\n'), candidates };
}

function rewriteLocal(sdp: string, announced: string | undefined): string {
  const lines = sdp.split(/\r?\n/).filter((l) => l !== '' && !l.startsWith('a=group:LS'));
  if (!announced) return lines.join('\r\n') + '\r\n';
  return (
    lines
      .map((l) => {
        if (l.startsWith('a=candidate:')) {
          const parts = l.split(' ');
          if (parts[7] === 'host') parts[4] = announced;
          return parts.join(' ');
        }
        if (l.startsWith('c=IN IP4 ') || l.startsWith('c=IN IP6 ')) {
          return `c=IN ${announced.includes(':') ? 'IP6' : 'IP4'} ${announced}`;
        }
        return l;
      })
      .join('\r\n') + '\r\n'
  );
}
