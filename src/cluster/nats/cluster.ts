import { randomBytes } from 'node:crypto';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { ConfigError, type Config } from '../../core/config.js';
import type { Logger } from '../../core/logger.js';
import { NatsEventBus } from './event-bus.js';
import { NatsLocationStore } from './location-store.js';
import { NatsSessionDirectory } from './session-directory.js';

type ClusterConfig = NonNullable<Config['cluster']>;

/**
 * One node's share of the fleet (issue 17): its NATS connection and the shared state built on
 * it, all named from `cluster.nats.prefix` so several fleets can share a server: the session
 * directory (`<prefix>_sessions`), the SIP location store (`<prefix>_locations`), the nodes
 * bucket (`<prefix>_nodes`, see nodes.ts) and the event subjects (`<prefix>.events.>`).
 */
export interface Cluster {
  nodeId: string;
  /** `cluster.nats.prefix`: of the buckets, the event subjects and the nodes' request subjects. */
  prefix: string;
  /** Where clients reach this node (other nodes redirect there). */
  publicUrl: string;
  nc: NatsConnection;
  directory: NatsSessionDirectory;
  events: NatsEventBus;
  locations: NatsLocationStore;
  nodesKv: KV;
  /** Fleet-wide limits (`<prefix>_limits`, limits.ts). */
  limitsKv: KV;
  /** Jobs one node does at a time (`<prefix>_leases`, lease.ts): trunks' registrations. */
  leasesKv: KV;
  /** The fleet's digest nonce secret (`<prefix>_config`): a nonce one node issues, any node checks. */
  digestSecret: Buffer;
  /** Drains the connection, or closes it when the server is away (never rejects); the parts close first (Fleet.leave). */
  close(): Promise<void>;
}

/** A drain bounded in time: with the server away it would reject after seconds and leave the connection reconnecting. */
async function closeConnection(nc: NatsConnection): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([nc.drain().catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, 3000)))]);
  clearTimeout(timer);
  if (!nc.isClosed()) await nc.close().catch(() => undefined);
}

/** A secret every node shares: the first node to start makes it (KV create), the others read it. */
async function sharedSecret(kv: KV, key: string): Promise<Buffer> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const found = await kv.get(key);
    if (found?.value.length === 32) return Buffer.from(found.value);
    try {
      const fresh = randomBytes(32);
      await kv.create(key, fresh);
      return fresh;
    } catch {
      // Another node made it first: read it on the next round.
    }
  }
  throw new Error(`the shared ${key} could not be read or made`);
}

/** NATS connection options from the config (servers, credentials, TLS files). */
export function natsOptions(cfg: ClusterConfig): ConnectionOptions {
  const { nats } = cfg;
  return {
    servers: nats.servers,
    name: `voxgate-${cfg.nodeId}`,
    ...(nats.user !== undefined ? { user: nats.user, pass: nats.password } : {}),
    ...(nats.token !== undefined ? { token: nats.token } : {}),
    ...(nats.tls ? { tls: { ...(nats.tls.ca ? { caFile: nats.tls.ca } : {}), ...(nats.tls.cert ? { certFile: nats.tls.cert, keyFile: nats.tls.key } : {}) } } : {}),
    // A fleet keeps trying: a NATS restart must not end the node.
    maxReconnectAttempts: -1,
  };
}

/**
 * Connects and opens the buckets; a server that cannot be reached, refuses the credentials or
 * has no JetStream stops start-up with one line naming the field.
 */
export async function openCluster(cfg: ClusterConfig, publicUrl: string, opts: { now: () => number; log: Logger }): Promise<Cluster> {
  let nc: NatsConnection;
  try {
    nc = await connect({ ...natsOptions(cfg), timeout: 5000 });
  } catch (err) {
    throw new ConfigError([`cluster.nats.servers: cannot connect to ${cfg.nats.servers.join(', ')} (${(err as Error).message}); is nats-server running, and are the credentials right?`]);
  }
  const log = opts.log.child({ component: 'cluster' });
  const { prefix } = cfg.nats;
  try {
    const kvm = new Kvm(nc);
    // An hour's max age: live nodes rewrite their entry every 2 s; lost and departed ones go.
    const nodesKv = await kvm.create(`${prefix}_nodes`, { history: 1, ttl: 3_600_000 });
    const directory = await NatsSessionDirectory.open({ nc, bucket: `${prefix}_sessions`, now: opts.now, log });
    const locations = await NatsLocationStore.open({ nc, bucket: `${prefix}_locations` });
    const events = new NatsEventBus({ nc, prefix: `${prefix}.events`, onError: (err) => log.error({ err }, 'session event subscriber threw, or a bad event arrived'), log });
    const digestSecret = await sharedSecret(await kvm.create(`${prefix}_config`, { history: 1 }), 'digest-secret');
    const limitsKv = await kvm.create(`${prefix}_limits`, { history: 1 });
    const leasesKv = await kvm.create(`${prefix}_leases`, { history: 1 });
    return { nodeId: cfg.nodeId, prefix, publicUrl, nc, directory, events, locations, nodesKv, limitsKv, leasesKv, digestSecret, close: () => closeConnection(nc) };
  } catch (err) {
    await nc.close();
    const msg = (err as Error).message;
    throw new ConfigError([`cluster.nats.servers: ${/jetstream/i.test(msg) ? 'the server has no JetStream (start nats-server with -js)' : 'the buckets could not be opened'} (${msg})`]);
  }
}
