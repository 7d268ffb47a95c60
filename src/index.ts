/**
 * The package's API: embed the gateway, write an agent, or run one as a worker of a fleet.
 * `import { Gateway, runAgentWorker } from 'voxgate'`.
 */
export { Gateway, type GatewayOptions } from './gateway.js';
export { parseConfig, loadConfig, ConfigError, type Config } from './core/config.js';
export { AgentSession, TransferError } from './agent/agent.js';
export type { Agent, AgentSampleRate, AgentSessionEvents, CallDetails, DialRequest, DialedCall, TransferOptions, TransferTarget } from './agent/agent.js';
export type { AudioFrame } from './audio/frame.js';
export type { MarkResult } from './audio/pacer.js';
export { EchoAgent } from './agent/echo-agent.js';
export { runAgentWorker, type AgentWorker, type AgentWorkerOptions } from './agent/worker/run-worker.js';
