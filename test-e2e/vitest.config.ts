import { defineProjectTests } from '../vitest.shared.ts';

/**
 * Two files at a time (DSO_E2E_WORKERS to change it): every file runs on engines of its own
 * (`startPrivateEngine()`, or `privateEngineForFile()` for a whole file), never on the shared
 * one, and its agents get a driver name, folders, sockets and ports of their own from the
 * harness, so files running side by side share nothing (see README.md, "Files side by side").
 */
export default defineProjectTests(import.meta.dirname, 'e2e', {
  maxWorkers: Number(process.env.DSO_E2E_WORKERS ?? 2),
});
