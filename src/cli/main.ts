#!/usr/bin/env -S node --max-semi-space-size=32
import { parseArgs } from 'node:util';
import { verifyAuditFile } from '../audit/audit-log.js';
import { signJwt } from '../auth/source-auth.js';
import { ConfigError, loadConfig } from '../core/config.js';
import { Gateway } from '../gateway.js';
import { stirCommand } from './stir.js';
import { workerCommand } from './worker.js';
import { verifyFleetAudit } from './audit.js';

const USAGE = `voxgate: the gateway between live audio and AI voice agents

usage:
  voxgate serve [--config FILE] [--host H] [--http-port N] [--udp-port N]
  voxgate audit verify FILE | --nats URL [--prefix P]   check a file's chain, or every node's in the fleet's stream
  voxgate token --secret S --sub SOURCE [--ttl SECONDS]
  voxgate stir keygen|sign|verify ...   STIR/SHAKEN: development keys, sign a PASSporT, check an Identity header
  voxgate worker --agent demo|echo ...  run an agent as a worker of a fleet (NATS); --help for more

serve reads VOXGATE_CONFIG when --config is not given; with neither it runs with defaults
(HTTP on 127.0.0.1:8080, media on UDP 50000) and prints a development source token.`;

function portArg(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError([`--${name}: must be a port number (0-65535), got '${v}'`]);
  return n;
}

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string' }, host: { type: 'string' }, 'http-port': { type: 'string' }, 'udp-port': { type: 'string' } },
    strict: true,
  });
  const config = loadConfig(values.config ?? process.env.VOXGATE_CONFIG, {
    host: values.host,
    httpPort: portArg(values['http-port'], 'http-port'),
    udpPort: portArg(values['udp-port'], 'udp-port'),
  });
  const gw = await Gateway.start(config);
  gw.log.info({ url: gw.url, udpPort: config.media.udpPort, audit: config.audit.path }, 'voxgate is listening');
  const lines = [`voxgate listening on ${gw.url}  (WHIP: ${gw.url}/whip, media UDP ${config.media.udpPort})`];
  if (gw.devToken) lines.push(`development source token (source 'dev'): ${gw.devToken}`);
  if (!config.admin.token) lines.push(`admin token for /api/sessions: ${gw.adminToken}`);
  process.stderr.write(lines.join('\n') + '\n');
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    gw.log.info({ signal }, 'draining');
    gw.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        gw.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function auditCommand(argv: string[]): Promise<number> {
  const [sub, file] = argv;
  if (sub === 'verify' && file?.startsWith('--')) return verifyFleetAudit(argv.slice(1));
  if (sub !== 'verify' || !file) {
    process.stderr.write('usage: voxgate audit verify FILE | voxgate audit verify --nats URL[,URL] [--prefix P] | --config FILE\n');
    return 2;
  }
  const r = verifyAuditFile(file);
  if (r.ok) {
    process.stdout.write(`${file}: ${r.lines} records, chain intact\n`);
    return 0;
  }
  process.stdout.write(`${file}: chain broken at line ${r.brokenAt}: ${r.problem}\n`);
  return 1;
}

function tokenCommand(argv: string[]): number {
  const { values } = parseArgs({ args: argv, options: { secret: { type: 'string' }, sub: { type: 'string' }, ttl: { type: 'string' } } });
  if (!values.secret || !values.sub) {
    process.stderr.write('usage: voxgate token --secret S --sub SOURCE [--ttl SECONDS]\n');
    return 2;
  }
  const ttl = Number(values.ttl ?? 3600);
  process.stdout.write(signJwt({ sub: values.sub, exp: Math.floor(Date.now() / 1000) + ttl }, values.secret) + '\n');
  return 0;
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  try {
    if (cmd === 'serve' || cmd === undefined) await serve(rest);
    else if (cmd === 'audit') process.exitCode = await auditCommand(rest);
    else if (cmd === 'token') process.exitCode = tokenCommand(rest);
    else if (cmd === 'stir') process.exitCode = await stirCommand(rest);
    // The demo agent's speech and VAD keep handles of their own: a stopped worker exits.
    else if (cmd === 'worker') process.exit(await workerCommand(rest));
    else {
      process.stderr.write(USAGE + '\n');
      process.exitCode = cmd === 'help' || cmd === '--help' ? 0 : 2;
    }
  } catch (err) {
    if (err instanceof ConfigError || (err instanceof Error && 'code' in err && err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')) {
      process.stderr.write(`voxgate: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}

await main();
