import type { Readable, Writable } from 'node:stream';
import { inspect } from 'node:util';
import { onAbort, pause } from '@dso/async';
import {
  createProvider,
  type ProviderDefinition,
  type ProviderLogger,
} from '../define-provider.js';
import type { SecretProvider } from '../provider.js';
import { ProviderError } from '../provider-error.js';
import { isSecretValue } from '../secret-value.js';
import { createLineReader } from './framing.js';
import {
  base64Length,
  classifyMessage,
  DEFAULT_MAX_MESSAGE_BYTES,
  encodeLine,
  type InitializeParams,
  type InitializeResult,
  maxMessageBytesAdvice,
  PROTOCOL_VERSION,
  RPC_ERROR,
  type RpcError,
  type RpcId,
  type RpcRequest,
  rpcError,
  toRpcError,
} from './messages.js';

/** Longest log message a child sends; longer ones are cut. */
const MAX_LOG_MESSAGE_CHARS = 8_192;
/** Requests held while `initialize` runs; more are refused. */
const MAX_WAITING_REQUESTS = 1_024;
/** How long `close()` of the provider may take at shutdown before the child gives up on it. */
const CLOSE_DEADLINE_MS = 5_000;

/** Where {@link serveProvider} reads and writes. */
export interface ServeProviderOptions {
  /** Protocol lines from the host (the child's stdin). */
  input: Readable;
  /** Protocol lines to the host (the child's stdout): nothing else may be written there. */
  output: Writable;
  /** The child's own diagnostics (free text). @default process.stderr */
  error?: Writable;
  /** The environment the provider may read (its `ProviderContext.env`). @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
  /** Ends serving as `shutdown` would (the runner aborts it on SIGTERM). */
  signal?: AbortSignal;
}

/** How serving ended: `exitCode` is what a child process should exit with. */
export interface ServeResult {
  /** 0 after `shutdown` or the end of input; 1 when the handshake failed. */
  exitCode: 0 | 1;
  reason: 'shutdown' | 'end-of-input' | 'signal' | 'initialize-failed';
}

/**
 * Serves one provider over the out-of-process protocol (PROTOCOL.md): reads JSON-RPC lines
 * from `input`, answers on `output`. On `initialize` it creates the provider with
 * {@link createProvider} (same checks as in process: SDK API version, configuration schema,
 * capabilities), then answers requests concurrently, in any order. Values leave as base64 and
 * the buffers that held them are zeroed once written; a value whose line would exceed the
 * host's `maxMessageBytes` is refused with `DSO_PROVIDER_TOO_LARGE` instead.
 * Resolves after `shutdown`, at the end of input, or when `signal` aborts, once the provider is
 * closed.
 *
 * @throws never: failures are answered to the host as JSON-RPC errors
 * @example
 * import provider from './my-provider.js';
 * const { exitCode } = await serveProvider(provider, { input: process.stdin, output: process.stdout });
 * process.exit(exitCode);
 */
export function serveProvider(
  definition: ProviderDefinition,
  options: ServeProviderOptions,
): Promise<ServeResult> {
  return serveProviderFrom(async () => definition, options);
}

/**
 * {@link serveProvider} for a definition still being loaded (the runner): a load failure is
 * answered to `initialize`, so the host gets the clear error through the protocol.
 * @internal
 */
export function serveProviderFrom(
  load: () => Promise<ProviderDefinition>,
  options: ServeProviderOptions,
): Promise<ServeResult> {
  const { input, output } = options;
  const diagnostics = options.error ?? process.stderr;
  const loading = load();
  // Settled here so a rejected load is never reported as unhandled before initialize asks.
  loading.catch(() => undefined);

  let provider: SecretProvider | undefined;
  let initializing = false;
  let name = 'provider';
  let hostMaxBytes = DEFAULT_MAX_MESSAGE_BYTES;
  let finished = false;
  const calls = new Map<RpcId, AbortController>();
  const subscriptions = new Map<string, { controller: AbortController; requestId: RpcId }>();
  let nextSubscription = 1;
  /** Requests that arrived while initialize was running, answered once it is. */
  const waiting: RpcRequest[] = [];

  const say = (text: string) => {
    try {
      diagnostics.write(`dso-provider: ${text}\n`);
    } catch {
      // Diagnostics are best effort: a closed stderr must not stop serving.
    }
  };

  let outputBroken = false;
  output.on('error', () => {
    // The host closed our stdout (it exited or reset us): nothing more can be answered.
    outputBroken = true;
    finish({ exitCode: 0, reason: 'end-of-input' });
  });

  let corked = false;
  const writeLine = (line: string) => {
    if (outputBroken || finished) return;
    const bytes = Buffer.from(line, 'utf8');
    // Answers finished in one turn of the event loop leave together (one write on a pipe).
    if (!corked) {
      corked = true;
      output.cork();
      process.nextTick(() => {
        corked = false;
        output.uncork();
      });
    }
    output.write(bytes, () => bytes.fill(0));
  };
  const respond = (id: RpcId | null, result: unknown) =>
    writeLine(encodeLine({ jsonrpc: '2.0', id, result }));
  const respondError = (id: RpcId | null, error: RpcError) =>
    writeLine(encodeLine({ jsonrpc: '2.0', id, error }));
  const notify = (method: string, params: unknown) =>
    writeLine(encodeLine({ jsonrpc: '2.0', method, params }));

  const log: ProviderLogger = {
    debug: (message, fields) => sendLog('debug', message, fields),
    info: (message, fields) => sendLog('info', message, fields),
    warn: (message, fields) => sendLog('warn', message, fields),
    error: (message, fields) => sendLog('error', message, fields),
  };
  function sendLog(level: string, message: unknown, fields?: Record<string, unknown>) {
    const text = String(message).slice(0, MAX_LOG_MESSAGE_CHARS);
    let line = safeLogLine(level, text, fields);
    if (Buffer.byteLength(line) > hostMaxBytes) line = safeLogLine(level, text, undefined);
    if (Buffer.byteLength(line) <= hostMaxBytes) writeLine(line);
  }

  let resolveDone: (result: ServeResult) => void = () => undefined;
  const done = new Promise<ServeResult>((resolve) => {
    resolveDone = resolve;
  });

  let finishing: Promise<void> | undefined;
  function finish(result: ServeResult, beforeExit?: () => void): Promise<void> {
    finishing ??= (async () => {
      for (const controller of calls.values()) controller.abort(shutdownReason());
      for (const { controller } of subscriptions.values()) controller.abort(shutdownReason());
      if (provider !== undefined) {
        const closing = provider.close().catch((error: unknown) => {
          say(`provider close failed: ${describe(error)}`);
        });
        await withDeadline(closing, CLOSE_DEADLINE_MS);
      }
      beforeExit?.();
      finished = true;
      input.off('data', onData);
      input.off('end', onEnd);
      resolveDone(result);
    })();
    return finishing;
  }

  const reader = createLineReader(DEFAULT_MAX_MESSAGE_BYTES, {
    onLine(line) {
      if (line.length === 0 || finished) return;
      let value: unknown;
      try {
        value = JSON.parse(line.toString('utf8'));
      } catch {
        say(`protocol error: a line from the host is not JSON (${line.length} bytes)`);
        respondError(null, rpcError(RPC_ERROR.PARSE_ERROR, 'parse error: the line is not JSON'));
        return;
      }
      const parsed = classifyMessage(value);
      switch (parsed.kind) {
        case 'request':
          handleRequest(parsed.message);
          return;
        case 'notification':
          handleNotification(parsed.message.method, parsed.message.params);
          return;
        case 'response':
          // The host sends no requests' answers to a child in this version: nothing to match.
          return;
        default:
          say(`protocol error: ${parsed.reason}`);
          respondError(
            parsed.id ?? null,
            rpcError(RPC_ERROR.INVALID_REQUEST, `invalid request: ${parsed.reason}`),
          );
      }
    },
    onOversized(_head, seen) {
      say(`protocol error: a line from the host passed ${seen} bytes, over the limit`);
      respondError(
        null,
        rpcError(RPC_ERROR.INVALID_REQUEST, 'invalid request: the line is over the size limit'),
      );
    },
  });
  const onData = (chunk: Buffer) => reader.push(chunk);
  const onEnd = () => {
    reader.end();
    void finish({ exitCode: 0, reason: 'end-of-input' });
  };
  input.on('data', onData);
  input.on('end', onEnd);
  input.on('error', onEnd);
  // For the child's whole life: never stopped.
  onAbort(options.signal, () => void finish({ exitCode: 0, reason: 'signal' }));

  function handleNotification(method: string, params: unknown) {
    if (method === '$/cancelRequest') {
      const id = (params as { id?: unknown } | undefined)?.id;
      if (typeof id !== 'number' && typeof id !== 'string') return;
      calls.get(id)?.abort(cancelReason());
      for (const [subscription, entry] of subscriptions) {
        if (entry.requestId === id) {
          entry.controller.abort(cancelReason());
          subscriptions.delete(subscription);
        }
      }
    }
    // Other notifications (and `$/…` ones this version does not know) are ignored, as JSON-RPC says.
  }

  function handleRequest(request: RpcRequest) {
    if (initializing && provider === undefined && request.method !== 'initialize') {
      // The host waits for the handshake before sending more; a hand-driven one may not.
      if (waiting.length < MAX_WAITING_REQUESTS) waiting.push(request);
      else
        respondError(
          request.id,
          rpcError(RPC_ERROR.INVALID_REQUEST, 'too many requests before initialize was answered'),
        );
      return;
    }
    const { id, method } = request;
    const params = (request.params ?? {}) as Record<string, unknown>;
    if (typeof params !== 'object' || params === null || Array.isArray(params)) {
      respondError(id, rpcError(RPC_ERROR.INVALID_PARAMS, `${method}: params must be an object`));
      return;
    }
    if (method === 'initialize') {
      void initialize(id, params as unknown as InitializeParams);
      return;
    }
    if (method === 'shutdown') {
      void finish({ exitCode: 0, reason: 'shutdown' }, () => respond(id, null));
      return;
    }
    if (provider === undefined) {
      respondError(
        id,
        rpcError(RPC_ERROR.NOT_INITIALIZED, `${method} before initialize: send initialize first`),
      );
      return;
    }
    if (method === 'unwatch') {
      const subscription = params.subscription;
      const entry = typeof subscription === 'string' ? subscriptions.get(subscription) : undefined;
      if (entry) {
        entry.controller.abort(cancelReason());
        subscriptions.delete(subscription as string);
      }
      respond(id, null);
      return;
    }
    if (method === 'watch') {
      startWatch(provider, id, params);
      return;
    }
    const run = operation(provider, id, method, params);
    if (run === undefined) {
      respondError(
        id,
        rpcError(
          RPC_ERROR.METHOD_NOT_FOUND,
          `method ${method} is not implemented by provider ${name}`,
        ),
      );
      return;
    }
    if (calls.has(id)) {
      respondError(
        id,
        rpcError(RPC_ERROR.INVALID_REQUEST, `request id ${id} is already in flight`),
      );
      return;
    }
    const controller = new AbortController();
    calls.set(id, controller);
    run(controller.signal).then(
      (line) => {
        calls.delete(id);
        writeLine(line);
      },
      (error: unknown) => {
        calls.delete(id);
        respondError(id, toRpcError(error, name));
      },
    );
  }

  /** The provider call for `method`, resolving to its answer line. */
  function operation(
    live: SecretProvider,
    id: RpcId,
    method: string,
    params: Record<string, unknown>,
  ): ((signal: AbortSignal) => Promise<string>) | undefined {
    const answer = (result: unknown, path?: string) => {
      const line = encodeLine({ jsonrpc: '2.0', id, result });
      const bytes = Buffer.byteLength(line);
      if (bytes > hostMaxBytes) throw tooLarge(method, bytes, path);
      return line;
    };
    switch (method) {
      case 'resolve':
        return async (signal) => {
          const request = secretRequest(params);
          const { value, version } = await live.resolve(request, { signal });
          try {
            return encodeResolved(id, value, version, request.path);
          } finally {
            if (isSecretValue(value)) value.dispose();
          }
        };
      case 'list':
        if (!live.list) return undefined;
        return async (signal) => {
          const prefix = typeof params.prefix === 'string' ? params.prefix : undefined;
          const paths = await live.list!(prefix, { signal });
          return answer({ paths: [...paths] });
        };
      case 'probe':
        if (!live.probe) return undefined;
        return async (signal) => {
          const request = secretRequest(params);
          const { version } = await live.probe!(request, { signal });
          return answer({ version }, request.path);
        };
      case 'health':
        if (!live.health) return undefined;
        return async (signal) => {
          const health = await live.health!({ signal });
          return answer({
            ok: health?.ok === true,
            ...(typeof health?.detail === 'string' ? { detail: health.detail } : {}),
          });
        };
      default:
        return undefined;
    }
  }

  function tooLarge(
    what: string,
    bytes: number,
    path?: string,
    valueBytes?: number,
  ): ProviderError {
    const subject =
      valueBytes === undefined
        ? `the ${what} answer of provider ${name}${path === undefined ? '' : ` for ${path}`} is`
        : `secret ${path} from provider ${name} is ${valueBytes} bytes,`;
    return new ProviderError(
      'DSO_PROVIDER_TOO_LARGE',
      `${subject} a ${bytes}-byte message over the host's limit of ${hostMaxBytes} bytes: ` +
        maxMessageBytesAdvice(name, hostMaxBytes, valueBytes),
      { provider: name, ...(path === undefined ? {} : { path }) },
    );
  }

  /**
   * The `resolve` answer line, built by hand so the value is encoded once; its size is
   * computed before the base64 text is made, so a 10 MiB value is refused without building a
   * 14 MB string.
   */
  function encodeResolved(id: RpcId, value: unknown, version: string, path: string): string {
    if (!isSecretValue(value)) {
      throw new ProviderError('DSO_PROVIDER_INTERNAL', `provider ${name} returned no SecretValue`, {
        provider: name,
        path,
      });
    }
    const head = `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"value":{"base64":"`;
    const tail = `"},"version":${JSON.stringify(version)}}}\n`;
    const lineBytes =
      Buffer.byteLength(head) + base64Length(value.byteLength) + Buffer.byteLength(tail);
    if (lineBytes > hostMaxBytes) throw tooLarge('resolve', lineBytes, path, value.byteLength);
    return head + value.reveal().toString('base64') + tail;
  }

  function startWatch(live: SecretProvider, id: RpcId, params: Record<string, unknown>) {
    if (!live.watch) {
      respondError(
        id,
        rpcError(RPC_ERROR.METHOD_NOT_FOUND, `method watch is not implemented by provider ${name}`),
      );
      return;
    }
    const paths = params.paths;
    if (!Array.isArray(paths) || !paths.every((path) => typeof path === 'string')) {
      respondError(
        id,
        rpcError(RPC_ERROR.INVALID_PARAMS, 'watch: paths must be an array of strings'),
      );
      return;
    }
    const controller = new AbortController();
    let iterable: AsyncIterable<{ path: string; version: string }>;
    try {
      iterable = live.watch(paths as string[], { signal: controller.signal });
    } catch (error) {
      respondError(id, toRpcError(error, name));
      return;
    }
    const subscription = `w${nextSubscription++}`;
    subscriptions.set(subscription, { controller, requestId: id });
    // The answer is written before the first change, so the host always knows the subscription.
    respond(id, { subscription });
    void (async () => {
      try {
        for await (const change of iterable) {
          if (controller.signal.aborted) break;
          notify('watch/change', { subscription, path: change.path, version: change.version });
        }
        if (!controller.signal.aborted) notify('watch/end', { subscription });
      } catch (error) {
        if (!controller.signal.aborted) {
          const { message, data } = toRpcError(error, name);
          notify('watch/end', { subscription, error: { message, data } });
        }
      } finally {
        subscriptions.delete(subscription);
      }
    })();
  }

  async function initialize(id: RpcId, params: InitializeParams) {
    if (provider !== undefined || initializing) {
      respondError(id, rpcError(RPC_ERROR.INVALID_REQUEST, 'initialize was already sent'));
      return;
    }
    initializing = true;
    try {
      await runInitialize(id, params);
    } finally {
      initializing = false;
      for (const request of waiting.splice(0)) handleRequest(request);
    }
  }

  async function runInitialize(id: RpcId, params: InitializeParams) {
    const fail = (error: unknown) => {
      respondError(id, toRpcError(error, name));
      void finish({ exitCode: 1, reason: 'initialize-failed' });
    };
    if (typeof params.name === 'string') name = params.name;
    if (params.protocolVersion !== PROTOCOL_VERSION) {
      fail(
        new ProviderError(
          'DSO_PROVIDER_INVALID_CONFIG',
          `protocol version ${String(params.protocolVersion)} is not supported: this provider child ` +
            `speaks ${PROTOCOL_VERSION}; use a host and a provider runner from matching DSO releases`,
          { provider: name },
        ),
      );
      return;
    }
    if (typeof params.maxMessageBytes === 'number' && params.maxMessageBytes > 0) {
      hostMaxBytes = params.maxMessageBytes;
      // Requests are small; the host's limit also bounds what the child reads.
      reader.setMaxLineBytes(Math.max(hostMaxBytes, DEFAULT_MAX_MESSAGE_BYTES));
    }
    let definition: ProviderDefinition;
    try {
      definition = await loading;
    } catch (error) {
      fail(error);
      return;
    }
    const hostVersions = Array.isArray(params.sdkApiVersions) ? params.sdkApiVersions : [];
    if (!hostVersions.includes(definition.sdkApiVersion)) {
      fail(
        new ProviderError(
          'DSO_PROVIDER_INVALID_CONFIG',
          `provider type ${String(definition.type)} was built for provider SDK API version ` +
            `${String(definition.sdkApiVersion)}; the host supports ${hostVersions.join(', ') || 'none'}: ` +
            'install a release of the provider built for it, or upgrade DSO',
          { provider: name },
        ),
      );
      return;
    }
    try {
      provider = await createProvider(definition, params.config, {
        name,
        log,
        env: options.env ?? process.env,
      });
    } catch (error) {
      fail(error);
      return;
    }
    if (finished || finishing) {
      await provider.close().catch(() => undefined);
      return;
    }
    const result: InitializeResult = {
      protocolVersion: PROTOCOL_VERSION,
      sdkApiVersion: definition.sdkApiVersion,
      type: definition.type,
      capabilities: { ...definition.capabilities },
      maxMessageBytes: Math.max(hostMaxBytes, DEFAULT_MAX_MESSAGE_BYTES),
    };
    respond(id, result);
  }

  return done;
}

function secretRequest(params: Record<string, unknown>): { path: string; version?: string } {
  // The guard from createProvider checks the path; a non-string one arrives as such and is refused there.
  return {
    path: params.path as string,
    ...(typeof params.version === 'string' ? { version: params.version } : {}),
  };
}

function safeLogLine(level: string, message: string, fields?: Record<string, unknown>): string {
  let safeFields: unknown;
  if (fields !== undefined) {
    try {
      // SecretValue serialises as [REDACTED]; a field that cannot be serialised drops all fields.
      safeFields = JSON.parse(JSON.stringify(fields));
    } catch {
      safeFields = undefined;
    }
  }
  return encodeLine({
    jsonrpc: '2.0',
    method: 'log',
    params: {
      level,
      message,
      ...(typeof safeFields === 'object' && safeFields !== null ? { fields: safeFields } : {}),
    },
  });
}

function describe(error: unknown): string {
  // Only the error's class and code: a backend's message may quote what it was given.
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return `${error.name}${typeof code === 'string' ? ` ${code}` : ''}`;
  }
  return inspect(typeof error);
}

function shutdownReason(): Error {
  const error = new Error('the provider child is shutting down');
  error.name = 'AbortError';
  return error;
}

function cancelReason(): Error {
  const error = new Error('the host cancelled the call');
  error.name = 'AbortError';
  return error;
}

async function withDeadline(promise: Promise<unknown>, ms: number): Promise<void> {
  const done = new AbortController();
  try {
    await Promise.race([promise, pause(ms, { signal: done.signal, ref: false })]);
  } finally {
    done.abort();
  }
}
