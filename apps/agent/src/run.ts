import {
  createLogger,
  createRedactor,
  DEFAULT_LOG_LEVEL,
  errorCode,
  type Logger,
  resolveDsoPaths,
} from '@dso/core';
import { createDockerRuntime } from '@dso/docker-runtime';
import { createLocalProvider, resolveVaultKey } from '@dso/provider-local';
import { createAgent, DEFAULT_SHUTDOWN_GRACE_MS } from './agent.js';

const USAGE = `Usage: dso-agent

Runs the DSO agent in the foreground: watches the local Docker Engine and writes the secrets
named by a container's dso.file.* labels into its tmpfs. Stops cleanly on SIGTERM or SIGINT.

Environment:
  DOCKER_HOST            engine address (default unix:///var/run/docker.sock)
  DSO_HOME               state folder (default /var/lib/dso as root, ~/.local/share/dso otherwise)
  DSO_VAULT_PATH         local vault file (default $DSO_HOME/vault.dso)
  DSO_VAULT_PASSPHRASE   vault passphrase, or
  DSO_VAULT_KEY_FILE     vault key file (default $DSO_HOME/vault.key)
  DSO_LOG_LEVEL          trace|debug|info|warn|error|fatal (default info)
  DSO_SHUTDOWN_GRACE_MS  how long SIGTERM waits for deliveries in flight (default ${DEFAULT_SHUTDOWN_GRACE_MS})
`;

/**
 * The agent's entry point: builds every long-lived object from the environment, runs the agent
 * until SIGTERM/SIGINT, closes everything in reverse order, and returns the exit code.
 */
export async function runAgentMain(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (argv.length > 0) {
    process.stderr.write(`dso-agent: unknown argument ${JSON.stringify(argv[0])}\n\n${USAGE}`);
    return 2;
  }

  const redactor = createRedactor();
  let logger: Logger;
  try {
    logger = createLogger({
      level: env.DSO_LOG_LEVEL ?? DEFAULT_LOG_LEVEL,
      redactor,
      name: 'dso-agent',
    });
  } catch (error) {
    process.stderr.write(`dso-agent: ${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  }
  const fail = (error: unknown): number => {
    logger.fatal({ err: error, code: errorCode(error) }, 'agent stopped');
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`dso-agent: ${redactor.redact(message)}\n`);
    return 1;
  };

  const graceMs = Number(env.DSO_SHUTDOWN_GRACE_MS ?? DEFAULT_SHUTDOWN_GRACE_MS);
  if (!Number.isSafeInteger(graceMs) || graceMs < 0) {
    process.stderr.write(
      `dso-agent: DSO_SHUTDOWN_GRACE_MS must be a whole number of milliseconds, e.g. ${DEFAULT_SHUTDOWN_GRACE_MS}\n`,
    );
    return 2;
  }

  const paths = resolveDsoPaths(env);
  const stopping = new AbortController();
  // `on`, not `once`: a second signal (a terminal's Ctrl-C reaches every process in the group,
  // and wrappers forward it too) must not fall back to the default handler and kill the agent
  // in the middle of its graceful stop.
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping.signal.aborted) {
      logger.info({ signal }, 'signal received, already stopping');
      return;
    }
    logger.info({ signal }, 'signal received');
    stopping.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  const closers: Array<() => Promise<void>> = [];
  try {
    const key = await resolveVaultKey({ env, defaultKeyFile: paths.defaultKeyFile });
    const provider = createLocalProvider({ name: 'local', vaultPath: paths.vaultPath, key });
    closers.push(() => provider.close());
    const runtime = await createDockerRuntime({ signal: stopping.signal });
    closers.push(() => runtime.close());
    logger.info(
      { engine: runtime.engineVersion, api: runtime.apiVersion, vault: paths.vaultPath },
      'agent starting',
    );

    const agent = createAgent({
      runtime,
      providers: new Map([[provider.name, provider]]),
      logger,
      redactor,
      shutdownGraceMs: graceMs,
    });
    closers.push(() => agent.close());
    stopping.signal.addEventListener('abort', () => void agent.close(), { once: true });
    if (stopping.signal.aborted) return 0;
    await agent.start();
    logger.info('agent ready');
    await agent.done;
    logger.info('agent stopped');
    return 0;
  } catch (error) {
    // Stopped during start-up: the abort surfaces as DSO_DOCKER_ABORTED or similar; that is a
    // clean stop, not a failure.
    if (stopping.signal.aborted) {
      logger.info('agent stopped');
      return 0;
    }
    return fail(error);
  } finally {
    // Reverse start order: the agent, then the engine connection, then the provider.
    for (const close of closers.reverse()) {
      await close().catch((error: unknown) => logger.warn({ err: error }, 'close failed'));
    }
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
    logger.flush();
  }
}
