/**
 * `dso-provider-runner <module>`: hosts any provider package in a child process, so a
 * provider's author writes only the provider. Imports `<module>` (a package name resolved from
 * the working directory, an absolute path or a `file:` URL), takes its `default` or `provider`
 * export, checks it is a provider definition built for a supported SDK API version, and serves
 * it over the protocol in PROTOCOL.md on stdin/stdout. Nothing but protocol lines reaches
 * stdout: `console.*` and stray `process.stdout.write` calls go to stderr, which the host logs.
 *
 * Exit codes: 0 after `shutdown` or the end of stdin, 1 when the module cannot be served
 * (the reason is answered to `initialize` and written to stderr), 2 for a usage error,
 * 143 after SIGTERM.
 */
import { Console } from 'node:console';
import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import { serveProviderFrom } from './protocol/child.js';
import { loadProviderModule } from './protocol/load-module.js';

const USAGE =
  'usage: dso-provider-runner <module>\n' +
  '  <module>  a provider package name (resolved from the working directory), an absolute\n' +
  '            path or a file: URL; its default (or `provider`) export is a provider definition\n' +
  'Speaks the DSO provider protocol (JSON-RPC 2.0, one message per line) on stdin/stdout.\n';

const stdoutWrite = process.stdout.write.bind(process.stdout) as (
  chunk: Uint8Array | string,
  callback?: (error?: Error | null) => void,
) => boolean;
// Only protocol lines may reach stdout: everything else a provider or a library prints goes
// to stderr instead of corrupting the stream the host parses.
process.stdout.write = ((chunk: Uint8Array | string, ...rest: unknown[]) =>
  (process.stderr.write as (...args: unknown[]) => boolean)(
    chunk,
    ...rest,
  )) as typeof process.stdout.write;
globalThis.console = new Console({ stdout: process.stderr, stderr: process.stderr });
// A host that goes away closes our stdout: the write fails (EPIPE) and serving ends; no crash.
process.stdout.on('error', () => undefined);

const output = new Writable({
  highWaterMark: 1 << 20,
  write(chunk: Buffer, _encoding, callback) {
    stdoutWrite(chunk, (error) => callback(error ?? null));
  },
  // Corked lines (answers finished in the same turn) go out in one write.
  writev(chunks, callback) {
    const joined = Buffer.concat(chunks.map(({ chunk }) => chunk as Buffer));
    stdoutWrite(joined, (error) => {
      joined.fill(0);
      callback(error ?? null);
    });
  },
});

function fail(message: string): void {
  process.stderr.write(`dso-provider-runner: ${message}\n`);
}

async function main(args: string[]): Promise<number> {
  if (args.length !== 1 || args[0] === '--help' || args[0] === '-h' || args[0]?.startsWith('-')) {
    process.stderr.write(USAGE);
    return args[0] === '--help' || args[0] === '-h' ? 0 : 2;
  }
  const specifier = args[0] as string;
  const stop = new AbortController();
  let terminated = false;
  process.once('SIGTERM', () => {
    terminated = true;
    stop.abort();
  });
  const loading = loadProviderModule(specifier, {
    resolveFrom: process.cwd(),
    // The import's own error (a syntax error, a missing dependency) is for the author's eyes,
    // on stderr, which the host passes through its redaction; never into the protocol.
    onImportError: (error) => fail(inspect(error)),
  });
  let loadFailed = false;
  try {
    await loading;
  } catch (error) {
    loadFailed = true;
    fail((error as Error).message);
    // Nobody to answer in a terminal: the message above is the whole answer.
    if (process.stdin.isTTY || terminated) return terminated ? 143 : 1;
  }
  const result = await serveProviderFrom(() => loading, {
    input: process.stdin,
    output,
    error: process.stderr,
    env: process.env,
    signal: stop.signal,
  });
  if (terminated) return 143;
  return loadFailed ? 1 : result.exitCode;
}

const code = await main(process.argv.slice(2));
// Flush the last answers (the shutdown's null), then exit even if the provider left handles open.
await new Promise<void>((resolve) => {
  output.end(() => resolve());
  setTimeout(resolve, 1_000).unref();
});
process.exit(code);
