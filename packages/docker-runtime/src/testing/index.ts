/**
 * @dso/docker-runtime/testing: an in-memory engine for the tests of code built on
 * {@link DockerRuntime}, and the conformance suite that keeps it honest against the real
 * engine. Needs vitest (an optional peer dependency) for the suite: import it only from tests.
 *
 * @example
 * // agent.test.ts
 * import { createFakeRuntime } from '@dso/docker-runtime/testing';
 *
 * const fake = createFakeRuntime();
 * const agent = createAgent({ runtime: fake.runtime, providers, logger, redactor });
 * await agent.start();
 * fake.start(container('c1', { 'dso.enable': 'true', 'dso.file.db': 'dsofile://app/db' }));
 * await expect.poll(() => fake.writes.length).toBe(1);
 */
import type { DockerRuntime } from '../docker-runtime.js';

export {
  createFakeRuntime,
  type FakeFailure,
  type FakeRuntime,
  type FakeRuntimeOptions,
  type FakeWrite,
} from './fake-runtime.js';
export { type RuntimeUnderTest, runRuntimeConformance } from './runtime-conformance.js';

/** The interface the fake implements (re-exported for the example above). */
export type { DockerRuntime };
