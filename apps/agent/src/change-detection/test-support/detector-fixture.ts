/**
 * What the change detector's tests share: fake providers (one that probes, and watches when
 * asked, with versions, failures and a gate set by the test), a watch the test drives, and a
 * detector on a fake clock that the test moves.
 */
import { Writable } from 'node:stream';
import { createFakeClock, createLogger, createRedactor, type FakeClock } from '@dso/core';
import { ProviderError, type SecretChange, type SecretProvider } from '@dso/provider-sdk';
import {
  type ChangeDetector,
  type ChangeDetectorOptions,
  createChangeDetector,
  type DetectedChange,
} from '../../change-detector.js';

export const CANARY = 'canary-change-detector-4e8a1c';
export const INTERVAL = 1_000;
export const CAPABILITIES = { list: false, watch: false, probe: false, health: false };

/** Lets promise callbacks (and the provider calls they start) run. */
export async function flush(rounds = 5): Promise<void> {
  for (let round = 0; round < rounds; round += 1) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** Moves the fake clock in small steps, letting async work run between them. */
export async function tick(clock: FakeClock, ms: number, stepMs = 25): Promise<void> {
  for (let passed = 0; passed < ms; passed += stepMs) {
    clock.advance(Math.min(stepMs, ms - passed));
    await flush(2);
  }
  await flush();
}

export interface Probed {
  provider: SecretProvider;
  versions: Map<string, string>;
  calls: string[];
  signals: AbortSignal[];
  inFlight: () => number;
  maxInFlight: () => number;
  /** When set, probes wait until released. */
  gate: { held: boolean; release: () => void };
  failWith: Map<string, unknown>;
}

/** A provider with `probe` (and `watch` when asked), its versions set by the test. */
export function probeProvider(name = 'store', withWatch = false): Probed & { watch: WatchControl } {
  const versions = new Map<string, string>();
  const calls: string[] = [];
  const signals: AbortSignal[] = [];
  const failWith = new Map<string, unknown>();
  let active = 0;
  let peak = 0;
  let waiters: Array<() => void> = [];
  const gate = {
    held: false,
    release() {
      gate.held = false;
      const ready = waiters;
      waiters = [];
      for (const resume of ready) resume();
    },
  };
  const watch = watchControl();
  const provider: SecretProvider = {
    name,
    capabilities: { ...CAPABILITIES, probe: true, watch: withWatch },
    async resolve() {
      throw new Error('resolve is not expected here');
    },
    async probe({ path }, options) {
      calls.push(path);
      if (options?.signal) signals.push(options.signal);
      active += 1;
      peak = Math.max(peak, active);
      try {
        if (gate.held) await new Promise<void>((resolve) => waiters.push(resolve));
        const failure = failWith.get(path);
        if (failure !== undefined) throw failure;
        const version = versions.get(path);
        if (version === undefined) {
          throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, {
            provider: name,
            path,
          });
        }
        return { version };
      } finally {
        active -= 1;
      }
    },
    async close() {},
  };
  if (withWatch) provider.watch = watch.watch;
  return {
    provider,
    versions,
    calls,
    signals,
    inFlight: () => active,
    maxInFlight: () => peak,
    gate,
    failWith,
    watch,
  };
}

export interface WatchSession {
  paths: readonly string[];
  signal: AbortSignal;
  push(change: SecretChange): void;
  fail(error: unknown): void;
  end(): void;
  closed: boolean;
}

export interface WatchControl {
  watch: NonNullable<SecretProvider['watch']>;
  sessions: WatchSession[];
  open(): WatchSession[];
}

/** A watch that yields what the test pushes, ends or fails when told, and stops at abort. */
export function watchControl(): WatchControl {
  const sessions: WatchSession[] = [];
  return {
    sessions,
    open: () => sessions.filter((session) => !session.closed),
    watch(paths, { signal }) {
      type Item = { change: SecretChange } | { error: unknown } | { end: true };
      const items: Item[] = [];
      let wake: (() => void) | undefined;
      const add = (item: Item) => {
        items.push(item);
        wake?.();
      };
      const session: WatchSession = {
        paths: [...paths],
        signal,
        push: (change) => add({ change }),
        fail: (error) => add({ error }),
        end: () => add({ end: true }),
        closed: false,
      };
      sessions.push(session);
      return (async function* () {
        try {
          while (!signal.aborted) {
            const item = items.shift();
            if (item === undefined) {
              await new Promise<void>((resolve) => {
                wake = resolve;
                signal.addEventListener('abort', () => resolve(), { once: true });
              });
              continue;
            }
            if ('error' in item) throw item.error;
            if ('end' in item) return;
            yield item.change;
          }
        } finally {
          session.closed = true;
        }
      })();
    },
  };
}

/** Detectors a test made: {@link closeDetectors} closes them after each test. */
export const detectors: ChangeDetector[] = [];

/** Closes every detector the last test made (an `afterEach` of each test file). */
export async function closeDetectors(): Promise<void> {
  const open = detectors.splice(0);
  await Promise.all(open.map((detector) => detector.close()));
}

/**
 * A detector over `providers` on a fake clock (unless `overrides.clock`), jitter draws of 0.5,
 * short watch delays, and every log line kept; closed after the test.
 */
export function setup(
  providers: SecretProvider[],
  overrides: Partial<ChangeDetectorOptions> = {},
): {
  detector: ChangeDetector;
  clock: FakeClock;
  changes: DetectedChange[];
  output: () => string;
  lines: () => Array<Record<string, unknown>>;
} {
  let output = '';
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      output += String(chunk);
      callback();
    },
  });
  const clock = (overrides.clock as FakeClock | undefined) ?? createFakeClock();
  const changes: DetectedChange[] = [];
  const detector = createChangeDetector({
    providers: new Map(providers.map((provider) => [provider.name, provider])),
    // The logger's own redactor knows no value: whatever the detector logged would show.
    logger: createLogger({ level: 'trace', destination, redactor: createRedactor() }),
    pollIntervalMs: INTERVAL,
    onChange: (change) => changes.push(change),
    clock,
    random: () => 0.5,
    watchSettleMs: 100,
    watchRebuildDelayMs: 200,
    watchRetryBaseDelayMs: 500,
    watchRetryMaxDelayMs: 2_000,
    ...overrides,
  });
  detectors.push(detector);
  return {
    detector,
    clock,
    changes,
    output: () => output,
    lines: () =>
      output
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}
