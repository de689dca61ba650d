#!/usr/bin/env node
// `npm start`: from a fresh clone to a running agent on its embedded defaults (the local
// encrypted vault, an in-memory cache, the local Docker socket). Installs dependencies, builds
// the agent and the CLI, creates the vault and its key file on first run, then runs the agent
// in the foreground until Ctrl-C. It never installs or starts the Docker Engine: when none
// answers it says so, with the fix, and stops. It never asks anything either (no step reads the
// terminal: lib.mjs's run and nx), and says which stage it is in; a cached build prints a line
// per project, a failed one its whole log.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  assertNodeVersion,
  ensureDependencies,
  nx,
  ROOT,
  requireEngine,
  run,
  say,
} from './lib.mjs';

const CLI = join(ROOT, 'apps/cli/dist/main.js');
const AGENT = join(ROOT, 'apps/agent/dist/main.js');
const PROJECTS = ['@dso/agent', '@dso/cli'];

assertNodeVersion();
await requireEngine();

try {
  say('[1/4] dependencies (npm ci when node_modules is missing or older than package-lock.json)');
  await ensureDependencies();
  say(
    `[2/4] building ${PROJECTS.join(' and ')} with the packages they use (cached builds: a line each)`,
  );
  await nx(['run-many', '-t', 'build', '-p', ...PROJECTS]);
  // `dso init` creates the vault and its key file only when none exists yet.
  say('[3/4] the vault');
  await run('node', [CLI, 'init', '--if-missing']);
} catch (error) {
  say(error.message);
  process.exit(error.exitCode ?? 1);
}

if (!existsSync(AGENT)) {
  say(`the agent was not built (${AGENT} is missing)`);
  process.exit(1);
}
say('[4/4] starting the agent (Ctrl-C stops it). Store a secret from another shell with:');
say('  printf %s "$VALUE" | npx dso secret set app/db/password');
const agent = spawn(process.execPath, [AGENT], { stdio: ['ignore', 'inherit', 'inherit'] });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => agent.kill(signal));
agent.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
