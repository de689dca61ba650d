import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Clock, createLimiter, systemClock } from '@dso/async';
import {
  COMMAND_PROVIDER_TYPE,
  type DsoConfig,
  DsoError,
  type Logger,
  type ProviderConfig,
} from '@dso/core';
import { allowedEnvironment } from '@dso/provider-env';
import {
  type CallOptions,
  createProcessProvider,
  createProvider,
  inspectProviderPackage,
  loadProviderModule,
  ProviderError,
  type ProviderLogger,
  readProviderCommand,
  resolveProviderModule,
  type SecretProvider,
  sdkProblem,
} from '@dso/provider-sdk';

/** The package behind each built-in provider type; they ship with the agent. */
export const BUILTIN_PROVIDER_PACKAGES: Readonly<Record<string, string>> = Object.freeze({
  local: '@dso/provider-local',
  env: '@dso/provider-env',
  file: '@dso/provider-file',
  vault: '@dso/provider-vault',
  aws: '@dso/provider-aws',
  azure: '@dso/provider-azure',
});

/**
 * Environment variables each built-in type reads, passed to its process on top of `PATH`,
 * `HOME` and the entry's own `env` list. Nothing else of the agent's environment reaches a
 * provider.
 */
const BUILTIN_ENV: Readonly<Record<string, readonly string[]>> = Object.freeze({
  local: ['DSO_HOME', 'DSO_VAULT_*'],
  env: [],
  file: [],
  vault: ['VAULT_*'],
  aws: ['AWS_*'],
  azure: ['AZURE_*', 'IDENTITY_*', 'MSI_*'],
});

/** Options of {@link startProviders}. */
export interface StartProvidersOptions {
  /** The agent's environment, filtered per provider. */
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** Where the built-in packages resolve from. @default this file's folder */
  builtinFrom?: string;
  /** Node arguments for provider processes (tests run TypeScript sources: tsx). @default [] */
  execArgv?: string[];
  /**
   * Extra package.json export conditions a provider module resolves with (tests load the
   * built-ins' TypeScript sources: `@dso/source`). @default []
   */
  conditions?: readonly string[];
}

/**
 * Starts one provider per configured name: a built-in type from the agent's own packages, any
 * other type as a package installed in `pluginsDir`. Where it runs is {@link providerMode}: a
 * built-in in the agent's process (`mode: inline`, its default: trusted code shipped with the
 * agent, ~50 MB less than a process of its own), anything else in its own (`mode: process`:
 * JSON-RPC over stdio through the SDK's runner); `mode` in dso.yaml overrides either.
 * `type: command`, or a package whose package.json names a `dso.command`, always runs that
 * child (any language speaking the SDK's PROTOCOL.md) under the same host.
 * Each provider sees only the environment variables it needs (in process too: the SDK hands a
 * provider its `env`, and the built-ins read nothing else). A provider that fails to start
 * stops the agent with a clear error: serving from a half-configured set of stores would fail
 * later and less clearly.
 *
 * @throws DsoError DSO_AGENT_PROVIDER_NOT_INSTALLED when a third-party package is not in pluginsDir
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG for a bad configuration or an SDK API version
 *   this agent does not support
 */
export async function startProviders(
  config: Pick<DsoConfig, 'providers' | 'pluginsDir'>,
  options: StartProvidersOptions,
): Promise<Map<string, SecretProvider>> {
  const providers = new Map<string, SecretProvider>();
  try {
    for (const [name, entry] of Object.entries(config.providers)) {
      providers.set(name, await startProvider(name, entry, config.pluginsDir, options));
    }
    return providers;
  } catch (error) {
    // Leave no process behind: the agent exits with the error.
    await Promise.all([...providers.values()].map((provider) => provider.close().catch(() => {})));
    throw error;
  }
}

async function startProvider(
  name: string,
  entry: ProviderConfig,
  pluginsDir: string,
  options: StartProvidersOptions,
): Promise<SecretProvider> {
  const env = providerEnv(entry, options.env);
  const log = options.logger.child({ provider: name });
  // What the child runs: a command (dso.yaml's, or a provider package's `dso.command`), else
  // the SDK's runner hosting the package's module. One host either way: same deadlines,
  // restarts, breaker and environment.
  const target = childTarget(name, entry, pluginsDir, options);
  const mode = providerMode(entry);
  if ('command' in target && entry.mode === 'inline') {
    throw new DsoError(
      'DSO_AGENT_PROVIDER_INVALID',
      `provider "${name}" runs a command (${entry.type}), which cannot be loaded into the agent's process: remove mode: inline`,
      { provider: name },
    );
  }
  if ('moduleUrl' in target && mode === 'inline') {
    const { moduleUrl } = target;
    // The SDK's loader: the same resolution as the runner's, the definition and SDK API
    // version checked, then the in-process contract with its deadline and in-flight limit.
    const definition = await loadProviderModule(moduleUrl);
    const provider = await createProvider(definition, entry.config, {
      name,
      env,
      log: providerLogger(log),
    });
    const limited = limitProvider(provider, {
      maxInFlight: entry.maxInFlight,
      timeoutMs: entry.timeoutMs,
    });
    return withMode(limited, 'inline');
  }
  const provider = await createProcessProvider({
    name,
    ...('command' in target
      ? {
          command: target.command,
          ...(target.cwd === undefined ? {} : { resolveFrom: target.cwd }),
        }
      : {
          module: fileURLToPath(target.moduleUrl),
          ...(options.execArgv === undefined ? {} : { execArgv: options.execArgv }),
        }),
    config: entry.config,
    env,
    callTimeoutMs: entry.timeoutMs,
    failureThreshold: entry.failureThreshold,
    restart: { baseDelayMs: Math.min(500, entry.circuitOpenMs), maxDelayMs: entry.circuitOpenMs },
    maxMessageBytes: entry.maxMessageBytes,
    onLog: ({ level, message, fields, source }) => {
      // The logger redacts every line; the child's own fields stay under `child`, so they
      // cannot overwrite the agent's (`provider`, `level`).
      log[level]({ source, ...(fields === undefined ? {} : { child: fields }) }, message);
    },
  });
  // The host times each call it sends; the limit keeps a burst from reaching the backend at
  // once, and bounds the wait for a turn by the same timeoutMs, so a provider that stops
  // answering fails its own calls in bounded time instead of queueing them for ever.
  return withMode(
    limitProvider(provider, { maxInFlight: entry.maxInFlight, maxWaitMs: entry.timeoutMs }),
    'process',
  );
}

/**
 * Where a provider runs: its `mode` when dso.yaml sets one, else `inline` for a built-in type
 * (trusted code that ships with the agent: a process of its own would cost ~50 MB of RSS for no
 * isolation the agent needs from its own code) and `process` for everything else (third-party
 * packages and `type: command` are code the agent's authors never saw).
 */
export function providerMode(entry: Pick<ProviderConfig, 'type' | 'mode'>): 'inline' | 'process' {
  if (entry.mode !== undefined) return entry.mode;
  return Object.hasOwn(BUILTIN_PROVIDER_PACKAGES, entry.type) ? 'inline' : 'process';
}

/**
 * The provider with `mode` first in its `state()` (what `dso status` shows per provider): a
 * process provider's own state (status, breaker, pid, restarts) follows it.
 */
function withMode(provider: SecretProvider, mode: 'inline' | 'process'): SecretProvider {
  const inner = (provider as { state?: () => Record<string, unknown> }).state;
  return Object.assign(provider, {
    state: () => ({ mode, ...(typeof inner === 'function' ? inner.call(provider) : {}) }),
  });
}

/**
 * What a provider's process runs: `type: command` runs its `command` (in the agent's working
 * directory); a provider package whose package.json has `dso.command` runs that in its folder;
 * any other type is a module (a file: URL) for the SDK's runner or an inline load.
 */
function childTarget(
  name: string,
  entry: ProviderConfig,
  pluginsDir: string,
  options: StartProvidersOptions,
): { command: string[]; cwd?: string } | { moduleUrl: string } {
  if (entry.type === COMMAND_PROVIDER_TYPE) {
    // The schema requires command with this type; checked again for a config built in code.
    if (entry.command === undefined) {
      throw new DsoError(
        'DSO_AGENT_PROVIDER_INVALID',
        `provider "${name}" has type command but no command: add command: [<program>, <args>...]`,
        { provider: name },
      );
    }
    return { command: [...entry.command] };
  }
  const builtin = BUILTIN_PROVIDER_PACKAGES[entry.type];
  if (builtin === undefined) {
    // Only pluginsDir's own node_modules, where `dso plugin install` puts packages and `dso
    // plugin list` looks: not a node_modules folder above it, which the operator did not
    // choose and the plugin commands do not show.
    const packageDir = join(pluginsDir, 'node_modules', entry.type);
    if (!existsSync(join(packageDir, 'package.json'))) {
      throw notInstalled(name, entry.type, pluginsDir);
    }
    const packaged = readProviderCommand(packageDir);
    if (packaged !== undefined) return packaged;
    checkPluginSdk(name, packageDir);
  }
  const from = builtin === undefined ? pluginsDir : (options.builtinFrom ?? import.meta.dirname);
  return {
    moduleUrl: resolveModule(
      name,
      builtin ?? entry.type,
      from,
      builtin === undefined,
      options.conditions,
    ),
  };
}

/**
 * The module a provider type loads from, as a file: URL: a package name resolved from `from`
 * (the agent's own folder for built-ins, `pluginsDir` for the rest), with the SDK's resolver
 * (the runner uses the same one).
 */
function resolveModule(
  name: string,
  packageName: string,
  from: string,
  plugin: boolean,
  conditions: readonly string[] = [],
): string {
  if (plugin && !existsSync(from)) throw notInstalled(name, packageName, from);
  try {
    return resolveProviderModule(packageName, from, conditions);
  } catch (error) {
    if (plugin) throw notInstalled(name, packageName, from, error);
    throw new DsoError(
      'DSO_AGENT_PROVIDER_INVALID',
      `provider "${name}": the built-in package ${packageName} cannot be loaded: reinstall the agent`,
      { provider: name, cause: error },
    );
  }
}

function notInstalled(name: string, packageName: string, dir: string, cause?: unknown): DsoError {
  return new DsoError(
    'DSO_AGENT_PROVIDER_NOT_INSTALLED',
    `provider "${name}" has type ${packageName}, which is neither built in nor installed in ${join(dir, 'node_modules')}: ` +
      `install the package there with \`dso plugin install <its .tgz, its folder, or ${packageName} from your npm registry>\` ` +
      `(it installs into pluginsDir of dso.yaml, ${dir}); \`dso plugin list\` shows what is installed`,
    { provider: name, ...(cause === undefined ? {} : { cause }) },
  );
}

/**
 * A plugin gets the agent's own @dso/provider-sdk (its peer dependency, supplied by the SDK's
 * loader): one whose range this SDK is not in would fail later and less clearly, so it stops
 * the agent now with both versions. A package that names no SDK (a command provider, or one
 * that bundles its own copy) is left to the SDK API version check of the loader.
 *
 * @throws DsoError DSO_AGENT_PROVIDER_SDK_MISMATCH
 */
function checkPluginSdk(name: string, packageDir: string): void {
  let manifest: unknown;
  try {
    manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
  } catch {
    // readProviderCommand has just read it; one that cannot be read now fails its load.
    return;
  }
  const info = inspectProviderPackage(manifest);
  const problem = sdkProblem(info);
  if (problem === undefined || info.sdk === 'missing') return;
  throw new DsoError('DSO_AGENT_PROVIDER_SDK_MISMATCH', `provider "${name}": ${problem}`, {
    provider: name,
  });
}

/** {@link limitProvider}'s bounds. */
export interface ProviderLimits {
  /** Calls reaching the provider at once; the others wait their turn, in order. */
  maxInFlight: number;
  /** A deadline for each call, its wait included (in process, where no host keeps one). */
  timeoutMs?: number;
  /**
   * The longest wait for a turn (a provider in its own process, whose host times each call
   * that reached it): a call that gets none ends with DSO_PROVIDER_TIMEOUT.
   */
  maxWaitMs?: number;
  /** Where the deadlines are timed. @default systemClock */
  clock?: Clock;
}

/**
 * At most `maxInFlight` calls reach the provider at once; the others wait in order. With
 * `timeoutMs` (in process, where no host keeps a deadline) every call, its wait included, ends
 * with DSO_PROVIDER_TIMEOUT at that deadline; with `maxWaitMs` a wait for a turn does. So a
 * provider that stops answering costs only the calls made to it, each for a bounded time.
 */
export function limitProvider(provider: SecretProvider, limits: ProviderLimits): SecretProvider {
  const limiter = createLimiter(limits.maxInFlight);
  const clock = limits.clock ?? systemClock;
  async function run<T>(
    options: CallOptions | undefined,
    call: (options: CallOptions) => Promise<T>,
  ): Promise<T> {
    const deadline =
      limits.timeoutMs === undefined ? undefined : startDeadline(clock, limits.timeoutMs);
    const turn =
      limits.maxWaitMs === undefined ? undefined : startDeadline(clock, limits.maxWaitMs);
    const present = [options?.signal, deadline?.signal].filter(
      (signal): signal is AbortSignal => signal !== undefined,
    );
    const signal = present.length === 0 ? undefined : AbortSignal.any(present);
    const waitSignal = turn === undefined ? signal : AbortSignal.any([...present, turn.signal]);
    let started = false;
    try {
      return await limiter.run(
        () => {
          started = true;
          turn?.clear();
          return call(signal === undefined ? {} : { signal });
        },
        { signal: waitSignal },
      );
    } catch (error) {
      if (!started && turn?.signal.aborted && !signal?.aborted) {
        throw noTurn(provider.name, error, limits.maxInFlight, limits.maxWaitMs!);
      }
      // Gave up waiting for a turn (either signal), or the deadline cut the call short.
      if (!started || (signal?.aborted && !options?.signal?.aborted))
        throw timeoutOrAbort(provider.name, error, limits.timeoutMs);
      throw error;
    } finally {
      deadline?.clear();
      turn?.clear();
    }
  }
  const limited: SecretProvider = {
    name: provider.name,
    capabilities: provider.capabilities,
    resolve: (request, options) => run(options, (call) => provider.resolve(request, call)),
    close: () => provider.close(),
  };
  if (provider.list) {
    const list = provider.list.bind(provider);
    limited.list = (prefix, options) => run(options, (call) => list(prefix, call));
  }
  if (provider.probe) {
    const probe = provider.probe.bind(provider);
    limited.probe = (request, options) => run(options, (call) => probe(request, call));
  }
  if (provider.health) {
    const health = provider.health.bind(provider);
    limited.health = (options) => run(options, (call) => health(call));
  }
  if (provider.watch) limited.watch = provider.watch.bind(provider);
  const state = (provider as { state?: () => unknown }).state;
  if (typeof state === 'function') Object.assign(limited, { state: state.bind(provider) });
  return limited;
}

/**
 * A signal that aborts `ms` from now on `clock`, with the reason `AbortSignal.timeout()` gives
 * (a `TimeoutError`); `clear()` stops its timer once the call is over.
 */
function startDeadline(clock: Clock, ms: number): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const timer = clock.setTimeout(() => {
    controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
  }, ms);
  // Like AbortSignal.timeout(): a deadline does not keep the process alive.
  (timer as { unref?: () => void }).unref?.();
  return { signal: controller.signal, clear: () => clock.clearTimeout(timer) };
}

function noTurn(name: string, cause: unknown, maxInFlight: number, maxWaitMs: number) {
  return new ProviderError(
    'DSO_PROVIDER_TIMEOUT',
    `provider ${name} had no free call within ${maxWaitMs} ms (timeoutMs): its ${maxInFlight} ` +
      'calls at once (maxInFlight) were all still waiting for an answer; a store that is slow ' +
      `under load may need a larger providers.${name}.maxInFlight`,
    { provider: name, cause },
  );
}

function timeoutOrAbort(
  name: string,
  cause: unknown,
  timeoutMs: number | undefined,
): ProviderError {
  return new ProviderError(
    'DSO_PROVIDER_TIMEOUT',
    timeoutMs === undefined
      ? `provider ${name} call was aborted`
      : `provider ${name} did not answer within ${timeoutMs} ms (timeoutMs)`,
    { provider: name, cause },
  );
}

/**
 * `PATH`, `HOME`, what the built-in type reads, and what the operator listed: nothing more.
 * Operator patterns (`entry.env`, the env provider's `allow`) follow the env provider's rule:
 * a prefix never matches DSO's own or the cloud providers' credential variables; only an exact
 * name does.
 */
export function providerEnv(
  entry: Pick<ProviderConfig, 'type' | 'env' | 'config'>,
  env: NodeJS.ProcessEnv,
): Record<string, string> {
  const builtin = ['PATH', 'HOME', ...(BUILTIN_ENV[entry.type] ?? [])];
  const picked: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && builtin.some((pattern) => matches(pattern, key)))
      picked[key] = value;
  }
  const listed = [...entry.env];
  if (entry.type === 'env' && Array.isArray(entry.config.allow)) {
    for (const name of entry.config.allow) if (typeof name === 'string') listed.push(name);
  }
  if (listed.length > 0) Object.assign(picked, allowedEnvironment(listed, env));
  return picked;
}

function matches(pattern: string, name: string): boolean {
  return pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

function providerLogger(log: Logger): ProviderLogger {
  return {
    debug: (message, fields) => log.debug(fields ?? {}, message),
    info: (message, fields) => log.info(fields ?? {}, message),
    warn: (message, fields) => log.warn(fields ?? {}, message),
    error: (message, fields) => log.error(fields ?? {}, message),
  };
}
