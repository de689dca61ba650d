import { isProviderError, type SecretChange, type SecretProvider } from '@dso/provider-sdk';
import {
  ConformanceError,
  check,
  describeError,
  eventually,
  randomText,
  settle,
  within,
} from '../assertions.js';
import { type ConformanceCheck, PROMPT_MS } from './check.js';
import { duringFault, RECOVERY_MS } from './errors.js';

/** How long a put may take to show up as a change on a watch. */
export const WATCH_DELIVERY_MS = 5_000;
/**
 * How long the watch check waits for each put before making another. A watch may still be
 * setting up (subscribing, taking its baseline) when the first put lands: the contract does
 * not promise a change made before the watch is established, so the check puts again, waiting
 * longer each time.
 */
export const WATCH_REPUT_MS: readonly number[] = [250, 500, 1_000];

/** A watch consumed in the background: the changes so far, and how its iteration ended. */
interface WatchRecorder {
  changes: SecretChange[];
  ended: Promise<{ ok: true } | { ok: false; error: unknown }>;
  /** Whether the iteration has ended (the outcome is in `ended`). */
  done(): boolean;
  /** Resolves when a change satisfying `predicate` has arrived, or after `ms`, with it or not. */
  waitFor(
    predicate: (change: SecretChange) => boolean,
    ms: number,
  ): Promise<SecretChange | undefined>;
}

function recordWatch(
  provider: SecretProvider,
  paths: readonly string[],
  signal: AbortSignal,
): WatchRecorder {
  const changes: SecretChange[] = [];
  let notify = () => {};
  let done = false;
  const ended = settle(
    (async () => {
      for await (const change of provider.watch!(paths, { signal })) {
        changes.push({ path: change.path, version: change.version });
        notify();
      }
    })(),
  ).then((outcome) => {
    done = true;
    notify();
    return outcome.ok ? { ok: true as const } : { ok: false as const, error: outcome.error };
  });
  return {
    changes,
    ended,
    done: () => done,
    async waitFor(predicate, ms) {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = changes.find(predicate);
        if (found !== undefined || done) return found;
        const left = deadline - Date.now();
        if (left <= 0) return undefined;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          notify = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
  };
}

export const capabilityChecks: ConformanceCheck[] = [
  {
    id: 'list',
    group: 'list',
    name: 'lists the paths under a prefix, with their full paths, and none outside it',
    applies: ({ capabilities }) => capabilities.list,
    async run(context) {
      const inside = [
        context.path('a', 'one'),
        context.path('a', 'two'),
        context.path('a', 'deep', 'three'),
      ];
      const outside = [context.path('b', 'four'), context.path('ab')];
      for (const path of [...inside, ...outside]) await context.put(path, randomText(24));
      const provider = await context.shared();
      const prefix = `${context.path('a')}/`;
      const listed = await provider.list!(prefix);
      check(Array.isArray(listed), `list(${prefix}) must return an array of paths`);
      for (const path of inside) {
        check(
          listed.includes(path),
          `list(${prefix}) is missing ${path}; it returned ${JSON.stringify(listed)}`,
        );
      }
      for (const path of listed) {
        check(
          typeof path === 'string' && path.startsWith(prefix),
          `list(${prefix}) returned ${JSON.stringify(path)}, which is not under the prefix`,
        );
      }
      const all = await provider.list!(`${context.path()}/`);
      for (const path of [...inside, ...outside]) {
        check(all.includes(path), `list(${context.path()}/) is missing ${path}`);
      }
    },
  },
  {
    id: 'watch',
    group: 'watch',
    name: 'reports a put on a watched path as a change with the new version within 5 s',
    applies: ({ capabilities }) => capabilities.watch,
    timeoutMs: 15_000,
    async run(context) {
      const path = context.path('watched');
      const other = context.path('unwatched');
      await context.put(path, randomText(24));
      await context.put(other, randomText(24));
      const provider = await context.shared();
      const controller = new AbortController();
      const watch = recordWatch(provider, [path], controller.signal);
      try {
        const versions: string[] = [];
        const deadline = Date.now() + WATCH_DELIVERY_MS;
        let seen: SecretChange | undefined;
        while (seen === undefined && Date.now() < deadline) {
          await context.put(other, randomText(24));
          versions.push(await context.put(path, randomText(24)));
          seen = await watch.waitFor(
            (change) => change.path === path && versions.includes(change.version),
            Math.min(
              WATCH_REPUT_MS[Math.min(versions.length - 1, WATCH_REPUT_MS.length - 1)]!,
              Math.max(0, deadline - Date.now()),
            ),
          );
          if (watch.done()) {
            const ended = await watch.ended;
            if (!ended.ok) context.record(ended.error);
            throw new ConformanceError(
              `the watch ended before reporting the put (${ended.ok ? 'without an error' : describeError(ended.error)}); it must run until its signal aborts`,
            );
          }
        }
        check(
          seen !== undefined,
          `no change with a put's version (${versions.join(', ')}) was reported for ${path} within ${WATCH_DELIVERY_MS} ms; changes seen: ${JSON.stringify(watch.changes)}`,
        );
        const stray = watch.changes.find((change) => change.path !== path);
        check(
          stray === undefined,
          `the watch of ${path} reported a change of ${stray?.path}, which it was not asked to watch`,
        );
      } finally {
        controller.abort();
      }
      const ended = await within(watch.ended, PROMPT_MS, 'the watch after its signal aborted');
      if (!ended.ok) {
        context.record(ended.error);
        throw new ConformanceError(
          `the watch failed with ${describeError(ended.error)} when its signal aborted; it must end without an error`,
        );
      }
    },
  },
  {
    id: 'unwatch',
    group: 'watch',
    name: 'ends the iteration without an error within 1 s when its signal aborts while it waits',
    applies: ({ capabilities }) => capabilities.watch,
    async run(context) {
      const path = context.path('watched');
      await context.put(path, randomText(24));
      const provider = await context.shared();
      const controller = new AbortController();
      const watch = recordWatch(provider, [path], controller.signal);
      // Give the watch time to be waiting on its store rather than still starting: the abort
      // must end an established watch, not just one that never began.
      await watch.waitFor(() => false, 200);
      controller.abort();
      const ended = await within(watch.ended, PROMPT_MS, 'the watch after its signal aborted');
      if (!ended.ok) {
        context.record(ended.error);
        throw new ConformanceError(
          `the watch failed with ${describeError(ended.error)} when its signal aborted; it must end without an error`,
        );
      }
      // The provider still serves after a watch ended.
      await provider.resolve({ path });
    },
  },
  {
    id: 'health',
    group: 'health',
    name: 'reports ok when the store is up, not ok (or a ProviderError) during an UNAVAILABLE fault, and ok again after',
    applies: ({ capabilities }) => capabilities.health,
    timeoutMs: 15_000,
    async run(context) {
      const provider = await context.shared();
      const healthy = await provider.health!();
      check(
        healthy?.ok === true,
        `health() returned ${JSON.stringify(healthy)} with the store up; it must be { ok: true }`,
      );
      if (context.fixture.faults?.DSO_PROVIDER_UNAVAILABLE === undefined) return;
      const during = await duringFault(context, 'DSO_PROVIDER_UNAVAILABLE', () =>
        within(settle(provider.health!()), 8_000, 'health() during the UNAVAILABLE fault'),
      );
      if (during.ok) {
        check(
          during.value?.ok === false,
          `health() returned ${JSON.stringify(during.value)} while the store was unavailable; it must report ok: false or reject`,
        );
      } else {
        context.record(during.error);
        check(
          isProviderError(during.error),
          `health() during the fault rejected with ${describeError(during.error)}; it must be a ProviderError`,
        );
      }
      await eventually(
        async () => {
          const after = await provider.health!();
          check(after?.ok === true, `health() still reports ${JSON.stringify(after)}`);
        },
        RECOVERY_MS,
        'health() after the UNAVAILABLE fault ended',
      );
    },
  },
];
