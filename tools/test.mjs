#!/usr/bin/env node
// `npm test`: everything from a fresh clone to a verdict. Installs dependencies, makes sure the
// real engine and Redis run (tools/services.sh, which installs Debian's packages when missing),
// builds the test image, then runs every project's build, typecheck, lint and unit tests, the
// integration and end-to-end tests against the real engine, and the package checks. Ends with
// one line, "tests: N passed, N failed".
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { assertNodeVersion, ensureDependencies, nx, ROOT, run, say } from './lib.mjs';

/** Each project's `.reports/` folder, where vitest writes its JSON reports (vitest.shared.ts). */
const reportDirs = () =>
  ['packages', 'apps', 'examples']
    .filter((dir) => existsSync(join(ROOT, dir)))
    .flatMap((dir) => readdirSync(join(ROOT, dir)).map((name) => join(ROOT, dir, name)))
    .concat(join(ROOT, 'test-e2e'))
    .map((dir) => join(dir, '.reports'))
    .filter((dir) => existsSync(dir));

function summarize() {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const files = reportDirs().flatMap((dir) =>
    readdirSync(dir)
      .filter((name) => name.endsWith('.json'))
      .map((name) => join(dir, name)),
  );
  for (const file of files) {
    const report = JSON.parse(readFileSync(file, 'utf8'));
    passed += report.numPassedTests ?? 0;
    failed += report.numFailedTests ?? 0;
    skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  }
  return { passed, failed, skipped };
}

assertNodeVersion();
let failure;
try {
  await ensureDependencies();
  for (const dir of reportDirs()) rmSync(dir, { recursive: true, force: true });
  await run('bash', ['tools/services.sh', 'up']);
  await run('bash', ['tools/test-image.sh']);
  // The workspace's own scripts and settings, which belong to no project.
  await run('npx', [
    'biome',
    'check',
    'tools',
    'vitest.shared.ts',
    'nx.json',
    'package.json',
    'biome.json',
  ]);
  // Package boundaries (the dependency direction in README.md): the check's tests, then the check.
  await run('node', ['--test', 'tools/check-boundaries.test.mjs']);
  // The host bundle's install script refuses what it cannot install (tools/release/install.sh).
  await run('node', ['--test', 'tools/release.test.mjs']);
  await run('node', ['tools/check-boundaries.mjs']);
  // A line per task that passed or came from the cache; a failed task's whole log (lib.mjs).
  await nx(['run-many', '-t', 'build', 'typecheck', 'lint', 'test']);
  // The third-party provider template, checked as its author would (not a workspace project).
  const template = 'examples/provider-template';
  await run('npx', ['biome', 'check', template, 'examples/provider-python']);
  await run('npx', [
    'tsc',
    '-p',
    `${template}/tsconfig.json`,
    '--noEmit',
    '--customConditions',
    '@dso/source',
  ]);
  await run('npx', [
    'vitest',
    'run',
    '--root',
    template,
    '--reporter=default',
    '--reporter=json',
    '--outputFile.json=.reports/test.json',
  ]);
  // The Python provider example (no SDK), through the suite's command target, as its author
  // would run it: the built dso-provider-conformance, its JSON report counted below.
  await run(
    'node',
    [
      '../../packages/provider-conformance/bin/dso-provider-conformance.js',
      '--fixture',
      'conformance-fixture.mjs',
      '--report-json',
      '.reports/test.json',
      '--',
      'python3',
      'provider.py',
    ],
    { cwd: join(ROOT, 'examples/provider-python') },
  );
  // Two lanes side by side, never cached, so their output streams as they run (and interleaves):
  // the end-to-end tests, whose files use private engines only and run two at a time
  // (test-e2e/README.md: they were built above); and, one after another, the engine tests on
  // the shared engine and Redis (one project at a time: they share the daemon), the runtime's
  // tests on Podman, and the package check. A failure in either fails the run, after both end.
  const endToEnd = run('npx', ['vitest', 'run', '--config', 'vitest.config.ts'], {
    cwd: join(ROOT, 'test-e2e'),
  });
  const engines = (async () => {
    // Built above: never again while the other lane's agents run from those dist/ folders (a
    // rebuild empties a dist/ first; seen: an agent started then failed to find one).
    await nx([
      'run-many',
      '-t',
      'test:int',
      '--parallel=1',
      '--outputStyle=stream',
      '--excludeTaskDependencies',
    ]);
    // The runtime's engine tests again, on the Podman API service tools/services.sh started (the
    // tests take the engine from DOCKER_HOST); their own report, so both runs are counted.
    await run(
      'npx',
      [
        'vitest',
        'run',
        '--config',
        'vitest.int.config.ts',
        '--outputFile.json=.reports/test-int-podman.json',
      ],
      {
        cwd: join(ROOT, 'packages/docker-runtime'),
        env: {
          ...process.env,
          DOCKER_HOST: `unix://${process.env.DSO_PODMAN_SOCK ?? '/run/dso-podman/podman.sock'}`,
        },
      },
    );
    await run('node', ['tools/check-packages.mjs']);
  })();
  const lanes = await Promise.allSettled([endToEnd, engines]);
  const failed = lanes.find((lane) => lane.status === 'rejected');
  if (failed) throw failed.reason;
} catch (error) {
  failure = error;
}
let counts = { passed: 0, failed: 0, skipped: 0 };
try {
  counts = summarize();
} catch {
  // No reports (the run failed before any test ran): the counts stay at zero.
}
if (failure) {
  say(failure.message);
  if (counts.failed === 0) counts.failed = 1; // a failed step is a failure even with no failed test
}
const skipped = counts.skipped ? `, ${counts.skipped} skipped` : '';
console.log(`tests: ${counts.passed} passed, ${counts.failed} failed${skipped}`);
process.exit(failure ? (failure.exitCode ?? 1) : 0);
