import { onAbort } from '@dso/async';
import {
  isSecretValue,
  OPTIONAL_OPERATIONS,
  type ProviderCapabilities,
  type ResolvedSecret,
  type SecretProvider,
} from '@dso/provider-sdk';
import { ConformanceError, check, sameBytes } from '../assertions.js';
import type { ConformanceContext, ConformanceMode } from '../context.js';

/** The `describe` blocks of each half, in the order they run. */
export const CHECK_GROUPS = [
  'capabilities and lifecycle',
  'reads',
  'field selection',
  'versions',
  'errors',
  'cancellation',
  'canary',
  'list',
  'watch',
  'health',
  'concurrency',
] as const;

export type CheckGroup = (typeof CHECK_GROUPS)[number];

/** What decides whether a check is registered: the declared capabilities and the half. */
export interface CheckScope {
  capabilities: ProviderCapabilities;
  mode: ConformanceMode;
}

/** One test of the suite. */
export interface ConformanceCheck {
  /** Short, path-safe: part of the paths the check writes. */
  readonly id: string;
  readonly group: CheckGroup;
  /** The `it` title: the behaviour it proves. */
  readonly name: string;
  /** Registered only where this holds. @default always */
  readonly applies?: (scope: CheckScope) => boolean;
  /** @default {@link DEFAULT_CHECK_TIMEOUT_MS} */
  readonly timeoutMs?: number;
  run(context: ConformanceContext): Promise<void>;
}

/** Per-test timeout: generous enough for a fake of a cloud API on a loaded machine. */
export const DEFAULT_CHECK_TIMEOUT_MS = 10_000;

/** How long a cancelled call, or a call after close, may take to settle. */
export const PROMPT_MS = 1_000;

/** Asserts `resolved` holds exactly `bytes` as a SecretValue, at `version` when given. */
export function expectResolved(
  resolved: ResolvedSecret,
  bytes: Uint8Array,
  version: string | undefined,
  what: string,
): void {
  check(
    isSecretValue(resolved?.value),
    `${what}: resolve() returned ${kindOf(resolved?.value)} as its value; it must be a SecretValue`,
  );
  const actual = resolved.value.reveal();
  if (!sameBytes(actual, bytes)) {
    let index = 0;
    while (index < actual.length && index < bytes.length && actual[index] === bytes[index])
      index += 1;
    throw new ConformanceError(
      `${what}: resolved ${actual.length} bytes that differ from the ${bytes.length} bytes stored ` +
        `(first difference at byte ${index}); values must round-trip byte for byte`,
    );
  }
  if (version !== undefined) {
    check(
      resolved.version === version,
      `${what}: resolved version ${JSON.stringify(resolved.version)}, but the fixture stored ${JSON.stringify(version)}`,
    );
  }
}

/**
 * Asserts the live provider declares exactly its definition's capabilities, has a method for
 * each declared one and no member at all for the others.
 */
export function checkCapabilities(
  provider: SecretProvider,
  declared: ProviderCapabilities,
  name: string,
): void {
  check(
    provider.name === name,
    `provider.name is ${JSON.stringify(provider.name)}; it must be the configured name ${JSON.stringify(name)} (ProviderContext.name)`,
  );
  for (const operation of OPTIONAL_OPERATIONS) {
    const isDeclared = declared[operation] === true;
    const live = provider.capabilities?.[operation] === true;
    check(
      live === isDeclared,
      `capabilities.${operation} is ${live} on the live provider but ${isDeclared} as declared (its definition, or the suite's capabilities for a command)`,
    );
    const member = (provider as unknown as Record<string, unknown>)[operation];
    if (isDeclared) {
      check(
        typeof member === 'function',
        `declares ${operation} but has no ${operation}() method: implement it or stop declaring it`,
      );
    } else {
      check(
        member === undefined,
        `does not declare ${operation} but has a ${operation} member: declare it (and pass its tests) or remove it`,
      );
    }
  }
}

/**
 * The first step of a watch: resolves when the iteration yields or ends, rejects with what it
 * throws (synchronously or not). Aborts the watch afterwards.
 */
export async function firstWatchStep(
  provider: SecretProvider,
  paths: readonly string[],
  signal?: AbortSignal,
): Promise<IteratorResult<unknown>> {
  const controller = new AbortController();
  const stopForwarding = onAbort(signal, (reason) => controller.abort(reason));
  try {
    const iterator = provider.watch!(paths, { signal: controller.signal })[Symbol.asyncIterator]();
    return await iterator.next();
  } finally {
    stopForwarding();
    controller.abort();
  }
}

/** What kind of thing `value` is, without showing it (it may be a secret's bytes). */
function kindOf(value: unknown): string {
  if (value === null || typeof value !== 'object') return typeof value;
  return `a ${value.constructor?.name ?? 'object'}`;
}
