import { defineProjectTests } from '../vitest.shared.ts';

/**
 * The files that use the shared engine (/var/run/docker.sock): an agent on it manages every
 * `dso.enable=true` container there, and volume-driver and dso-up serve the one driver name
 * `dso-e2e` to it, so they run one at a time. Every other file uses private engines only and
 * may run beside them (see README.md, "Two groups of files"). A new file that starts no agent
 * or container on the shared engine belongs to the private group: it needs no entry here.
 */
export const SHARED_ENGINE_FILES = [
  'src/deliver-file.e2e.test.ts',
  'src/dso-up.e2e.test.ts',
  'src/files-before-start.e2e.test.ts',
  'src/redis-cache.e2e.test.ts',
  'src/resilience.e2e.test.ts',
  'src/rotation.e2e.test.ts',
  'src/volume-driver.e2e.test.ts',
];

/** Private-engine files at once: two on this project's 2-core machines. */
const PRIVATE_WORKERS = Number(process.env.DSO_E2E_PRIVATE_WORKERS ?? 2);

// run-e2e.mjs starts one vitest per group (DSO_E2E_GROUP), side by side, each with its own
// JSON report; without it (vitest run on its own) every file runs, one at a time.
const group = process.env.DSO_E2E_GROUP;
export default defineProjectTests(
  import.meta.dirname,
  'e2e',
  group === 'shared'
    ? { include: SHARED_ENGINE_FILES, report: 'e2e-shared' }
    : group === 'private'
      ? { exclude: SHARED_ENGINE_FILES, maxWorkers: PRIVATE_WORKERS, report: 'e2e-private' }
      : {},
);
