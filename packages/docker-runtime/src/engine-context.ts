import type { Duplex, Readable } from 'node:stream';
import type Docker from 'dockerode';
import type { EngineDialect } from './engine-dialect.js';

/** The runtime's timeouts, validated once at creation. */
export interface RuntimeSettings {
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  writeTimeoutMs: number;
}

/**
 * What the runtime's operation modules share (events, exec, control, replace, users). Internal:
 * never exported from the package, so dockerode's types stay inside it.
 */
export interface EngineContext {
  readonly docker: Docker;
  /** Which engine answers, and every way it differs from Docker (engine-dialect.ts). */
  readonly dialect: EngineDialect;
  /** The endpoint as the user wrote it, for messages: `unix:///var/run/docker.sock`. */
  readonly host: string;
  readonly settings: RuntimeSettings;
  /** Aborts when the runtime closes. */
  readonly closed: AbortSignal;
  /** Ids of old containers with a replacement in flight in this runtime. */
  readonly replacing: Set<string>;
  /** Keeps a socket or stream to destroy on close; call the returned function once done with it. */
  track(stream: Duplex | Readable): () => void;
  /** @throws DockerRuntimeError DSO_DOCKER_CLOSED once the runtime is closed */
  assertOpen(operation: string): void;
  /**
   * One non-streaming engine call under the request timeout, the caller's signal and close;
   * whatever it throws becomes a DockerRuntimeError naming `operation` (and `containerId`).
   */
  request<T>(
    operation: string,
    caller: AbortSignal | undefined,
    containerId: string | undefined,
    call: (signal: AbortSignal) => Promise<T>,
  ): Promise<T>;
}
