// The first module the `dso-agent` command loads (bin/dso-agent.js imports it before
// dist/main.js): it must run before dockerode is loaded. See defer-modules.ts.
import { deferUnusedModules } from './defer-modules.js';

deferUnusedModules(import.meta.resolve('@dso/docker-runtime'));
