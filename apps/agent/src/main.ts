import { runAgentMain } from './run.js';
import { agentVersionLine, asksForVersion } from './version.js';

const argv = process.argv.slice(2);
if (asksForVersion(argv)) {
  process.stdout.write(`${agentVersionLine()}\n`);
} else {
  process.exitCode = await runAgentMain(argv, process.env);
}
