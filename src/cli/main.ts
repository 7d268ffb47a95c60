#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
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
  voxgate serve [--config FILE] [--host H] [--http-port N] [--udp-port N] [--dev-tls]   (serve --help for more)
  voxgate audit verify FILE | --nats URL [--prefix P]   check a file's chain, or every node's in the fleet's stream
  voxgate token --secret S --sub SOURCE [--ttl SECONDS]
  voxgate stir keygen|sign|verify ...   STIR/SHAKEN: development keys, sign a PASSporT, check an Identity header
  voxgate worker --agent demo|echo ...  run an agent as a worker of a fleet (NATS); --help for more

serve reads VOXGATE_CONFIG when --config is not given; with neither it runs with defaults
(HTTP on 127.0.0.1:8080, media on UDP 50000) and prints a development source token.
voxgate --version prints the version.`;

const SERVE_USAGE = `usage: voxgate serve [options]

Runs the gateway: WHIP ingest, WHEP listeners, SIP over WebSocket (and UDP/TCP/TLS trunks when
configured), the demo page and the player. SIGTERM or SIGINT drains and exits 0.

options:
  --config FILE     a JSON config file (default: $VOXGATE_CONFIG; none: embedded defaults)
  --host H          the HTTP address to bind (http.host, default 127.0.0.1)
  --http-port N     the HTTP port (http.port, default 8080; 0 picks a free one)
  --udp-port N      the one UDP port all WebRTC media shares (media.udpPort, default 50000)
  --dev-tls         HTTPS with a self-signed certificate for this machine, made once and reused
                    (http.devTls), listening on every address unless --host is given, so a phone
                    on the same network can open the demo page with its microphone
  -h, --help        this text

Start-up checks every port and file before it says "listening"; a problem is one line naming
the config field, and exit code 2.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version: string };
  return `voxgate ${pkg.version} (Node.js ${process.version})`;
}

function portArg(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError([`--${name}: must be a port number (0-65535), got '${v}'`]);
  return n;
}

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string' }, host: { type: 'string' }, 'http-port': { type: 'string' }, 'udp-port': { type: 'string' }, 'dev-tls': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(SERVE_USAGE + '\n');
    return;
  }
  const config = loadConfig(values.config ?? process.env.VOXGATE_CONFIG, {
    // A phone on the network is what --dev-tls is for: every address, unless told otherwise.
    host: values.host ?? (values['dev-tls'] ? '0.0.0.0' : undefined),
    httpPort: portArg(values['http-port'], 'http-port'),
    udpPort: portArg(values['udp-port'], 'udp-port'),
    devTls: values['dev-tls'],
  });
  const gw = await Gateway.start(config);
  gw.log.info({ url: gw.url, udpPort: config.media.udpPort, audit: config.audit.path }, 'voxgate is listening');
  if (config.redirect) gw.log.warn({ redirect: config.redirect }, 'redirect mode is on: POST /whip is answered 307 to another node');
  process.stderr.write(banner(gw) + '\n');
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

/** What a person needs after start-up: where everything is, the tokens, the warnings. */
function banner(gw: Gateway): string {
  const { config, url } = gw;
  const lines = [`voxgate listening on ${url}  (WHIP: ${url}/whip, media UDP ${config.media.udpPort})`];
  lines.push(`  demo page: ${url}/   player: ${url}/player   console: ${url}/console`);
  lines.push(`  SIP over WebSocket: ${url.replace(/^http/, 'ws')}/sip  (domain ${config.sip.domain}, ${config.sip.users.length} users)`);
  for (const l of gw.sipListening()) lines.push(`  SIP over ${l.protocol}: ${l.sentBy}:${l.port}`);
  if (gw.devTls) {
    const port = new URL(url).port;
    const lan = gw.devTls.names.filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n) && n !== '127.0.0.1');
    const token = gw.devToken ? `#token=${gw.devToken}` : '';
    if (config.http.host === '0.0.0.0' || config.http.host === '::') for (const ip of lan) lines.push(`  on a phone on this network: https://${ip}:${port}/${token}`);
    lines.push(`  development certificate (${gw.devTls.created ? 'made now' : 'reused'}), SHA-256 ${gw.devTls.fingerprint}`);
    lines.push('  the browser warns about it once: check the fingerprint, then accept it');
  }
  if (gw.devToken) lines.push(`development source token (source 'dev'): ${gw.devToken}`);
  if (!config.admin.token) lines.push(`admin token (the console, /api/sessions): ${gw.adminToken}`);
  const redirect = config.redirect;
  if (redirect?.leastLoaded) lines.push('note: redirect.leastLoaded is on: POST /whip may be answered 307 to the least-loaded node');
  else if (redirect?.targets?.length) lines.push(`note: redirect mode is on: every POST /whip is answered 307 to ${redirect.targets.join(', ')} (remove "redirect" to take sessions here)`);
  return lines.join('\n');
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
    if (cmd === '--version' || cmd === '-v' || cmd === 'version') process.stdout.write(version() + '\n');
    else if (cmd === 'serve' || cmd === undefined) await serve(rest);
    else if (cmd === 'audit') process.exitCode = await auditCommand(rest);
    else if (cmd === 'token') process.exitCode = tokenCommand(rest);
    else if (cmd === 'stir') process.exitCode = await stirCommand(rest);
    // The demo agent's speech and VAD keep handles of their own: a stopped worker exits.
    else if (cmd === 'worker') process.exit(await workerCommand(rest));
    else {
      const help = cmd === 'help' || cmd === '--help' || cmd === '-h';
      (help ? process.stdout : process.stderr).write(USAGE + '\n');
      process.exitCode = help ? 0 : 2;
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
