import type { Call } from '../call/call.js';
import type { StartCallDeps } from '../call/start-call.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { SipService } from '../sip/sip-service.js';
import type { NegotiatedTransport, TransportFactory } from '../transport/factory.js';
import { DialogTable } from './dialogs.js';
import { PartyDialog, type PartyDialogDeps } from './party-dialog.js';
import type { Dialog } from '../sip/dialog.js';
import type { SipFlow } from '../sip/transport/transport.js';
import type { StirSigner, StirVerifier } from '../sip/identity/stir.js';
import type { SipResponse } from '../sip/message.js';

export interface SipCallsDeps extends StartCallDeps {
  sip: SipService;
  clock: Clock;
  log: Logger;
  /** Per-user limits (`sip.users[].maxCalls`). */
  maxCalls?: ReadonlyMap<string, number>;
  /** How the media of SIP calls is carried (WebRTC for browsers; a fake in tests). */
  transports: TransportFactory;
  domain: string;
  /** STIR/SHAKEN: signs the INVITEs of trunks with `stirShaken.sign`, verifies those with `verify`. */
  stir?: { signer: StirSigner | undefined; verifier: StirVerifier | undefined };
}

/**
 * What the jobs where SIP dialogs become calls share: their dependencies and the table of the
 * dialogs voxgate is a party to. One per gateway.
 */
export class SipCallsContext {
  readonly dialogs = new DialogTable();
  readonly #dialogDeps: PartyDialogDeps;

  constructor(readonly deps: SipCallsDeps) {
    this.#dialogDeps = { sip: deps.sip, clock: deps.clock, log: deps.log, forget: (d) => this.dialogs.remove(d) };
  }

  /** A dialog for one party of a call, in the table from now on. */
  openDialog(opts: {
    dialog: Dialog;
    flow: SipFlow;
    call: Call;
    role: 'caller' | 'callee';
    peer: NegotiatedTransport;
    party: string;
    localUser: string;
    answerSdp: string;
    acked: boolean;
    /** The 2xx to an INVITE we sent: its session timer (RFC 4028) is started from it. */
    answer?: SipResponse;
  }): PartyDialog {
    const d = new PartyDialog(opts.dialog, opts.flow, opts.call, opts.role, opts.peer, opts.party, opts.localUser, opts.answerSdp, this.#dialogDeps, opts.acked);
    this.dialogs.add(d);
    if (opts.answer) d.startSessionTimerFromAnswer(opts.answer);
    return d;
  }

  /** A URI in our domain, for From, To, Referred-By: `sip:user@domain`. */
  aor(user: string): string {
    return `sip:${user}@${this.deps.domain}`;
  }

  /** A transfer target as the agent may write it: `alice`, `alice@domain`, `sip:alice@domain`. */
  targetUri(target: string): string {
    const t = target.trim();
    return /^sips?:/i.test(t) ? t : `sip:${t.includes('@') ? t : `${t}@${this.deps.domain}`}`;
  }

  /** Media closing on a party's transport: connected marks the call, failure ends it (after the BYE's grace for a close). */
  watchMedia(d: PartyDialog): void {
    d.transport.on('state', (state, failure) => {
      if (d.state === 'detached' || d.state === 'ended') return;
      if (state === 'connected') d.call.markConnected();
      else if (failure === 'peer-closed') d.mediaClosed();
      else if (state === 'failed') d.call.close(failure ?? 'ice-failed');
    });
  }
}

/**
 * Our offer, reused as the answer to a re-INVITE in a dialog we started: the DTLS role is fixed
 * by now (RFC 5763 §5), the opposite of theirs.
 */
export function answerFromOffer(offer: string, theirAnswer: string): string {
  const theirs = /a=setup:(\w+)/.exec(theirAnswer)?.[1];
  return offer.replace(/a=setup:actpass/g, `a=setup:${theirs === 'passive' ? 'active' : 'passive'}`);
}
