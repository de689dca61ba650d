#!/usr/bin/env node
// The `dso-provider-conformance` command; the code lives in dist/ (built by `npm run build`).
import { runConformanceCli } from '../dist/cli.js';

process.exitCode = await runConformanceCli(process.argv.slice(2));
