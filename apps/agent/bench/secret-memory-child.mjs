// One measurement for secret-memory.bench.mjs, in a fresh `node --expose-gc` process: a
// redactor module (this revision's built @dso/core, or an earlier revision's redactor bundled
// by the benchmark) and one scenario. Prints one JSON line: live heap + external and RSS at the
// scenario's checkpoints (after full collections), the process's peak RSS, and how long
// registering took. Values are random and never printed.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [modulePath, scenario] = process.argv.slice(2);
const { createRedactor } = await import(pathToFileURL(modulePath).href);

/** Live bytes after three full collections, RSS now, and the peak RSS so far. */
function measure() {
  for (let i = 0; i < 3; i++) globalThis.gc();
  const usage = process.memoryUsage();
  const status = readFileSync('/proc/self/status', 'utf8');
  const peak = Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)[1]) * 1024;
  return { live: usage.heapUsed + usage.external + usage.arrayBuffers, rss: usage.rss, peak };
}

const LINE = '{"level":30,"msg":"secrets delivered","containerId":"633f6114c0bc","bytes":716800}';
/** A value of `bytes` characters, as a key bundle would be: random base64. */
const value = (bytes) =>
  randomBytes(Math.ceil((bytes * 3) / 4))
    .toString('base64')
    .slice(0, bytes);

const result = { scenario };
const redactor = createRedactor();
if (scenario === 'rotate-700k') {
  // A 700 KB secret through versions 0..12: each registered as it arrives, the previous one
  // released once delivered (where the redactor has leases), a log line redacted between.
  let previous;
  let registerMs = 0;
  for (let version = 0; version <= 12; version++) {
    const started = performance.now();
    const lease = redactor.register(value(700 * 1024));
    redactor.redact(LINE);
    registerMs += performance.now() - started;
    previous?.release?.();
    previous = lease;
    if (version === 2) result.before = measure();
  }
  result.after = measure();
  result.registerMsPerVersion = registerMs / 13;
} else if (scenario === 'large-10m') {
  result.before = measure();
  const started = performance.now();
  redactor.register(value(10 * 1024 * 1024));
  redactor.redact(LINE);
  result.registerMs = performance.now() - started;
  result.after = measure();
} else {
  result.before = measure();
  result.after = measure();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
