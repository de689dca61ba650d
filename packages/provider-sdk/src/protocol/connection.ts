import { type ChildProcess, spawn } from 'node:child_process';
import { onAbort, sleep } from '@dso/async';
import { createLineReader, createTextLineSplitter, OVERSIZED_HEAD_BYTES } from './framing.js';
import {
  classifyMessage,
  DEFAULT_MAX_MESSAGE_BYTES,
  encodeLine,
  RPC_ERROR,
  type RpcId,
  rpcError,
} from './messages.js';

/** How a request ended, as the connection saw it; the host turns it into a result or an error. */
export type Outcome =
  | { type: 'result'; result: unknown }
  | { type: 'error'; error: unknown }
  | { type: 'timeout' }
  | { type: 'aborted'; reason: unknown }
  | { type: 'lost'; detail: string }
  | { type: 'too-large'; bytes: number; direction: 'request' | 'answer' }
  | { type: 'protocol'; reason: string };

/** What a {@link Connection} tells its owner. */
export interface ConnectionEvents {
  onNotification(connection: Connection, method: string, params: unknown): void;
  /** The child broke the protocol: the connection can no longer be trusted. */
  onProtocolError(connection: Connection, reason: string): void;
  /** The child is gone (exited, closed its stdout, or never started). */
  onLost(connection: Connection, detail: string): void;
  onStderr(connection: Connection, text: string, truncatedBytes: number): void;
}

export interface ConnectionOptions {
  command: string[];
  cwd: string;
  env: Record<string, string>;
  /** The longest line read from the child. */
  maxMessageBytes: number;
  /** Longest stderr line kept; the rest of it is counted, not kept. */
  maxStderrLineBytes: number;
  killGraceMs: number;
  events: ConnectionEvents;
}

export interface RequestOptions {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /**
   * Sees the outcome synchronously, before any later line is read: a `watch` answer registers
   * its subscription here, so the changes that follow it on the same read are not missed.
   */
  onSettled?: ((outcome: Outcome) => void) | undefined;
}

interface Pending {
  method: string;
  settle(outcome: Outcome): void;
}

/** Answers that may still arrive for calls the host gave up on; they are dropped, not errors. */
const ABANDONED_IDS_KEPT = 4_096;
/** How long after the process exits its stdout may take to deliver what is left. */
const DRAIN_AFTER_EXIT_MS = 200;
const ID_IN_HEAD = /(?:^|[{,])\s*"id"\s*:\s*(-?\d{1,15})\s*[,}]/;

/**
 * One child process and the JSON-RPC conversation with it: requests pipelined by id, each
 * with its own deadline and cancellation, answers matched by id. It decides nothing about
 * restarts: it reports to its owner (the process provider), which does.
 * @internal
 */
export class Connection {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  /** The longest line the child reads (from its `initialize` answer). */
  childMaxBytes = DEFAULT_MAX_MESSAGE_BYTES;
  #lost: string | undefined;
  #nextId = 1;
  readonly #pending = new Map<RpcId, Pending>();
  readonly #abandoned = new Set<RpcId>();
  readonly #options: ConnectionOptions;
  #exitCode: number | null = null;
  #exitSignal: NodeJS.Signals | null = null;
  #hasExited = false;
  #corked = false;
  #sawStderr = false;
  #startFailed = false;

  constructor(options: ConnectionOptions) {
    this.#options = options;
    const [file, ...args] = options.command;
    this.child = spawn(file as string, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
      // Its own process group: a terminal's Ctrl-C (SIGINT to the whole foreground group) reaches
      // the host only, which stops it after the work in flight, instead of killing it at once
      // and seeing that as a crash to restart from. The child still ends when the host does:
      // its input closes.
      detached: true,
    });
    let markExited: () => void = () => undefined;
    this.exited = new Promise((resolve) => {
      markExited = resolve;
    });
    const { events } = options;
    const reader = createLineReader(options.maxMessageBytes, {
      onLine: (line) => this.#onLine(line),
      onOversized: (head, seen) => this.#onOversized(head, seen),
      onEnd: (trailing) => {
        if (trailing > 0 && this.#lost === undefined) {
          events.onProtocolError(
            this,
            `output ended inside a message (${trailing} bytes without a newline)`,
          );
        }
      },
    });
    const stderr = createTextLineSplitter(options.maxStderrLineBytes, (text, truncated) =>
      events.onStderr(this, text, truncated),
    );
    this.child.stdout?.on('data', (chunk: Buffer) => {
      if (this.#lost === undefined) reader.push(chunk);
      else chunk.fill(0);
    });
    this.child.stdout?.on('end', () => {
      reader.end();
      // The exit usually follows at once: wait for it, so the reason names the exit code.
      if (this.#hasExited) this.#lose(this.#exitDetail());
      else {
        const timer = setTimeout(
          () => this.#lose(this.#hasExited ? this.#exitDetail() : 'closed its output'),
          DRAIN_AFTER_EXIT_MS,
        );
        timer.unref();
      }
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      if (chunk.length > 0) this.#sawStderr = true;
      stderr.push(chunk);
    });
    this.child.stderr?.on('end', () => stderr.end());
    // Writes to a child that just died fail with EPIPE; the exit is reported on its own.
    this.child.stdin?.on('error', () => undefined);
    this.child.on('error', (error: NodeJS.ErrnoException) => {
      if (this.child.pid === undefined) {
        this.#hasExited = true;
        this.#startFailed = true;
        markExited();
        this.#lose(`could not be started: ${startFailure(file as string, error)}`);
      }
    });
    this.child.on('exit', (code, signal) => {
      this.#hasExited = true;
      this.#exitCode = code;
      this.#exitSignal = signal;
      markExited();
      const timer = setTimeout(() => this.#lose(this.#exitDetail()), DRAIN_AFTER_EXIT_MS);
      timer.unref();
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Whether the child wrote anything to stderr (then the log has it). */
  get sawStderr(): boolean {
    return this.#sawStderr;
  }

  /** Whether the process could not be started at all (no such program, not executable, …). */
  get startFailed(): boolean {
    return this.#startFailed;
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  get isLost(): boolean {
    return this.#lost !== undefined;
  }

  /** Sends one request; the outcome never rejects. */
  request(method: string, params: unknown, options: RequestOptions): Promise<Outcome> {
    if (this.#lost !== undefined) return Promise.resolve({ type: 'lost', detail: this.#lost });
    if (options.signal?.aborted) {
      return Promise.resolve({ type: 'aborted', reason: options.signal.reason });
    }
    const id = this.#nextId++;
    const line = encodeLine({ jsonrpc: '2.0', id, method, params });
    const bytes = Buffer.byteLength(line);
    if (bytes > this.childMaxBytes) {
      return Promise.resolve({ type: 'too-large', bytes, direction: 'request' });
    }
    return new Promise<Outcome>((resolve) => {
      let stopListening = () => {};
      const timer = setTimeout(() => {
        this.#abandon(id);
        settle({ type: 'timeout' });
      }, options.timeoutMs);
      const settle = (outcome: Outcome) => {
        if (!this.#pending.delete(id)) return;
        clearTimeout(timer);
        stopListening();
        options.onSettled?.(outcome);
        resolve(outcome);
      };
      this.#pending.set(id, { method, settle });
      stopListening = onAbort(options.signal, (reason) => {
        this.#abandon(id);
        settle({ type: 'aborted', reason });
      });
      this.#write(line);
    });
  }

  notify(method: string, params: unknown): void {
    if (this.#lost !== undefined) return;
    this.#write(encodeLine({ jsonrpc: '2.0', method, params }));
  }

  /** Lines written in one turn of the event loop leave in one system call (pipelined calls). */
  #write(line: string): void {
    const stdin = this.child.stdin;
    if (!stdin || stdin.destroyed) return;
    if (!this.#corked) {
      this.#corked = true;
      stdin.cork();
      process.nextTick(() => {
        this.#corked = false;
        stdin.uncork();
      });
    }
    stdin.write(line);
  }

  /**
   * Fails every call in flight with `detail` and stops reading: what the owner does before it
   * kills a child it no longer trusts.
   */
  abandon(detail: string): void {
    this.#lose(detail);
  }

  /**
   * Asks the child to shut down, waits up to `graceMs` for it to answer and exit, then kills it.
   * Resolves once the process is gone.
   */
  async shutdown(graceMs: number): Promise<void> {
    if (!this.#hasExited && this.#lost === undefined) {
      await this.request('shutdown', undefined, { timeoutMs: graceMs });
    }
    this.#lose('the provider was closed');
    this.child.stdin?.end();
    await Promise.race([this.exited, sleep(graceMs, { ref: false })]);
    await this.kill();
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves once the process has exited. */
  async kill(): Promise<void> {
    this.#lose(this.#lost ?? 'was stopped');
    if (this.#hasExited) return;
    this.child.stdin?.destroy();
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (!this.#hasExited) this.child.kill('SIGKILL');
    }, this.#options.killGraceMs);
    await this.exited;
    clearTimeout(timer);
  }

  #exitDetail(): string {
    return this.#exitSignal !== null
      ? `was killed by ${this.#exitSignal}`
      : `exited with code ${String(this.#exitCode)}`;
  }

  #lose(detail: string): void {
    if (this.#lost !== undefined) return;
    this.#lost = detail;
    for (const pending of [...this.#pending.values()]) pending.settle({ type: 'lost', detail });
    this.#options.events.onLost(this, detail);
  }

  #abandon(id: RpcId): void {
    this.#abandoned.add(id);
    if (this.#abandoned.size > ABANDONED_IDS_KEPT) {
      const oldest = this.#abandoned.values().next().value as RpcId;
      this.#abandoned.delete(oldest);
    }
    this.notify('$/cancelRequest', { id });
  }

  #onLine(line: Buffer): void {
    if (this.#lost !== undefined) return;
    const text = line.toString('utf8');
    if (text.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.#protocolError(`a line is not JSON (${line.length} bytes)`);
      return;
    }
    const parsed = classifyMessage(value);
    switch (parsed.kind) {
      case 'response': {
        const { id } = parsed.message;
        const pending = id === null ? undefined : this.#pending.get(id);
        if (pending === undefined) {
          if (id !== null && this.#abandoned.delete(id)) return;
          this.#protocolError(
            id === null
              ? 'an error answer without an id (the child could not read a request)'
              : `an answer for unknown request id ${JSON.stringify(id)}`,
          );
          return;
        }
        if (parsed.message.error !== undefined) {
          pending.settle({ type: 'error', error: parsed.message.error });
        } else {
          pending.settle({ type: 'result', result: parsed.message.result });
        }
        return;
      }
      case 'notification':
        this.#options.events.onNotification(this, parsed.message.method, parsed.message.params);
        return;
      case 'request':
        // A child asks nothing of the host in this protocol version: refuse, as JSON-RPC says.
        this.child.stdin?.write(
          encodeLine({
            jsonrpc: '2.0',
            id: parsed.message.id,
            error: rpcError(
              RPC_ERROR.METHOD_NOT_FOUND,
              `the host has no method ${parsed.message.method}`,
            ),
          }),
        );
        return;
      default: {
        const pending = parsed.id == null ? undefined : this.#pending.get(parsed.id);
        pending?.settle({ type: 'protocol', reason: parsed.reason });
        this.#protocolError(`a line is not a JSON-RPC 2.0 message (${parsed.reason})`);
      }
    }
  }

  #onOversized(head: Buffer, seen: number): void {
    if (this.#lost !== undefined) return;
    // Which request it answered, when the id comes before the value (as every writer here
    // does): that call gets a clear TOO_LARGE rather than a bare reset.
    const match = ID_IN_HEAD.exec(head.subarray(0, OVERSIZED_HEAD_BYTES).toString('latin1'));
    const id = match ? Number(match[1]) : undefined;
    if (id !== undefined) {
      this.#pending.get(id)?.settle({ type: 'too-large', bytes: seen, direction: 'answer' });
    }
    this.#protocolError(
      `a line passed ${this.#options.maxMessageBytes} bytes (maxMessageBytes) before its end`,
    );
  }

  #protocolError(reason: string): void {
    this.#options.events.onProtocolError(this, reason);
  }
}

/**
 * Why `program` could not be started, for people: the path named, and what ENOENT and EACCES
 * mean for it (a program named without `/` is looked up on the child's PATH).
 */
function startFailure(program: string, error: NodeJS.ErrnoException): string {
  const code = error.code ?? error.name;
  const where = program.includes('/') ? program : `${program} (looked up on the PATH it is given)`;
  if (code === 'ENOENT') return `${where} was not found (ENOENT)`;
  if (code === 'EACCES') return `${where} is not executable (EACCES)`;
  return `${where} could not be run (${code})`;
}
