import { setTimeout as delay } from 'node:timers/promises';
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Binding, LocationStore } from '../../sip/location-store.js';
import { kvKeys } from './kv-keys.js';

/**
 * Layout of the bucket (history 1):
 *   key   `aor.<base64url of the aor's UTF-8>`   (KV keys allow only [-/_=.a-zA-Z0-9]; SIP URIs
 *         carry `:@;'+[]` and more. base64url is reversible and never yields a '.', so one aor is
 *         exactly one token after the `aor.` prefix, which leaves room for other key families.)
 *   value `{"v":1,"bindings":[Binding, ...]}`    (JSON; undefined fields are dropped and restored on read)
 *
 * One key per aor, not per binding: `update` replaces an aor's whole set atomically (RFC 3261
 * §10.3 decides a REGISTER over the whole set: `Contact: *`, CSeq order, RFC 5626 instance/reg-id
 * replacement), and nats-server 2.9 has no multi-key atomic write. With one key a REGISTER is a
 * single put guarded by the revision it read (Nats-Expected-Last-Subject-Sequence), so two nodes
 * racing on one aor cannot lose an update: the loser re-reads and runs `change` again.
 */
const KEY_PREFIX = 'aor.';
const FORMAT = 1;

/**
 * Optimistic-concurrency policy. Each conflict means another writer succeeded, so the store as a
 * whole always progresses, but one update can lose again and again under a burst. After a loss it
 * waits a random time in a window of 2, 4 … 64 round trips (the attempt's own read + put, so the
 * window widens with a loaded server instead of being a fixed few ms that collide again). 50
 * writers on one aor from two connections then settle within ~10 attempts even with both cores
 * busy; real contention on one aor is a user's few devices.
 */
const MAX_ATTEMPTS = 20;
const MAX_BACKOFF_ROUND_TRIPS = 64;
/** Parallel reads in `all()`: keeps a large registry from opening thousands of requests at once. */
const READ_BATCH = 64;

export interface NatsLocationStoreOptions {
  nc: NatsConnection;
  bucket: string;
  /**
   * Bucket max age (ms), only applied when this call creates the bucket. Every REGISTER rewrites
   * its aor's key, so a key older than the registrar's maxExpires holds only expired bindings
   * (e.g. left by a node that died with its flows): the server drops it. Must be ≥ maxExpires.
   */
  maxAgeMs?: number;
}

/**
 * The registrar's location service (RFC 3261 §10.3) in a JetStream KV bucket shared by every node;
 * the flows themselves stay on the node holding the WebSocket (issue 17, build item 5).
 *
 * Expiry: nats-server 2.9 has no per-key TTL, so each binding carries its `expiresAt`. As the
 * interface says, reads return expired bindings too and the registrar filters them on its own
 * clock (its REGISTER `change` also drops them, so a write sweeps its aor); `maxAgeMs` drops keys
 * nobody rewrites any more.
 *
 * Reads may come from a replica (direct get) and be slightly stale (DESIGN.md: no read-your-writes
 * from replicas); writes are never wrong for it, since a stale revision fails the put and retries.
 */
export class NatsLocationStore implements LocationStore {
  readonly #kv: KV;
  #closed = false;

  /** Over a bucket someone else opened (history 1). The connection stays the caller's. */
  constructor(kv: KV) {
    this.#kv = kv;
  }

  /** Creates the bucket, or binds it when it exists (Kvm.create then leaves its config alone). */
  static async open(opts: NatsLocationStoreOptions): Promise<NatsLocationStore> {
    const kv = await new Kvm(opts.nc).create(opts.bucket, { history: 1, ...(opts.maxAgeMs ? { ttl: opts.maxAgeMs } : {}) });
    return new NatsLocationStore(kv);
  }

  async get(aor: string): Promise<Binding[]> {
    this.#open();
    // Nothing can be registered under an aor no key can hold (an INVITE may name anything).
    if (!storable(aor)) return [];
    return (await this.#read(aorKey(aor))).bindings;
  }

  async update(aor: string, change: (current: Binding[]) => Binding[]): Promise<Binding[]> {
    this.#open();
    const key = aorKey(aor);
    for (let attempt = 1; ; attempt++) {
      const started = performance.now();
      const { bindings: current, revision, live } = await this.#read(key);
      // `current` is freshly decoded, and `checked` copies what change returned: nothing stored is shared.
      const next = change(current).map((b) => checked(b, key));
      try {
        if (next.length === 0) {
          // An empty list removes the aor: a delete marker, guarded like a put.
          if (live) await this.#kv.delete(key, { previousSeq: revision });
        } else {
          // previousSeq 0 means "no message under this key yet"; after a delete, the marker's revision.
          await this.#kv.put(key, JSON.stringify({ v: FORMAT, bindings: next }), { previousSeq: revision });
        }
        return next;
      } catch (err) {
        if (!isRevisionConflict(err)) throw err;
        if (attempt >= MAX_ATTEMPTS) {
          throw new Error(`location store: ${aor} changed under ${MAX_ATTEMPTS} attempts in a row (revision conflicts); not stored`, { cause: err });
        }
        const roundTrip = Math.max(1, performance.now() - started);
        await delay(Math.random() * Math.min(2 ** attempt, MAX_BACKOFF_ROUND_TRIPS) * roundTrip);
      }
    }
  }

  /**
   * Every aor's bindings: lists the `aor.*` keys, then reads each. This is a full scan, and the
   * registrar's `dropFlow` (a WebSocket closed) goes through it: the interface has no by-flow
   * lookup. A later step can add a per-node index (the node holding a flow wrote its REGISTERs,
   * so it can know locally which aors each flow touched) and a `LocationStore` method to use it.
   */
  async all(): Promise<Binding[]> {
    this.#open();
    const keys = await kvKeys(this.#kv, `${KEY_PREFIX}*`);
    const out: Binding[] = [];
    for (let i = 0; i < keys.length; i += READ_BATCH) {
      const lists = await Promise.all(keys.slice(i, i + READ_BATCH).map((k) => this.#read(k)));
      for (const l of lists) out.push(...l.bindings);
    }
    return out;
  }

  /** Refuses later calls. The bucket and the connection are left as they are: they are shared. */
  async close(): Promise<void> {
    this.#closed = true;
  }

  /** The aor's bindings and the revision a write must name: 0 when the key never held a message. */
  async #read(key: string): Promise<{ bindings: Binding[]; revision: number; live: boolean }> {
    const entry = await this.#kv.get(key);
    if (!entry) return { bindings: [], revision: 0, live: false };
    if (entry.operation !== 'PUT') return { bindings: [], revision: entry.revision, live: false };
    return { bindings: decode(entry, key), revision: entry.revision, live: true };
  }

  #open(): void {
    if (this.#closed) throw new Error('the location store is closed');
  }
}

/**
 * The key is in the subject of every put, and a subject past the server's 4 KiB control line
 * closes the whole connection (every call of the node), so an aor gets a bound: 1 KiB of UTF-8.
 */
const MAX_AOR_BYTES = 1024;
const storable = (aor: string): boolean => aor !== '' && Buffer.byteLength(aor, 'utf8') <= MAX_AOR_BYTES;

/** `aor.` + base64url(UTF-8): reversible, and every character is one KV keys allow. */
function aorKey(aor: string): string {
  if (!storable(aor)) throw new Error(`location store: an aor must be 1 to ${MAX_AOR_BYTES} bytes of UTF-8`);
  return KEY_PREFIX + Buffer.from(aor, 'utf8').toString('base64url');
}

function isRevisionConflict(err: unknown): boolean {
  // nats-server answers a failed Nats-Expected-Last-Subject-Sequence with 10071 "wrong last sequence".
  if (err instanceof JetStreamApiError) {
    return err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown;
  }
  return err instanceof Error && /wrong last sequence/i.test(err.message);
}

function decode(entry: KvEntry, key: string): Binding[] {
  let value: unknown;
  try {
    value = entry.json();
  } catch {
    value = undefined;
  }
  if (typeof value !== 'object' || value === null || !('v' in value) || value.v !== FORMAT || !('bindings' in value) || !Array.isArray(value.bindings)) {
    throw new Error(`location store: ${key} (revision ${entry.revision}) is not a v${FORMAT} bindings record`);
  }
  return value.bindings.map((b: unknown) => checked(b, key));
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isOptionalString = (v: unknown): v is string | undefined => v === undefined || typeof v === 'string';

/**
 * A full copy of a binding, read field by field: a value written by another node's version, or
 * a `change` that returned something malformed, is refused instead of stored or handed on.
 */
function checked(raw: unknown, key: string): Binding {
  if (typeof raw === 'object' && raw !== null) {
    const { aor, contact, flowId, remote, instance, regId, callId, cseq, expiresAt, userAgent, node } = raw as Record<string, unknown>;
    if (isString(aor) && isString(contact) && isString(flowId) && isString(remote) && isString(callId) && isOptionalString(instance) && isOptionalString(regId) && isOptionalString(userAgent) && isOptionalString(node) && typeof cseq === 'number' && typeof expiresAt === 'number') {
      return { aor, contact, flowId, remote, instance, regId, callId, cseq, expiresAt, userAgent, ...(node !== undefined ? { node } : {}) };
    }
  }
  throw new Error(`location store: a malformed binding for ${key}`);
}
