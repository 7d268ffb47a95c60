/**
 * The SessionDirectory on a JetStream KV bucket: one key per session id, one JSON entry
 * `{ record, expiresAt? }` per key. Every write is checked by the server against the key's last
 * revision (JetStream's Nats-Expected-Last-Subject-Sequence header), so nodes racing on one id
 * never overwrite each other and no local lock stands in for the server (DESIGN.md, "Scale-out on
 * NATS": claim with KV `create`, renew with revision-checked `update`).
 */
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { SessionDirectory, SessionRecord } from '../../call/session-directory.js';
import { kvKeys } from './kv-keys.js';

export interface NatsSessionDirectoryOptions {
  /** The caller owns the connection: close() leaves it open. */
  nc: NatsConnection;
  /** Created if absent, else bound (`Kvm.create` opens an existing bucket). Default 'voxgate_sessions'. */
  bucket?: string;
  /** Epoch ms; tombstone expiry is measured on it. Default Date.now. */
  now?: () => number;
  /** How long an ended session stays looked-up-able (WHEP 404 rather than 409). Default 10 min. */
  tombstoneMs?: number;
  /** Bucket replicas when this call creates it (1, 3 or 5). Default 1. */
  replicas?: number;
  /** A pino Logger fits. */
  log?: { warn(obj: object, msg: string): void };
}

/** What one key holds. `expiresAt` (epoch ms, releasing node's clock) is set exactly when the record has ended. */
interface Stored {
  record: SessionRecord;
  expiresAt?: number;
}

type Read = { stored: Stored; revision: number };

/**
 * Revision-checked writes one operation tries before it gives up. A lost write means another writer
 * succeeded since our read, and each writer succeeds once, so with k writers at one key each is done
 * within k tries: 16 is far above a session's writers (its holder, a release, a node-lost sweep).
 */
const MAX_ATTEMPTS = 16;
/** Gets in flight at once while list() or sweep() read the bucket. */
const READ_BATCH = 64;

/**
 * KV keys are subject tokens joined by dots, of [-/_=.a-zA-Z0-9] (@nats-io/kv validKeyRe, no
 * leading, trailing or doubled dot). An id of [-_a-zA-Z0-9] is its own key; any other (dots,
 * colons, '@', spaces, non-ASCII, '') is '=' + base64url of its UTF-8, which is reversible and
 * cannot collide with a plain key, as a plain key has no '='.
 */
const PLAIN_ID = /^[-_a-zA-Z0-9]+$/;
const sessionKey = (id: string): string => (PLAIN_ID.test(id) ? id : `=${Buffer.from(id, 'utf8').toString('base64url')}`);

const STATES: ReadonlySet<unknown> = new Set(['connecting', 'connected', 'ended']);

/** Entries come from every node: check the shape before trusting it. */
function isStored(v: unknown): v is Stored {
  if (typeof v !== 'object' || v === null) return false;
  const { record, expiresAt } = v as { record?: unknown; expiresAt?: unknown };
  if (typeof record !== 'object' || record === null) return false;
  const r = record as Record<string, unknown>;
  const expiry = r.state === 'ended' ? typeof expiresAt === 'number' : expiresAt === undefined;
  return typeof r.id === 'string' && typeof r.node === 'string' && STATES.has(r.state) && typeof r.createdAt === 'number' && expiry;
}

/** An entry that is not a session record: list() and sweep() skip it, the other operations throw it. */
class CorruptEntryError extends Error {}

function parseStored(e: KvEntry): Stored {
  let v: unknown;
  try {
    v = e.json();
  } catch {
    /* not JSON: not a record either */
  }
  if (!isStored(v)) throw new CorruptEntryError(`session directory entry '${e.key}' (revision ${e.revision}) is not a session record`);
  return v;
}

/**
 * Runs a revision-checked write. False when the server refused it because the key is no longer at
 * the expected revision (JetStream 10071 "wrong last sequence"); any other failure is thrown.
 */
async function written(write: () => Promise<number>): Promise<boolean> {
  try {
    await write();
    return true;
  } catch (err) {
    if (err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)) return false;
    throw err;
  }
}

export class NatsSessionDirectory implements SessionDirectory {
  readonly #kv: KV;
  readonly #jsm: JetStreamManager;
  readonly #bucket: string;
  /** The bucket's stream, as @nats-io/kv names it. */
  readonly #stream: string;
  readonly #now: () => number;
  readonly #tombstoneMs: number;
  readonly #log: NatsSessionDirectoryOptions['log'];
  #closed = false;

  private constructor(kv: KV, jsm: JetStreamManager, bucket: string, opts: NatsSessionDirectoryOptions) {
    this.#kv = kv;
    this.#jsm = jsm;
    this.#bucket = bucket;
    this.#stream = `KV_${bucket}`;
    this.#now = opts.now ?? Date.now;
    this.#tombstoneMs = opts.tombstoneMs ?? 10 * 60_000;
    this.#log = opts.log;
  }

  static async open(opts: NatsSessionDirectoryOptions): Promise<NatsSessionDirectory> {
    const bucket = opts.bucket ?? 'voxgate_sessions';
    const kv = await new Kvm(opts.nc).create(bucket, {
      // Only the last revision of a key matters; older ones would only grow the stream.
      history: 1,
      replicas: opts.replicas ?? 1,
      // Gets go to the stream leader, not any replica, so a node reads its own writes (DESIGN.md:
      // "Do not rely on read-your-writes from KV replicas").
      allow_direct: false,
    });
    return new NatsSessionDirectory(kv, await jetstreamManager(opts.nc), bucket, opts);
  }

  async claim(record: SessionRecord): Promise<boolean> {
    this.#open();
    const key = sessionKey(record.id);
    // Serialised here, so later changes to the caller's object change nothing stored.
    const value = JSON.stringify({ record } satisfies Stored);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      // kv.create expects last revision 0 (no message), or writes over a DEL/PURGE marker at that
      // marker's revision: either way exactly one of racing creators succeeds.
      if (await written(() => this.#kv.create(key, value))) return true;
      const cur = await this.#read(key);
      // Swept between our create and our get: the key is free again.
      if (cur === undefined) continue;
      if (!this.#expired(cur.stored)) return false;
      // nats-server 2.9 has no per-key TTL, so an expired tombstone can still be there: replace it
      // only while it is that revision, so of claimers racing over it exactly one wins.
      if (await written(() => this.#kv.update(key, value, cur.revision))) return true;
    }
    throw new Error(`claim of session '${record.id}' lost ${MAX_ATTEMPTS} revision races in a row`);
  }

  async update(id: string, patch: { state?: 'connecting' | 'connected'; connectedAt?: number }): Promise<boolean> {
    this.#open();
    const key = sessionKey(id);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const cur = await this.#read(key);
      if (cur === undefined || cur.stored.record.state === 'ended') return false;
      const record = { ...cur.stored.record };
      if (patch.state !== undefined) record.state = patch.state;
      if (patch.connectedAt !== undefined) record.connectedAt = patch.connectedAt;
      // Lost: someone updated or released it since our read; read again and decide again.
      if (await written(() => this.#kv.update(key, JSON.stringify({ record } satisfies Stored), cur.revision))) return true;
    }
    throw new Error(`update of session '${id}' lost ${MAX_ATTEMPTS} revision races in a row`);
  }

  async lookup(id: string): Promise<SessionRecord | undefined> {
    this.#open();
    const cur = await this.#read(sessionKey(id));
    // Parsed from the wire just now, so the caller gets an object nobody else holds.
    return cur === undefined || this.#expired(cur.stored) ? undefined : cur.stored.record;
  }

  async release(id: string, reason: string, at: number): Promise<void> {
    this.#open();
    const key = sessionKey(id);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const cur = await this.#read(key);
      // Unknown or already ended: nothing to do, so a second release keeps the first reason and `at`.
      if (cur === undefined || cur.stored.record.state === 'ended') return;
      const stored: Stored = {
        record: { ...cur.stored.record, state: 'ended', endedAt: at, endReason: reason },
        // The tombstone's life runs from now on this directory's clock, not from `at`.
        expiresAt: this.#now() + this.#tombstoneMs,
      };
      if (await written(() => this.#kv.update(key, JSON.stringify(stored), cur.revision))) return;
    }
    throw new Error(`release of session '${id}' lost ${MAX_ATTEMPTS} revision races in a row`);
  }

  /**
   * Reads the whole bucket from the server: one stream info for the keys, then one get per key, so
   * O(sessions + tombstones) requests per call. Correct across nodes (every read is the
   * leader's); a watch-fed local view would make it O(1) requests, at the price of lag.
   */
  async list(filter?: { node?: string }): Promise<SessionRecord[]> {
    this.#open();
    const node = filter?.node;
    const out: SessionRecord[] = [];
    for (const { stored } of (await this.#readAll()).values()) {
      const r = stored.record;
      if (r.state !== 'ended' && (node === undefined || r.node === node)) out.push(r);
    }
    return out;
  }

  /**
   * Forgets expired tombstones; returns how many. Safe on every node at once: a JetStream purge with
   * `filter` (the key's subject) and `seq` (tombstone revision + 1) removes only that subject's
   * messages below `seq`, so a claim that replaced the tombstone meanwhile survives, and a second
   * sweeper purges nothing. Unlike kv.delete/purge it leaves no marker behind, so a bucket of ids
   * used once does not keep one marker per session ever ended.
   */
  async sweep(): Promise<number> {
    this.#open();
    let purged = 0;
    for (const [key, cur] of await this.#readAll()) {
      if (!this.#expired(cur.stored)) continue;
      const res = await this.#jsm.streams.purge(this.#stream, { filter: `$KV.${this.#bucket}.${key}`, seq: cur.revision + 1 });
      purged += res.purged;
    }
    return purged;
  }

  /** Stops answering. The connection and the bucket are the caller's and stay. */
  async close(): Promise<void> {
    this.#closed = true;
  }

  /** The key's entry; a DEL/PURGE marker reads as absent, as kv.create treats it. */
  async #read(key: string): Promise<Read | undefined> {
    const e = await this.#kv.get(key);
    if (e === null || e.operation !== 'PUT') return undefined;
    return { stored: parseStored(e), revision: e.revision };
  }

  /** Every key's entry; an entry that is not a session record is logged and left out. */
  async #readAll(): Promise<Map<string, Read>> {
    const keys = await kvKeys(this.#kv);
    const out = new Map<string, Read>();
    for (let i = 0; i < keys.length; i += READ_BATCH) {
      const batch = keys.slice(i, i + READ_BATCH);
      const skipCorrupt = (k: string) => (err: unknown) => {
        if (!(err instanceof CorruptEntryError)) throw err;
        this.#log?.warn({ err, bucket: this.#bucket, key: k }, 'session directory entry skipped');
        return undefined;
      };
      const reads = await Promise.all(batch.map((k) => this.#read(k).catch(skipCorrupt(k))));
      // A key swept between the stream info and its get reads as undefined and is simply absent.
      reads.forEach((r, j) => r !== undefined && out.set(batch[j]!, r));
    }
    return out;
  }

  /** `expiresAt` is on the releasing node's clock, compared on the reading node's: skew between them shifts expiry by that much. */
  #expired(s: Stored): boolean {
    return s.expiresAt !== undefined && s.expiresAt <= this.#now();
  }

  #open(): void {
    if (this.#closed) throw new Error('the session directory is closed');
  }
}
