import { parseArgs } from 'node:util';
import type { ConnectionOptions } from '@nats-io/transport-node';
import type { Agent } from '../agent/agent.js';
import { DemoAgent } from '../agent/demo-agent.js';
import { EchoAgent } from '../agent/echo-agent.js';
import { runAgentWorker } from '../agent/worker/run-worker.js';
import { AGENT_NAME } from '../agent/worker/protocol.js';
import { SpeechSynthesizer } from '../audio/tts.js';
import { ConfigError, loadConfig } from '../core/config.js';
import { natsOptions } from '../cluster/nats/cluster.js';
import { createLogger, type Logger } from '../core/logger.js';

export const WORKER_USAGE = `usage: voxgate worker --agent demo|echo [--name NAME] [--max-calls N]
                      [--nats URL[,URL...]] [--config FILE] [--prefix P] [--sample-rate HZ]

Runs a built-in agent as a worker of a voxgate fleet: it connects to NATS only, takes the calls
nodes offer for agent NAME (default: the agent's own name) while it has room (default 10 calls),
and on SIGTERM stops taking calls and exits once its calls have ended (a second signal: at once).
NATS: --nats, else the config's cluster.nats (servers, credentials, TLS, prefix), else
nats://127.0.0.1:4222. --sample-rate: the echo's rate (default 16000).`;

function builtIn(name: string, rate: string | undefined, log: Logger): { agent: Agent; close(): void } {
  if (name === 'echo') {
    const r = Number(rate ?? 16000);
    if (r !== 8000 && r !== 16000 && r !== 24000 && r !== 48000) throw new ConfigError([`--sample-rate: 8000, 16000, 24000 or 48000, got '${rate}'`]);
    return { agent: new EchoAgent(r), close: () => undefined };
  }
  if (name === 'demo') {
    const tts = new SpeechSynthesizer();
    return { agent: new DemoAgent(tts, log), close: () => tts.close() };
  }
  throw new ConfigError([`--agent: 'demo' or 'echo' (an agent of your own: call runAgentWorker() from your code), got '${name}'`]);
}

/** `voxgate worker`: resolves with the exit code once the worker has stopped. */
export async function workerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      agent: { type: 'string' },
      name: { type: 'string' },
      'max-calls': { type: 'string' },
      nats: { type: 'string' },
      config: { type: 'string' },
      prefix: { type: 'string' },
      'sample-rate': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help || !values.agent) {
    process.stderr.write(WORKER_USAGE + '\n');
    return values.help ? 0 : 2;
  }
  const name = values.name ?? values.agent;
  if (!AGENT_NAME.test(name)) throw new ConfigError([`--name: letters, digits, - and _ (a NATS subject token), got '${name}'`]);
  const maxCalls = Number(values['max-calls'] ?? 10);
  if (!Number.isInteger(maxCalls) || maxCalls < 1) throw new ConfigError([`--max-calls: a whole number of at least 1, got '${values['max-calls']}'`]);
  const cluster = values.config || process.env.VOXGATE_CONFIG ? loadConfig(values.config ?? process.env.VOXGATE_CONFIG).cluster : undefined;
  let nats: ConnectionOptions = cluster ? natsOptions(cluster) : { servers: ['nats://127.0.0.1:4222'] };
  if (values.nats) nats = { ...nats, servers: values.nats.split(',') };
  const log = createLogger((process.env.VOXGATE_LOG_LEVEL as 'info' | undefined) ?? 'info');
  const { agent, close } = builtIn(values.agent, values['sample-rate'], log);
  let worker;
  try {
    worker = await runAgentWorker({ nats: { ...nats, timeout: 5000 }, name, agent, maxCalls, prefix: values.prefix ?? cluster?.nats.prefix ?? 'voxgate', log });
  } catch (err) {
    close();
    throw new ConfigError([`--nats: cannot connect to ${String(nats.servers)} (${(err as Error).message}); is nats-server running?`]);
  }
  process.stderr.write(`voxgate worker ${worker.id} serving agent '${name}' (${maxCalls} calls at once)\n`);
  await new Promise<void>((resolve) => {
    let signals = 0;
    const stop = (signal: string) => {
      signals++;
      log.info({ signal, calls: worker.calls }, signals === 1 ? 'draining: no more calls; exiting once these end' : 'stopping now');
      const stopped = signals === 1 ? worker.drain().then(() => worker.close()) : worker.close();
      stopped.catch((err: unknown) => log.error({ err }, 'the worker did not stop cleanly')).finally(resolve);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  close();
  return 0;
}
