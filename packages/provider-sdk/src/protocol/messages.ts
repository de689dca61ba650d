import {
  isProviderError,
  PROVIDER_ERROR_CODES,
  ProviderError,
  type ProviderErrorCode,
  toProviderError,
} from '../provider-error.js';

/** The protocol version this SDK speaks (see PROTOCOL.md). */
export const PROTOCOL_VERSION = 1;

/**
 * The largest secret value DSO carries by default, end to end (`dso secret set`, the provider
 * protocol, the agent): 1 MiB. Larger values need a larger `maxMessageBytes` (in `dso.yaml`,
 * `providers.<name>.maxMessageBytes`); see {@link maxSecretBytesFor}.
 */
export const DEFAULT_MAX_SECRET_BYTES = 1_048_576;

/** Room in a message for all but a value's base64: the JSON-RPC envelope, id and version. */
export const MESSAGE_OVERHEAD_BYTES = 65_536;

/**
 * The largest line either side must accept, and the host's default limit: 1.5 MiB, which carries
 * a {@link DEFAULT_MAX_SECRET_BYTES} value (1,398,104 bytes of base64) and its envelope.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_572_864;

/**
 * The largest secret value a `maxMessageBytes` carries: its base64 (4/3 of its size) and
 * {@link MESSAGE_OVERHEAD_BYTES} must fit. 1,130,496 bytes for the default limit.
 */
export function maxSecretBytesFor(maxMessageBytes: number): number {
  return Math.max(0, 3 * Math.floor((maxMessageBytes - MESSAGE_OVERHEAD_BYTES) / 4));
}

/** The smallest `maxMessageBytes` that carries a value of `secretBytes` bytes. */
export function messageBytesFor(secretBytes: number): number {
  return base64Length(secretBytes) + MESSAGE_OVERHEAD_BYTES;
}

/**
 * What to do when a value does not fit a provider's messages, for error messages: the setting
 * to raise, naming the provider, and for a known value size the least that carries it.
 */
export function maxMessageBytesAdvice(
  provider: string,
  maxMessageBytes: number,
  valueBytes?: number,
): string {
  const enough =
    valueBytes === undefined ? '' : ` to at least ${messageBytesFor(valueBytes)} for this value`;
  return (
    `raise providers.${provider}.maxMessageBytes in dso.yaml${enough} (the host's ` +
    `maxMessageBytes, now ${maxMessageBytes}, carries values up to ${maxSecretBytesFor(maxMessageBytes)} bytes)`
  );
}

/** The smallest `maxMessageBytes` a host may set: every request must still fit. */
export const MIN_MAX_MESSAGE_BYTES = 65_536;

/** JSON-RPC 2.0 error codes this protocol uses. */
export const RPC_ERROR = Object.freeze({
  /** A line that is not JSON. */
  PARSE_ERROR: -32700,
  /** JSON that is not a JSON-RPC 2.0 request. */
  INVALID_REQUEST: -32600,
  /** A method the child does not implement (or a capability it did not declare). */
  METHOD_NOT_FOUND: -32601,
  /** Parameters of the wrong shape. */
  INVALID_PARAMS: -32602,
  /** A request other than `initialize` before the handshake. */
  NOT_INITIALIZED: -32002,
  /** A failure of the provider: `data.code` says which. */
  PROVIDER_ERROR: -32000,
});

export type RpcId = number | string;

/** The `error` member of a JSON-RPC response, as this protocol fills it. */
export interface RpcError {
  code: number;
  message: string;
  data: { code: ProviderErrorCode; retryable: boolean };
}

export interface RpcRequest {
  jsonrpc: '2.0';
  id: RpcId;
  method: string;
  params?: unknown;
}

export interface RpcNotification {
  jsonrpc: '2.0';
  method: string;
  params?: unknown;
}

export interface RpcResponse {
  jsonrpc: '2.0';
  id: RpcId | null;
  result?: unknown;
  error?: RpcError;
}

/** What a line held, once checked: one of the three JSON-RPC message kinds, or why it is none. */
export type ParsedMessage =
  | { kind: 'request'; message: RpcRequest }
  | { kind: 'notification'; message: RpcNotification }
  | { kind: 'response'; message: RpcResponse }
  | { kind: 'invalid'; reason: string; id?: RpcId | null };

/** The `initialize` request's parameters (host → child). */
export interface InitializeParams {
  protocolVersion: number;
  /** Provider SDK API versions the host can host. */
  sdkApiVersions: number[];
  /** The provider's configured name. */
  name: string;
  /** The provider's configuration, validated by the child with the provider's schema. */
  config: unknown;
  /** The longest line the host reads; the child never writes a longer one. */
  maxMessageBytes?: number;
}

/** The `initialize` result (child → host). */
export interface InitializeResult {
  protocolVersion: number;
  sdkApiVersion: number;
  type: string;
  capabilities: { list: boolean; watch: boolean; probe: boolean; health: boolean };
  /** The longest line the child reads. */
  maxMessageBytes: number;
}

/**
 * Checks one decoded line against JSON-RPC 2.0. Batches are not part of this protocol, so an
 * array is invalid; an `id` must be a number or a string (null only in a response to a line
 * that could not be read).
 */
export function classifyMessage(value: unknown): ParsedMessage {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { kind: 'invalid', reason: 'not a JSON-RPC object' };
  }
  const message = value as Record<string, unknown>;
  const id = message.id;
  const validId = typeof id === 'number' || typeof id === 'string';
  if (message.jsonrpc !== '2.0') {
    return {
      kind: 'invalid',
      reason: 'jsonrpc is not "2.0"',
      ...(validId ? { id: id as RpcId } : {}),
    };
  }
  if (typeof message.method === 'string') {
    if (id === undefined) return { kind: 'notification', message: message as never };
    if (validId) return { kind: 'request', message: message as never };
    return { kind: 'invalid', reason: 'request id is not a number or a string' };
  }
  if ('result' in message || 'error' in message) {
    if (!validId && id !== null) {
      return { kind: 'invalid', reason: 'response id is not a number or a string' };
    }
    if ('result' in message && 'error' in message) {
      return { kind: 'invalid', reason: 'response has both result and error', id: id as RpcId };
    }
    if ('error' in message && !isRpcErrorObject(message.error)) {
      return { kind: 'invalid', reason: 'response error is malformed', id: id as RpcId };
    }
    return { kind: 'response', message: message as never };
  }
  return { kind: 'invalid', reason: 'neither a request, a notification nor a response' };
}

function isRpcErrorObject(value: unknown): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { code?: unknown }).code === 'number' &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}

/**
 * The error object for a failure inside the child: the provider error's code and message
 * (built from names and paths, never values), never its cause.
 */
export function toRpcError(error: unknown, provider: string, rpcCode?: number): RpcError {
  const normalised = isProviderError(error) ? error : toProviderError(error, provider);
  return {
    code: rpcCode ?? RPC_ERROR.PROVIDER_ERROR,
    message: normalised.message,
    data: { code: normalised.code, retryable: normalised.retryable },
  };
}

/** A protocol-level error object (method not found, invalid params, …). */
export function rpcError(code: number, message: string): RpcError {
  return { code, message, data: { code: 'DSO_PROVIDER_INTERNAL', retryable: false } };
}

/**
 * Turns an error object from the child back into a {@link ProviderError}: its `data.code` when
 * it is one of the stable codes, `DSO_PROVIDER_INTERNAL` otherwise.
 */
export function fromRpcError(
  error: unknown,
  provider: string,
  path: string | undefined,
): ProviderError {
  const object = (typeof error === 'object' && error !== null ? error : {}) as {
    message?: unknown;
    data?: { code?: unknown; retryable?: unknown };
  };
  const data = typeof object.data === 'object' && object.data !== null ? object.data : {};
  const code = (PROVIDER_ERROR_CODES as readonly unknown[]).includes(data.code)
    ? (data.code as ProviderErrorCode)
    : 'DSO_PROVIDER_INTERNAL';
  const message =
    typeof object.message === 'string' && object.message !== ''
      ? object.message.slice(0, 2_048)
      : `provider ${provider} failed`;
  return new ProviderError(code, message, {
    provider,
    ...(path === undefined ? {} : { path }),
    ...(typeof data.retryable === 'boolean' ? { retryable: data.retryable } : {}),
  });
}

/** The byte length of `n` bytes in base64 (with padding). */
export function base64Length(n: number): number {
  return 4 * Math.ceil(n / 3);
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** True when `text` is canonical padded base64 (what `Buffer#toString('base64')` writes). */
export function isBase64(text: string): boolean {
  return text.length % 4 === 0 && BASE64.test(text);
}

/** One JSON-RPC message as a line: JSON (which never holds a raw newline) and `\n`. */
export function encodeLine(message: RpcRequest | RpcNotification | RpcResponse): string {
  return `${JSON.stringify(message)}\n`;
}
