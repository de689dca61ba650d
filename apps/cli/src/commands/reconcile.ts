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
    .option('--json', "print the agent's JSON answer")
    .action(async (options: { json?: boolean }) => {
      const agent = createAgentClient({ socketPath: { env: io.env } });
      const result = await agent.reconcile();
      if (options.json) {
        io.stdout.write(`${JSON.stringify(result)}\n`);
        return;
      }
      const { containers } = result;
      io.stdout.write(
        `reconciliation requested: ${containers} managed ${containers === 1 ? 'container' : 'containers'} queued for a check\n`,
      );
    });
}
