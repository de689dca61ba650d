#!/usr/bin/env node
// The `dso-agent` command; the code lives in dist/ (built by `npm run build`). startup.js runs
// first, before any module of main.js's is loaded (it keeps unused parts of dockerode unloaded).
import '../dist/startup.js';
import '../dist/main.js';
