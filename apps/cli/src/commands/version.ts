import { DEFAULT_API_SOCKET, errorCode } from '@dso/core';
import type { Command } from 'commander';
import { createAgentClient, findAgentSocket } from '../agent-client.js';
import type { CliIo } from '../program.js';
import { versionInfo, versionLine } from '../version.js';

/** How long `dso version` waits for the agent's answer. */
const AGENT_VERSION_TIMEOUT_MS = 1_000;

/**
 * Adds `dso version [--client] [--json]`: what `dso --version` prints, then, as `docker version`
 * shows the server's, the version of the agent on the API socket (or why it did not answer).
 */
export function registerVersionCommand(program: Command, io: CliIo): void {
  program
    .command('version')
    .description(
      "print the version of dso, Node's and the platform, and the version of the agent on its socket",
    )
    .option('--client', 'only the version of dso, without asking the agent (as dso --version)')
    .option('--json', 'print them as one JSON object')
    .action(async (options: { client?: boolean; json?: boolean }) => {
      if (options.client) {
        io.stdout.write(options.json ? `${JSON.stringify(versionInfo())}\n` : `${versionLine()}\n`);
        return;
      }
      let socket = DEFAULT_API_SOCKET;
      let agent: { socket: string; version?: string; error?: string };
      try {
        socket = (await findAgentSocket(io.env)).path;
        const status = await createAgentClient({
          socketPath: socket,
          timeoutMs: AGENT_VERSION_TIMEOUT_MS,
        }).status();
        agent = { socket, version: status.version ?? 'unknown (an agent older than this dso)' };
      } catch (error) {
        // Not an error of this command: the version of dso is still the answer it gives.
        agent = { socket, error: errorCode(error) ?? 'DSO_CLI_AGENT_ERROR' };
      }
      if (options.json) {
        io.stdout.write(`${JSON.stringify({ ...versionInfo(), agent })}\n`);
        return;
      }
      const agentLine =
        agent.version === undefined
          ? `dso-agent: no answer on ${socket} (${agent.error}; dso doctor says why)`
          : `dso-agent ${agent.version} on ${socket}`;
      io.stdout.write(`${versionLine()}\n${agentLine}\n`);
    });
}
