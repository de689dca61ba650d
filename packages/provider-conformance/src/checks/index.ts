import { canaryChecks } from './canary.js';
import { cancellationChecks } from './cancellation.js';
import { capabilityChecks } from './capabilities.js';
import { CHECK_GROUPS, type CheckScope, type ConformanceCheck } from './check.js';
import { concurrencyChecks } from './concurrency.js';
import { errorChecks } from './errors.js';
import { lifecycleChecks } from './lifecycle.js';
import { readChecks } from './reads.js';
import { versionChecks } from './versions.js';

/** Every check of the suite, ordered by group. */
export const CONFORMANCE_CHECKS: readonly ConformanceCheck[] = Object.freeze(
  [
    ...lifecycleChecks,
    ...readChecks,
    ...versionChecks,
    ...errorChecks,
    ...cancellationChecks,
    ...canaryChecks,
    ...capabilityChecks,
    ...concurrencyChecks,
  ].sort((left, right) => CHECK_GROUPS.indexOf(left.group) - CHECK_GROUPS.indexOf(right.group)),
);

/** The checks registered for `scope`: the declared capabilities' and the half's. */
export function checksFor(scope: CheckScope): ConformanceCheck[] {
  return CONFORMANCE_CHECKS.filter((check) => check.applies?.(scope) ?? true);
}

/** The check with `id`. @throws TypeError for an unknown id */
export function checkById(id: string): ConformanceCheck {
  const found = CONFORMANCE_CHECKS.find((check) => check.id === id);
  if (found === undefined) throw new TypeError(`no conformance check ${id}`);
  return found;
}
