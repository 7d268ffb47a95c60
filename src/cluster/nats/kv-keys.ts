import type { Bucket, KV } from '@nats-io/kv';

/**
 * The keys of a JetStream KV bucket matching `filter` (KV key syntax: `node.*`, `aor.*`, `>`).
 * For the client's own Bucket, from one stream-info request with a subjects filter (the client
 * pages it); not `kv.keys()`, whose ordered consumer can wait for an idle heartbeat before it
 * ends when a key is written or purged while it runs (30 s seen with nats-server 2.9 and
 * @nats-io/kv 3.4): every heartbeat or claim on another node would cause that. Another KV (a
 * test's wrapper) falls back to `kv.keys()`. A key whose latest message is a delete marker is
 * listed too: the caller's get() reads it as absent.
 */
export async function kvKeys(kv: KV, filter = '>'): Promise<string[]> {
  const b = kv as Partial<Bucket>;
  if (b.jsm && b.bucket && b.stream) {
    const prefix = `$KV.${b.bucket}.`;
    const info = await b.jsm.streams.info(b.stream, { subjects_filter: `${prefix}${filter}` });
    return Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length));
  }
  const keys: string[] = [];
  for await (const key of await kv.keys(filter)) keys.push(key);
  return keys;
}
