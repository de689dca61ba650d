import type { Command } from 'commander';
import { type AgentClient, createAgentClient } from '../agent-client.js';
import { containerId as inspectContainerId } from '../docker-cli.js';
import type { CliIo } from '../program.js';

/** A container id as `dso status` and `docker ps` print it (12 characters or more). */
const CONTAINER_ID = /^[0-9a-f]{12,64}$/;

/** What `dso rotate` calls; injected so tests need no engine. */
export interface RotateDependencies {
  agent: () => Pick<AgentClient, 'rotate'>;
  /** The full id of a container given by name. */
  containerId: (container: string, env: NodeJS.ProcessEnv) => Promise<string>;
}

/**
 * Adds `dso rotate [container]`: asks the agent to fetch the secrets of every running managed
 * container (or one) again, past its cache, and rotate any that changed by its policy.
 */
export function registerRotateCommand(
  program: Command,
  io: CliIo,
  dependencies: () => RotateDependencies = () => ({
    agent: () => createAgentClient({ socketPath: { env: io.env } }),
    containerId: inspectContainerId,
  }),
): void {
  program
    .command('rotate')
    .description(
      "ask the agent to fetch every managed container's secrets again now, past its cache, and rotate those that changed by each container's policy (dso.rotate)",
    )
    .argument('[container]', 'only this container: an id (12 characters or more) or a name')
    .option('--json', "print the agent's JSON answer")
    .action(async (container: string | undefined, options: { json?: boolean }) => {
      const { agent, containerId } = dependencies();
      // A name is turned into its id here: the agent selects by id only.
      const id =
        container === undefined || CONTAINER_ID.test(container)
          ? container
          : await containerId(container, io.env);
      const result = await agent().rotate(id === undefined ? {} : { containerId: id });
      if (options.json) {
        io.stdout.write(`${JSON.stringify(result)}\n`);
        return;
      }
      const containers = `${result.containers} managed ${result.containers === 1 ? 'container' : 'containers'}`;
      const secrets = `${result.secrets} ${result.secrets === 1 ? 'secret' : 'secrets'}`;
      const which =
        container === undefined
          ? containers
          : `${containers} (${container}${id !== container ? `, ${id?.slice(0, 12)}` : ''})`;
      io.stdout.write(
        `rotation requested: ${which}, ${secrets} asked again from their providers; containers whose secrets changed are rotated by their policy (see dso status)\n`,
      );
    });
}
