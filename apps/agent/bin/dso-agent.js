#!/usr/bin/env node
// The `dso-agent` command; the code lives in dist/ (built by `npm run build`).
import '../dist/main.js';
