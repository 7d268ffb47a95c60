import { parseArgs } from 'node:util';
import { connect, type ConnectionOptions } from '@nats-io/transport-node';
import { auditStreamName, verifyAuditStream } from '../cluster/nats/audit-stream.js';
import { natsOptions } from '../cluster/nats/cluster.js';
import { ConfigError, loadConfig } from '../core/config.js';

/** `voxgate audit verify --nats URL`: every node's chain in the fleet's audit stream. */
export async function verifyFleetAudit(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { nats: { type: 'string' }, prefix: { type: 'string' }, config: { type: 'string' } }, strict: true });
  const cluster = values.config ? loadConfig(values.config).cluster : undefined;
  if (!values.nats && !cluster) throw new ConfigError(['--nats: the fleet\'s NATS server(s), or --config with a cluster block']);
  let opts: ConnectionOptions = cluster ? natsOptions(cluster) : { servers: [] };
  if (values.nats) opts = { ...opts, servers: values.nats.split(',') };
  const prefix = values.prefix ?? cluster?.nats.prefix ?? 'voxgate';
  let nc;
  try {
    nc = await connect({ ...opts, timeout: 5000, maxReconnectAttempts: 0 });
  } catch (err) {
    throw new ConfigError([`--nats: cannot connect to ${String(opts.servers)} (${(err as Error).message})`]);
  }
  try {
    const nodes = await verifyAuditStream(nc, prefix);
    if (nodes.length === 0) process.stdout.write(`${auditStreamName(prefix)}: no records\n`);
    for (const n of nodes) {
      process.stdout.write(n.ok ? `${n.node}: ${n.lines} records, chain intact${n.chains > 1 ? ` (${n.chains} chains: the file was started again)` : ''}\n` : `${n.node}: chain broken at record ${n.brokenAt} of ${n.lines}: ${n.problem}\n`);
    }
    return nodes.every((n) => n.ok) ? 0 : 1;
  } catch (err) {
    process.stderr.write(`voxgate: the audit stream ${auditStreamName(prefix)} could not be read (${(err as Error).message})\n`);
    return 1;
  } finally {
    await nc.close();
  }
}
