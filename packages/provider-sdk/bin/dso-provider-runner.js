#!/usr/bin/env node
// The `dso-provider-runner` command; the code lives in dist/ (built by `npm run build`).
import '../dist/runner.js';
