import type { SourceConfig } from '../core/config.js';
import type { Agent } from './agent.js';
import type { Logger } from '../core/logger.js';
import { SpeechSynthesizer } from '../audio/tts.js';
import { DemoAgent } from './demo-agent.js';
import { EchoAgent } from './echo-agent.js';
import { TwilioStreamAgent, twilioStreamSpecSchema } from './twilio-stream.js';

export type AgentSpec = NonNullable<SourceConfig['agent']>;

export type AgentFactory = (spec: AgentSpec) => Agent;

/** Built-in agents by name; a source's `agent` setting picks one. */
export class AgentRegistry {
  readonly #byName = new Map<string, AgentFactory>();
  readonly #byType = new Map<string, AgentFactory>();
  #tts: SpeechSynthesizer | undefined;

  constructor(
    readonly defaultAgent: string,
    log: Logger,
  ) {
    this.register('echo', () => new EchoAgent(48000));
    this.register('demo', () => new DemoAgent((this.#tts ??= new SpeechSynthesizer()), log));
    this.registerType('twilio-stream', (spec) => {
      const parsed = twilioStreamSpecSchema.safeParse(spec);
      if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
      return new TwilioStreamAgent(parsed.data, log);
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

  resolve(spec: SourceConfig['agent'] | undefined): Agent {
    const s = spec ?? this.defaultAgent;
    if (typeof s === 'string') {
      const f = this.#byName.get(s);
      if (!f) throw new Error(`unknown agent '${s}' (known: ${[...this.#byName.keys()].join(', ')})`);
      return f(s);
    }
    const type = typeof s.type === 'string' ? s.type : '';
    const f = this.#byType.get(type);
    if (!f) throw new Error(`unknown agent type '${type}' (known: ${[...this.#byType.keys()].join(', ')})`);
    return f(s);
  }
}
