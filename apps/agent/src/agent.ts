import {
  DsoError,
  errorCode,
  formatReference,
  LABELS,
  type Logger,
  type ManagedSpec,
  parseManagedLabels,
  type Redactor,
} from '@dso/core';
import type { ContainerEvent, DockerRuntime, SecretFile } from '@dso/docker-runtime';
import { type SecretProvider, selectField } from '@dso/provider-sdk';
import { createWorkQueue } from './work-queue.js';

/** How many containers the agent delivers to at once. @default 4 */
export const DEFAULT_CONCURRENCY = 4;
/** How long SIGTERM waits for deliveries in flight. @default 10_000 */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/** Consecutive failed reconnects of the events stream before the agent gives up (the seed's figure). @default 100 */
export const DEFAULT_MAX_RECONNECTS = 100;
/** Cap of the reconnect backoff. @default 30_000 */
export const DEFAULT_RECONNECT_MAX_DELAY_MS = 30_000;
/** How long close() waits for cancelled deliveries to unwind after the grace period. */
const CANCEL_WAIT_MS = 2_000;

/** What the agent is built from: long-lived objects the owner constructs and closes. */
export interface AgentOptions {
  runtime: DockerRuntime;
  /** Providers by name; a reference without a provider uses `defaultProvider`. */
  providers: ReadonlyMap<string, SecretProvider>;
  /** @default 'local' */
  defaultProvider?: string;
  logger: Logger;
  /** Every resolved value is registered here before anything could log it. */
  redactor: Redactor;
  /** @default DEFAULT_CONCURRENCY */
  concurrency?: number;
  /** @default DEFAULT_SHUTDOWN_GRACE_MS */
  shutdownGraceMs?: number;
  /** @default DEFAULT_MAX_RECONNECTS */
  maxReconnects?: number;
  /** @default 500 */
  reconnectBaseDelayMs?: number;
  /** @default DEFAULT_RECONNECT_MAX_DELAY_MS */
  reconnectMaxDelayMs?: number;
}

/** A running agent: start it once, await `done`, close it on shutdown. */
export interface Agent extends AsyncDisposable {
  /**
   * Starts watching the engine, then delivers to every managed container already running.
   * Resolves once both are under way; `done` settles when the agent stops.
   */
  start(): Promise<void>;
  /** Settles when the agent stops: resolves after close(), rejects when the events stream cannot be restored. */
  readonly done: Promise<void>;
  /** Resolves when no delivery waits or runs (for tests and tools). */
  idle(): Promise<void>;
  /** Stops taking work, waits up to the grace period for deliveries in flight, then returns. */
  close(): Promise<void>;
}

/**
 * The agent: watches the engine's container events and, for every running container that
 * carries `dso.enable=true` and `dso.file.*` labels, writes those secrets as files into the
 * container's tmpfs through the runtime's atomic injection.
 *
 * @example
 * const agent = createAgent({ runtime, providers: new Map([['local', provider]]), logger, redactor });
 * await agent.start();
 * process.on('SIGTERM', () => agent.close());
 * await agent.done;
 */
export function createAgent(options: AgentOptions): Agent {
  const { runtime, providers, logger, redactor } = options;
  const defaultProvider = options.defaultProvider ?? 'local';
  const graceMs = options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
  const maxReconnects = options.maxReconnects ?? DEFAULT_MAX_RECONNECTS;
  const baseDelayMs = options.reconnectBaseDelayMs ?? 500;
  const maxDelayMs = options.reconnectMaxDelayMs ?? DEFAULT_RECONNECT_MAX_DELAY_MS;
  const stopping = new AbortController();

  const queue = createWorkQueue({
    concurrency: options.concurrency ?? DEFAULT_CONCURRENCY,
    worker: (containerId) => deliver(containerId),
  });

  async function deliver(containerId: string): Promise<void> {
    const signal = stopping.signal;
    const started = performance.now();
    const log = logger.child({ containerId: containerId.slice(0, 12) });
    let spec: ManagedSpec | undefined;
    try {
      const details = await runtime.inspectContainer(containerId, { signal });
      if (!details.running) return;
      spec = parseManagedLabels(details.labels);
      if (!spec || spec.files.length === 0) return;
      const files = await resolveFiles(spec, signal);
      try {
        const result = await runtime.writeFiles(containerId, {
          target: spec.target,
          files,
          mode: spec.mode,
          owner: spec.owner,
          signal,
        });
        log.info(
          {
            files: result.files,
            bytes: result.bytes,
            durationMs: Math.round(performance.now() - started),
          },
          'secrets delivered',
        );
      } finally {
        for (const file of files) file.content.fill(0);
      }
    } catch (error) {
      if (signal.aborted) return;
      log.warn(
        {
          err: error,
          code: errorCode(error),
          // The provider's own code (not found, unauthorized, …) under the agent's wrapper.
          causeCode: errorCode((error as { cause?: unknown }).cause),
          target: spec?.target,
        },
        'secrets not delivered',
      );
    }
  }

  async function resolveFiles(spec: ManagedSpec, signal: AbortSignal): Promise<SecretFile[]> {
    const files: SecretFile[] = [];
    try {
      for (const { name, reference } of spec.files) {
        const providerName = reference.provider ?? defaultProvider;
        const provider = providers.get(providerName);
        if (!provider) {
          throw new DsoError(
            'DSO_AGENT_PROVIDER_UNKNOWN',
            `${formatReference(reference)} names provider "${providerName}", which is not configured (configured: ${[...providers.keys()].join(', ')})`,
            { reference: formatReference(reference) },
          );
        }
        let resolved: Awaited<ReturnType<SecretProvider['resolve']>>;
        try {
          resolved = await provider.resolve(
            { path: reference.path, ...(reference.version ? { version: reference.version } : {}) },
            { signal },
          );
        } catch (error) {
          throw new DsoError(
            'DSO_AGENT_RESOLVE_FAILED',
            `could not resolve ${formatReference(reference)}`,
            {
              cause: error,
              reference: formatReference(reference),
            },
          );
        }
        const value = reference.field
          ? selectField(resolved.value, reference.field, reference.path)
          : resolved.value;
        // Registered before the value goes anywhere, so no later log line can carry it.
        redactor.register(value.reveal());
        files.push({ name, content: Buffer.from(value.reveal()) });
        value.dispose();
        if (value !== resolved.value) resolved.value.dispose();
      }
      return files;
    } catch (error) {
      for (const file of files) file.content.fill(0);
      throw error;
    }
  }

  async function enqueueRunningManaged(signal: AbortSignal): Promise<void> {
    const containers = await runtime.listContainers({ label: `${LABELS.enable}=true`, signal });
    logger.info({ containers: containers.length }, 'managed containers found');
    for (const container of containers) queue.add(container.id);
  }

  function onEvent(event: ContainerEvent): void {
    if (event.type !== 'container.started') return;
    if (event.labels[LABELS.enable] !== 'true') return;
    queue.add(event.id);
  }

  // Watches events until stopped. When the stream breaks it reconnects with capped, jittered
  // backoff, resumes from the last event seen, and re-lists every managed container, since
  // anything that started during the gap may not be in the replay.
  async function watch(firstSinceMs: number): Promise<void> {
    let sinceMs = firstSinceMs;
    let failures = 0;
    const signal = stopping.signal;
    while (!signal.aborted) {
      try {
        const onConnected = () => {
          // A stream the engine accepted is a success, even if it later breaks on a quiet host.
          failures = 0;
        };
        for await (const event of runtime.events({ since: sinceMs, signal, onConnected })) {
          sinceMs = Math.max(sinceMs, event.at);
          onEvent(event);
        }
        if (signal.aborted) return;
        throw new DsoError('DSO_AGENT_EVENTS_ENDED', 'the engine closed the events stream');
      } catch (error) {
        if (signal.aborted) return;
        failures += 1;
        if (failures > maxReconnects) {
          throw new DsoError(
            'DSO_AGENT_ENGINE_LOST',
            `the engine's events stream failed ${failures} times in a row; exiting so the supervisor restarts the agent`,
            { cause: error },
          );
        }
        const delayMs =
          Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(failures - 1, 16)) *
          (0.5 + Math.random() / 2);
        logger.warn(
          { err: error, code: errorCode(error), attempt: failures, delayMs: Math.round(delayMs) },
          'events stream lost, reconnecting',
        );
        await sleep(delayMs, signal);
        if (signal.aborted) return;
        try {
          await enqueueRunningManaged(signal);
        } catch (listError) {
          logger.warn(
            { err: listError, code: errorCode(listError) },
            'could not list managed containers',
          );
        }
      }
    }
  }

  let done: Promise<void> = Promise.resolve();
  let started = false;
  let closing: Promise<void> | undefined;

  async function shutdown(): Promise<void> {
    logger.info({ graceMs, inFlight: queue.inFlight, waiting: queue.depth }, 'agent stopping');
    await queue.close(graceMs);
    // Past the grace period: cancel what still runs, and wait (briefly) for it to unwind, so
    // nothing runs on after the owner closes the runtime and the providers.
    stopping.abort();
    await Promise.race([queue.idle(), sleep(CANCEL_WAIT_MS, new AbortController().signal)]);
    await done.catch(() => {
      // Already reported through `done` to whoever awaits it.
    });
  }

  const agent: Agent = {
    async start() {
      if (started) throw new TypeError('agent already started');
      started = true;
      // Subscribe before listing, from a moment before it, so a container that starts between
      // the two is seen by one or the other (twice is harmless: delivery is idempotent).
      const sinceMs = Date.now() - 1_000;
      done = watch(sinceMs);
      done.catch(() => {
        // The owner awaits `done`; this only keeps the rejection from being reported as unhandled
        // before it does.
      });
      await enqueueRunningManaged(stopping.signal);
    },
    get done() {
      return done;
    },
    idle: () => queue.idle(),
    close() {
      closing ??= shutdown();
      return closing;
    },
    [Symbol.asyncDispose]() {
      return agent.close();
    },
  };
  return agent;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
