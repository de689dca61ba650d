import type { ProviderCapabilities, ProviderDefinition } from '@dso/provider-sdk';

/** The backend failures a fixture can make its store produce, by the code they must map to. */
export const CONFORMANCE_FAULT_CODES = [
  'DSO_PROVIDER_UNAUTHORIZED',
  'DSO_PROVIDER_THROTTLED',
  'DSO_PROVIDER_UNAVAILABLE',
] as const;

/** One of {@link CONFORMANCE_FAULT_CODES}. */
export type ConformanceFaultCode = (typeof CONFORMANCE_FAULT_CODES)[number];

/** Starts a fault in the store; resolves to a function that ends it. */
export type StartConformanceFault = () => Promise<() => Promise<void>>;

/**
 * A store the suite can write to, and a configuration of the provider under test that points
 * at it. The suite only ever writes through {@link ConformanceFixture.put} and reads through
 * the provider, so a fixture may be a fake of a cloud API, a temporary directory, or a real
 * service reachable on 127.0.0.1.
 */
export interface ConformanceFixture {
  /** Configuration of a provider pointed at this store. */
  config: unknown;
  /**
   * Environment the provider reads (in process: `ProviderContext.env`; in the child: its
   * environment, beside `PATH` and `HOME`).
   */
  env?: Record<string, string>;
  /**
   * Stores `value` at `path` as a new current version; returns that version as the provider
   * will report it. Paths are `[a-z0-9/_-]`; values up to 64 KiB, binary included.
   */
  put(path: string, value: Uint8Array): Promise<string>;
  /** Whether a superseded version stays resolvable by its version id. */
  history: boolean;
  /**
   * The store's values are read once, when the provider is created, and cannot change under it
   * (a process environment is fixed at spawn). Every check then opens a fresh provider after
   * its puts instead of sharing one; the checks are the same.
   * @default false
   */
  snapshot?: boolean;
  /** Configurations its schema must refuse (at least one). */
  invalidConfigs: unknown[];
  /** Backend failures this store can be made to produce: start one, get a function that ends it. */
  faults?: Partial<Record<ConformanceFaultCode, StartConformanceFault>>;
  /** Releases the store (servers, temporary files). */
  close(): Promise<void>;
}

/**
 * What {@link runProviderConformance} takes: a JavaScript provider (its definition and the
 * module the child imports), or a child in any language (its command).
 */
export type ProviderConformanceOptions = ModuleConformanceOptions | CommandConformanceOptions;

/** A JavaScript provider: tested in process and across the process boundary. */
export interface ModuleConformanceOptions {
  /** The title of the suite's `describe` block, e.g. `vault`. */
  name: string;
  /** The provider type under test: what its package exports. */
  // biome-ignore lint/suspicious/noExplicitAny: a definition of any configuration type is accepted
  definition: ProviderDefinition<any>;
  /**
   * What the child process imports for the cross-process half: an absolute path of the module
   * exporting `definition` (as `default` or `provider`), or a package name resolvable from the
   * working directory. E.g. `new URL('./index.ts', import.meta.url).pathname`.
   */
  module: string;
  /** A fresh store: called once for each half of the suite, closed when that half ends. */
  fixture: () => Promise<ConformanceFixture>;
  /**
   * Node arguments of the child before the runner script.
   * @default ['--conditions=@dso/source', '--import', 'tsx'] (TypeScript sources, unbuilt)
   */
  execArgv?: string[];
}

/**
 * A provider child in any language that speaks PROTOCOL.md of `@dso/provider-sdk`: tested
 * across the process boundary only (there is no definition to load in process), exactly as the
 * agent runs a `type: command` provider.
 */
export interface CommandConformanceOptions {
  /** The title of the suite's `describe` block, e.g. `pyfile`. */
  name: string;
  /** The child's argv, e.g. `['python3', '/abs/path/provider.py']`. */
  command: string[];
  /** The child's working directory (relative paths in `command` are relative to it). @default process.cwd() */
  cwd?: string;
  /**
   * The capabilities the child declares in its handshake: declared here once, so the suite
   * registers exactly their tests, and cross-checked against the live child (see
   * {@link probeCommandCapabilities} to read them from the child).
   */
  capabilities: ProviderCapabilities;
  /** A fresh store: called once, closed when the suite ends. */
  fixture: () => Promise<ConformanceFixture>;
}
