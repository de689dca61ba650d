/**
 * @dso/agent: the DSO daemon, as a library for custom wiring. The `dso-agent` bin wires it from
 * the environment; embed it to choose your own runtime, providers and logger.
 *
 * @example
 * import { createAgent } from '@dso/agent';
 * import { createLogger, createRedactor } from '@dso/core';
 * import { createDockerRuntime } from '@dso/docker-runtime';
 *
 * const redactor = createRedactor();
 * const agent = createAgent({
 *   runtime: await createDockerRuntime(),
 *   providers: new Map([['local', myProvider]]),
 *   logger: createLogger({ redactor }),
 *   redactor,
 * });
 * await agent.start();
 */
export {
  type Agent,
  type AgentEvent,
  type AgentOptions,
  type AgentStatus,
  type ContainerStatus,
  createAgent,
  DEFAULT_CONCURRENCY,
  DEFAULT_MAX_RECONNECTS,
  DEFAULT_RECONNECT_MAX_DELAY_MS,
  DEFAULT_SHUTDOWN_GRACE_MS,
  type DeliveredFile,
  type DeliveryTrigger,
  type ResolvedEnvironmentValue,
  type RotationOptions,
} from './agent.js';
export {
  type ChangeDetector,
  type ChangeDetectorOptions,
  createChangeDetector,
  type DetectedChange,
} from './change-detector.js';
export { runAgentMain } from './run.js';
