import type { Call } from '../call/call.js';
import type { SipRequest } from '../sip/message.js';
import type { SipFlow } from '../sip/transport/transport.js';
import { dialogKeyOf } from './dialog-messages.js';
import type { PartyDialog } from './party-dialog.js';

/**
 * The dialogs voxgate is a party to, by Call-ID and our tag, and for each call the dialog of
 * each role now (a referral moves the caller's to another dialog). Nothing stays in it after
 * its dialog is forgotten.
 */
export class DialogTable {
  readonly #byKey = new Map<string, PartyDialog>();
  readonly #byCall = new Map<Call, { caller?: PartyDialog; callee?: PartyDialog }>();

  get size(): number {
    return this.#byKey.size;
  }

  add(d: PartyDialog): void {
    this.#byKey.set(d.key, d);
    const roles = this.#byCall.get(d.call) ?? {};
    roles[d.role] = d;
    this.#byCall.set(d.call, roles);
  }

  /** The dialog an in-dialog request (it has a To tag) is for. */
  find(req: SipRequest): PartyDialog | undefined {
    const d = this.#byKey.get(dialogKeyOf(req));
    return d?.matches(req) ? d : undefined;
  }

  /** The dialog that carries `role` of a call now. */
  current(call: Call, role: 'caller' | 'callee' = 'caller'): PartyDialog | undefined {
    return this.#byCall.get(call)?.[role];
  }

  /** Forgets a dialog; the call's role points at it no longer. */
  remove(d: PartyDialog): void {
    if (this.#byKey.get(d.key) === d) this.#byKey.delete(d.key);
    const roles = this.#byCall.get(d.call);
    if (roles?.[d.role] === d) delete roles[d.role];
    if (roles && !roles.caller && !roles.callee) this.#byCall.delete(d.call);
  }

  /** The call has ended: it has no current dialogs (its dialogs themselves may still wait for a BYE). */
  release(call: Call): void {
    this.#byCall.delete(call);
  }

  onFlow(flow: SipFlow): PartyDialog[] {
    return [...this.#byKey.values()].filter((d) => d.flow === flow);
  }
}
