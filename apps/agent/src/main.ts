import { runAgentMain } from './run.js';

process.exitCode = await runAgentMain(process.argv.slice(2), process.env);
