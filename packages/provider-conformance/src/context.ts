import { inspect } from 'node:util';
import {
  createProcessProvider,
  createProvider,
  isProviderError,
  type ProviderCapabilities,
  type ProviderDefinition,
  type ProviderLogger,
  type SecretProvider,
} from '@dso/provider-sdk';
import {
  ConformanceError,
  check,
  describeError,
  findNeedle,
  leakNeedles,
  randomId,
  serialiseError,
  toBytes,
} from './assertions.js';
import type {
  CommandConformanceOptions,
  ConformanceFixture,
  ModuleConformanceOptions,
} from './fixture.js';

/** The two halves of the suite. */
export type ConformanceMode = 'in-process' | 'process';

/** The `describe` titles of the two halves. */
export const MODE_TITLES: Readonly<Record<ConformanceMode, string>> = Object.freeze({
  'in-process': 'in process',
  process: 'across the process boundary',
});

/** Node arguments that let the child import TypeScript sources unbuilt. */
export const DEFAULT_EXEC_ARGV: readonly string[] = Object.freeze([
  '--conditions=@dso/source',
  '--import',
  'tsx',
]);

/**
 * The deadline the suite gives each call across the process boundary: short enough that a
 * hung call fails its test with a TIMEOUT instead of the test's own timeout, long enough for a
 * fake that answers slowly on a loaded machine.
 */
export const CONFORMANCE_CALL_TIMEOUT_MS = 5_000;

/** One line a provider (or the host, or the child's stderr) logged during the suite. */
export interface ConformanceLogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  fields?: Record<string, unknown>;
  source: 'provider' | 'stderr' | 'host';
}

/** What a check may change when it opens its own provider. */
export interface OpenOptions {
  /** Another configuration (the invalid ones). @default the fixture's */
  config?: unknown;
  /** The host's largest message, across the process boundary only. @default the host's */
  maxMessageBytes?: number;
}

/** What an opener gets: everything needed to create one provider in one mode. */
export interface OpenRequest {
  name: string;
  config: unknown;
  env: Record<string, string>;
  log: (line: ConformanceLogLine) => void;
  maxMessageBytes?: number;
}

/** Creates a live provider: in process, across the process boundary, or (in self-tests) raw. */
export type ProviderOpener = (request: OpenRequest) => Promise<SecretProvider>;

/**
 * What each check works with: the fixture, fresh or shared providers in the current mode,
 * unique paths, and a record of every value it stored and every error it saw, so the suite
 * can prove afterwards that no value leaked into an error or a log line.
 */
export interface ConformanceContext {
  readonly mode: ConformanceMode;
  /** The name providers are configured under; their errors should carry it. */
  readonly name: string;
  /** The definition under test; undefined for a child run from a command (any language). */
  readonly definition: ProviderDefinition<unknown> | undefined;
  readonly capabilities: ProviderCapabilities;
  readonly fixture: ConformanceFixture;
  /** Every log line collected in this half so far. */
  readonly logs: readonly ConformanceLogLine[];
  /** A path unique to this check: `dso-conformance/<run>/<check>/<segments>`. */
  path(...segments: string[]): string;
  /** Stores a value through the fixture, remembering it as a secret that must never leak. */
  put(path: string, value: Uint8Array | string): Promise<string>;
  /** A fresh provider, closed when the check ends. */
  open(options?: OpenOptions): Promise<SecretProvider>;
  /** The provider shared by the checks that need no fresh one. */
  shared(): Promise<SecretProvider>;
  /** Awaits `promise`, which must reject; records and returns the error. */
  rejection(promise: Promise<unknown>, what: string): Promise<unknown>;
  /** Records an error obtained another way, for the leak check. */
  record(error: unknown): void;
  /** Every error recorded by this check so far. */
  readonly errors: readonly unknown[];
}

/** A half of the suite: one fixture, one shared provider, the log lines of all its providers. */
export interface ConformanceSession {
  readonly mode: ConformanceMode;
  start(): Promise<void>;
  /** Runs one check, then closes what it opened and checks that nothing it stored leaked. */
  run(check: { run(context: ConformanceContext): Promise<void> }, id: string): Promise<void>;
  stop(): Promise<void>;
}

/** Options of {@link createSession}. */
export type SessionOptions = {
  mode: ConformanceMode;
  fixture: () => Promise<ConformanceFixture>;
  open: ProviderOpener;
  /** @default `<type>-under-test` (`command-under-test` without a definition) */
  name?: string;
} & (
  | { definition: ProviderDefinition<unknown>; capabilities?: undefined }
  | { definition?: undefined; capabilities: ProviderCapabilities }
);

/** The opener of a child run from a command: across the process boundary, as the agent does. */
export function commandOpener(options: CommandConformanceOptions): ProviderOpener {
  return ({ name, config, env, log, maxMessageBytes }) =>
    createProcessProvider({
      name,
      command: [...options.command],
      ...(options.cwd === undefined ? {} : { resolveFrom: options.cwd }),
      config,
      env,
      callTimeoutMs: CONFORMANCE_CALL_TIMEOUT_MS,
      startTimeoutMs: CONFORMANCE_START_TIMEOUT_MS,
      ...(maxMessageBytes === undefined ? {} : { maxMessageBytes }),
      onLog: (entry) => log({ ...entry }),
    });
}

/** The opener of each half, from the suite's options. */
export function openerFor(
  mode: ConformanceMode,
  options: ModuleConformanceOptions,
): ProviderOpener {
  if (mode === 'in-process') {
    return async ({ name, config, env, log }) =>
      createProvider(options.definition, config, { name, env, log: loggerInto(log) });
  }
  return ({ name, config, env, log, maxMessageBytes }) =>
    createProcessProvider({
      name,
      module: options.module,
      config,
      env,
      execArgv: [...(options.execArgv ?? DEFAULT_EXEC_ARGV)],
      callTimeoutMs: CONFORMANCE_CALL_TIMEOUT_MS,
      // A child that loads a cloud SDK under tsx on a loaded two-core machine may take many
      // seconds to start: slow, not broken. Calls keep their short deadline.
      startTimeoutMs: CONFORMANCE_START_TIMEOUT_MS,
      ...(maxMessageBytes === undefined ? {} : { maxMessageBytes }),
      onLog: (entry) => log({ ...entry }),
    });
}

/** How long a provider child may take to start and answer the handshake in the suite. */
export const CONFORMANCE_START_TIMEOUT_MS = 25_000;

/** A {@link ProviderLogger} that hands each line to `sink`. */
export function loggerInto(sink: (line: ConformanceLogLine) => void): ProviderLogger {
  const at =
    (level: ConformanceLogLine['level']) => (message: string, fields?: Record<string, unknown>) =>
      sink({ level, message, ...(fields === undefined ? {} : { fields }), source: 'provider' });
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** The name a provider under test is configured under: not its type, so both are exercised. */
export function providerNameFor(definition: ProviderDefinition<unknown>): string {
  return `${definition.type}-under-test`.slice(0, 64);
}

/** The environment both halves give the provider: `PATH`, `HOME`, and the fixture's. */
export function providerEnv(fixture: ConformanceFixture): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of ['PATH', 'HOME'] as const) {
    const value = process.env[key];
    if (value !== undefined) env[key] = value;
  }
  return { ...env, ...fixture.env };
}

/** Checks a fixture has what the suite needs, with a message saying what is missing. */
export function checkFixture(fixture: ConformanceFixture): void {
  const problems: string[] = [];
  if (typeof fixture !== 'object' || fixture === null) {
    throw new TypeError('the conformance fixture() must resolve to a ConformanceFixture object');
  }
  if (typeof fixture.put !== 'function') problems.push('put(path, value) must be a function');
  if (typeof fixture.close !== 'function') problems.push('close() must be a function');
  if (typeof fixture.history !== 'boolean') problems.push('history must be a boolean');
  if (!Array.isArray(fixture.invalidConfigs) || fixture.invalidConfigs.length === 0) {
    problems.push('invalidConfigs must list at least one configuration the schema refuses');
  }
  if (fixture.env !== undefined) {
    for (const [key, value] of Object.entries(fixture.env)) {
      if (typeof value !== 'string') problems.push(`env.${key} must be a string`);
    }
  }
  for (const [code, start] of Object.entries(fixture.faults ?? {})) {
    if (
      !['DSO_PROVIDER_UNAUTHORIZED', 'DSO_PROVIDER_THROTTLED', 'DSO_PROVIDER_UNAVAILABLE'].includes(
        code,
      )
    ) {
      problems.push(`faults.${code} is not a fault the suite knows`);
    } else if (typeof start !== 'function') {
      problems.push(`faults.${code} must be a function that starts the fault`);
    }
  }
  if (problems.length > 0) {
    throw new TypeError(`the conformance fixture is incomplete: ${problems.join('; ')}`);
  }
}

/** Creates one half of the suite. */
export function createSession(options: SessionOptions): ConformanceSession {
  const { mode, definition, open } = options;
  const capabilities = definition?.capabilities ?? options.capabilities!;
  const name =
    options.name ?? (definition === undefined ? 'command-under-test' : providerNameFor(definition));
  const run = randomId(10);
  const logs: ConformanceLogLine[] = [];
  let fixture: ConformanceFixture | undefined;
  let shared: Promise<SecretProvider> | undefined;

  const openProvider = (opened: SecretProvider[], openOptions: OpenOptions = {}) => {
    check(fixture !== undefined, 'the fixture is not started');
    const request: OpenRequest = {
      name,
      config: 'config' in openOptions ? openOptions.config : fixture.config,
      env: providerEnv(fixture),
      log: (line) => logs.push(line),
      ...(openOptions.maxMessageBytes === undefined
        ? {}
        : { maxMessageBytes: openOptions.maxMessageBytes }),
    };
    return open(request).then((provider) => {
      opened.push(provider);
      return provider;
    });
  };

  return {
    mode,
    async start() {
      const created = await options.fixture();
      checkFixture(created);
      fixture = created;
    },

    async run(conformanceCheck, id) {
      check(fixture !== undefined, 'the fixture is not started (did beforeAll fail?)');
      const current = fixture;
      const opened: SecretProvider[] = [];
      const secrets: Uint8Array[] = [];
      const errors: unknown[] = [];
      const base = `dso-conformance/${run}/${id}-${randomId(6)}`;
      const context: ConformanceContext = {
        mode,
        name,
        definition,
        capabilities,
        fixture: current,
        logs,
        errors,
        path: (...segments) => [base, ...segments].join('/'),
        async put(path, value) {
          const bytes = toBytes(value);
          secrets.push(bytes);
          return await current.put(path, bytes);
        },
        open: (openOptions) => openProvider(opened, openOptions),
        shared() {
          // A snapshot store shows only what was put before the provider was created.
          if (current.snapshot === true) return openProvider(opened, {});
          if (shared === undefined) {
            const attempt = openProvider([], {});
            shared = attempt;
            // A failed open is reported by the check that asked; the next check tries again.
            attempt.catch(() => {
              if (shared === attempt) shared = undefined;
            });
          }
          return shared;
        },
        async rejection(promise, what) {
          const outcome = await promise.then(
            () => ({ rejected: false as const }),
            (error: unknown) => ({ rejected: true as const, error }),
          );
          if (!outcome.rejected)
            throw new ConformanceError(`${what}: expected a rejection, it resolved`);
          errors.push(outcome.error);
          return outcome.error;
        },
        record(error) {
          errors.push(error);
        },
      };
      const logsBefore = logs.length;
      let failure: unknown;
      try {
        await conformanceCheck.run(context);
      } catch (error) {
        failure = error;
      }
      for (const provider of opened.reverse()) {
        try {
          await provider.close();
        } catch (error) {
          failure ??= new ConformanceError(
            `closing a provider failed: ${describeError(error)}; close() must release what the provider holds and resolve`,
            { cause: error },
          );
        }
      }
      if (failure !== undefined) throw failure;
      assertNoLeaks(secrets, errors, logs.slice(logsBefore), 'a value this check stored');
    },

    async stop() {
      const closing = shared;
      shared = undefined;
      const current = fixture;
      fixture = undefined;
      try {
        if (closing !== undefined) await (await closing.catch(() => undefined))?.close();
      } finally {
        await current?.close();
      }
    },
  };
}

/**
 * Throws when any of `secrets` shows in a recorded error (serialised with its causes) or a log
 * line (message and fields).
 */
export function assertNoLeaks(
  secrets: readonly Uint8Array[],
  errors: readonly unknown[],
  logs: readonly ConformanceLogLine[],
  what: string,
): void {
  const needles = secrets.flatMap((secret) => leakNeedles(secret));
  if (needles.length === 0) return;
  for (const error of errors) {
    if (findNeedle(serialiseError(error), needles) !== undefined) {
      throw new ConformanceError(
        `${what} appears in an error (${isProviderError(error) ? error.code : 'not a ProviderError'}, ` +
          'message, stack, properties or cause chain): build messages from paths and names, and drop a backend error that quotes what it was sent',
      );
    }
  }
  for (const [index, line] of logs.entries()) {
    if (findNeedle(logLineText(line), needles) !== undefined) {
      throw new ConformanceError(
        `${what} appears in a ${line.level} log line from ${line.source} (line ${index + 1} of ${logs.length}): ` +
          'never log a value, a request body or a response body',
      );
    }
  }
}

/** A log line as every reader could see it: JSON, and inspected (errors in fields included). */
function logLineText(line: ConformanceLogLine): string {
  let json = '';
  try {
    json = JSON.stringify(line);
  } catch {
    // Cyclic or BigInt fields: the inspected form below still shows every string.
  }
  return `${json}\n${inspect(line, { depth: 8, maxStringLength: null })}`;
}
