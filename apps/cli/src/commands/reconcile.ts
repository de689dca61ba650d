import { resolveApiSocket } from '@dso/core';
import type { Command } from 'commander';
import { createAgentClient } from '../agent-client.js';
import type { CliIo } from '../program.js';

/** Adds `dso reconcile`: asks the agent to check every managed container now. */
export function registerReconcileCommand(program: Command, io: CliIo): void {
  program
    .command('reconcile')
    .description(
      'ask the agent to check every managed container now and repair any drift (it also does so on a timer: reconcile.intervalMs)',
    )
    .action(async () => {
      const agent = createAgentClient({ socketPath: resolveApiSocket(io.env) });
      const { containers } = await agent.reconcile();
      io.stdout.write(
        `reconciliation requested: ${containers} managed ${containers === 1 ? 'container' : 'containers'} queued for a check\n`,
      );
    });
}
