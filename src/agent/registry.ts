import type { SourceConfig } from '../core/config.js';
import type { Agent } from './agent.js';
import type { Logger } from '../core/logger.js';
import { SpeechSynthesizer } from '../audio/tts.js';
import { DemoAgent } from './demo-agent.js';
import { EchoAgent } from './echo-agent.js';
import { TwilioStreamAgent, twilioStreamSpecSchema } from './twilio-stream.js';

export type AgentSpec = NonNullable<SourceConfig['agent']>;

/** What the call tells a factory: its caller's codec's own PCM rate. */
export interface AgentHint {
  naturalRate: number;
}

export type AgentFactory = (spec: AgentSpec, hint?: AgentHint) => Agent;

/** Built-in agents by name; a source's `agent` setting picks one. */
export class AgentRegistry {
  readonly #byName = new Map<string, AgentFactory>();
  readonly #byType = new Map<string, AgentFactory>();
  #tts: SpeechSynthesizer | undefined;

  constructor(
    readonly defaultAgent: string,
    log: Logger,
  ) {
    // The echo has no rate of its own: it runs at the caller's codec's, so a phone call (PCMU,
    // 8 kHz) is echoed without resampling and a browser's Opus at 48 kHz as before.
    this.register('echo', (_spec, hint) => new EchoAgent(echoRate(hint?.naturalRate)));
    // `{ "type": "echo", "sampleRate": 16000 }`: an echo at a fixed rate, as a real agent would have.
    this.registerType('echo', (spec, hint) => {
      const rate = typeof spec === 'object' ? spec.sampleRate : undefined;
      if (rate !== undefined && rate !== 8000 && rate !== 16000 && rate !== 24000 && rate !== 48000) throw new Error('sampleRate: 8000, 16000, 24000 or 48000');
      return new EchoAgent(rate ?? echoRate(hint?.naturalRate));
    });
    this.register('demo', () => new DemoAgent((this.#tts ??= new SpeechSynthesizer()), log));
    this.registerType('twilio-stream', (spec) => {
      const parsed = twilioStreamSpecSchema.safeParse(spec);
      if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
      return new TwilioStreamAgent(parsed.data, log);
    });
    // Replaced by the fleet's (cluster/nats/fleet.ts) when `cluster` is configured.
    this.registerType('worker', () => {
      throw new Error("an agent of type 'worker' runs on agent workers over NATS: configure `cluster` (cluster.nats.servers)");
    });
  }

  close(): void {
    this.#tts?.close();
  }

  register(name: string, factory: AgentFactory): void {
    this.#byName.set(name, factory);
  }

  registerType(type: string, factory: AgentFactory): void {
    this.#byType.set(type, factory);
  }

  /** What is wrong with each agent setting (`<where>: <why>`), found by resolving each once: at start-up, not on its first call. */
  problems(specs: [where: string, spec: SourceConfig['agent'] | undefined][]): string[] {
    return specs.flatMap(([where, spec]) => {
      try {
        this.resolve(spec);
        return [];
      } catch (err) {
        return [`${where}: ${(err as Error).message}`];
      }
    });
  }

  resolve(spec: SourceConfig['agent'] | undefined, hint?: AgentHint): Agent {
    const s = spec ?? this.defaultAgent;
    if (typeof s === 'string') {
      const f = this.#byName.get(s);
      if (!f) throw new Error(`unknown agent '${s}' (known: ${[...this.#byName.keys()].join(', ')})`);
      return f(s, hint);
    }
    const type = typeof s.type === 'string' ? s.type : '';
    const f = this.#byType.get(type);
    if (!f) throw new Error(`unknown agent type '${type}' (known: ${[...this.#byType.keys()].join(', ')})`);
    return f(s, hint);
  }
}

function echoRate(rate: number | undefined): 8000 | 16000 | 24000 | 48000 {
  return rate === 8000 || rate === 16000 || rate === 24000 ? rate : 48000;
}
