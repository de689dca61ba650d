import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { DockerRuntimeError } from './errors.js';

/** The engine's socket when neither the `host` option nor `DOCKER_HOST` names one. */
export const DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock';

/**
 * The engine when TLS is on and no host is named: the docker CLI's default with
 * `DOCKER_TLS_VERIFY`.
 */
export const DEFAULT_DOCKER_TLS_HOST = 'tcp://localhost:2376';

/** The port a `tcp://host` without one means, as for the docker CLI: 2375 plain, 2376 TLS. */
const DEFAULT_TCP_PORT = 2375;
const DEFAULT_TLS_PORT = 2376;

/** The files a TLS directory holds, as for `docker --tlsverify`. */
const TLS_FILES = ['ca.pem', 'cert.pem', 'key.pem'] as const;

/** Larger than any sane PEM file: a bound on what is read, not a format rule. */
const MAX_TLS_FILE_BYTES = 1024 * 1024;

/** Where the engine listens, parsed from `DOCKER_HOST` syntax. */
export type DockerEndpoint =
  | { kind: 'unix'; socketPath: string; display: string }
  | {
      kind: 'tcp';
      host: string;
      port: number;
      display: string;
      /** Verified TLS with a client certificate (`DOCKER_TLS_VERIFY`); plain HTTP when false. */
      tls: boolean;
    };

/** How TLS to the engine is configured, before any file is read. */
export interface DockerTlsSettings {
  /** Verify the engine's certificate against `ca.pem` and present `cert.pem`/`key.pem`. */
  verify: boolean;
  /** The directory holding `ca.pem`, `cert.pem` and `key.pem`, absolute. */
  certPath: string;
}

/** The PEM material of a TLS directory, read once at creation. Never logged or put in an error. */
export interface DockerTlsFiles {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** The directory they came from, for messages. */
  certPath: string;
}

/**
 * Parses `DOCKER_HOST` syntax: `unix:///path/to/docker.sock` or `tcp://host[:port]` (port 2375
 * when omitted, 2376 with TLS). Plain TCP carries secret values unencrypted, so it is refused
 * for anything but a loopback address unless `allowInsecureTcp` is set. With `tls` (verified
 * TLS and a client certificate, as `DOCKER_TLS_VERIFY` asks) any tcp host is allowed: that is
 * what TLS is for. `ssh://` is not supported.
 *
 * @throws DockerRuntimeError DSO_DOCKER_INVALID_HOST for any other syntax
 * @throws DockerRuntimeError DSO_DOCKER_INSECURE_HOST for plain TCP to a non-loopback host
 * @throws DockerRuntimeError DSO_DOCKER_TLS_INVALID for TLS with a unix socket
 */
export function parseDockerHost(
  value: string,
  options: { allowInsecureTcp?: boolean; tls?: boolean } = {},
): DockerEndpoint {
  const text = value.trim();
  const tls = options.tls === true;
  if (text.startsWith('unix://')) {
    const socketPath = text.slice('unix://'.length);
    if (!socketPath.startsWith('/')) {
      throw invalidHost(value, 'a unix socket needs an absolute path: unix:///var/run/docker.sock');
    }
    if (tls) {
      throw new DockerRuntimeError(
        'DSO_DOCKER_TLS_INVALID',
        `TLS was asked for, but ${text} is a unix socket: TLS applies to tcp:// hosts only. ` +
          'Unset DOCKER_TLS_VERIFY (or set tlsVerify: false) for a local socket, or use tcp://host:2376',
        { host: value },
      );
    }
    return { kind: 'unix', socketPath, display: `unix://${socketPath}` };
  }
  if (text.startsWith('tcp://')) {
    let url: URL;
    try {
      url = new URL(`http://${text.slice('tcp://'.length)}`);
    } catch (error) {
      throw invalidHost(value, 'expected tcp://host:port', error);
    }
    if (url.pathname !== '/' || url.search !== '' || url.username !== '' || url.hostname === '') {
      throw invalidHost(value, 'expected tcp://host:port');
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = url.port === '' ? (tls ? DEFAULT_TLS_PORT : DEFAULT_TCP_PORT) : Number(url.port);
    if (!tls && !isLoopback(host) && options.allowInsecureTcp !== true) {
      throw new DockerRuntimeError(
        'DSO_DOCKER_INSECURE_HOST',
        `refusing plain tcp to ${host}:${port}: secret files would cross the network unencrypted; ` +
          'use TLS (DOCKER_TLS_VERIFY=1 with DOCKER_CERT_PATH, or the tlsVerify and tlsCertPath options), ' +
          'run the agent on the docker host (unix socket), tunnel to a loopback port, or set allowInsecureTcp',
        { host, port },
      );
    }
    return { kind: 'tcp', host, port, display: `tcp://${url.host}`, tls };
  }
  throw invalidHost(value, 'expected unix:///path/to/docker.sock or tcp://host:port');
}

/**
 * The endpoint from the `host` option, else `DOCKER_HOST`, else the default: the unix socket,
 * or `tcp://localhost:2376` when `tls` is on (as the docker CLI does).
 *
 * @throws DockerRuntimeError as {@link parseDockerHost}
 */
export function resolveDockerHost(
  host: string | undefined,
  env: NodeJS.ProcessEnv,
  options: { allowInsecureTcp?: boolean; tls?: boolean } = {},
): DockerEndpoint {
  const fallback = options.tls === true ? DEFAULT_DOCKER_TLS_HOST : DEFAULT_DOCKER_HOST;
  const chosen = host ?? (env.DOCKER_HOST?.trim() || fallback);
  return parseDockerHost(chosen, options);
}

/**
 * Whether to use TLS, and where its files are, with the docker CLI's semantics: the options
 * win; else `DOCKER_TLS_VERIFY` set to anything non-empty (even `0`, as for the CLI) turns
 * verified TLS on, and `DOCKER_CERT_PATH` (default `~/.docker`) names the directory holding
 * `ca.pem`, `cert.pem` and `key.pem`. TLS without verifying the engine (the CLI's `DOCKER_TLS`,
 * `--tls`) is not offered: whoever answers could read every secret written.
 *
 * @throws DockerRuntimeError DSO_DOCKER_TLS_INVALID for `tlsCertPath` without `tlsVerify`, for
 *   `DOCKER_TLS` without `DOCKER_TLS_VERIFY`, or for a cert path that is empty or holds NUL
 */
export function resolveDockerTls(
  options: { tlsVerify?: boolean | undefined; tlsCertPath?: string | undefined },
  env: NodeJS.ProcessEnv,
  home: string = homedir(),
): DockerTlsSettings {
  if (options.tlsVerify !== undefined && typeof options.tlsVerify !== 'boolean') {
    throw tlsInvalid('tlsVerify must be true or false', { field: 'tlsVerify' });
  }
  const fromEnv = options.tlsVerify === undefined;
  const verify = options.tlsVerify ?? (env.DOCKER_TLS_VERIFY ?? '') !== '';
  if (fromEnv && !verify && (env.DOCKER_TLS ?? '') !== '') {
    throw tlsInvalid(
      'DOCKER_TLS asks for TLS without verifying the engine, which DSO does not offer (whoever ' +
        'answers could read every secret written): set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH ' +
        'to a directory holding ca.pem, cert.pem and key.pem, or unset DOCKER_TLS',
      { field: 'DOCKER_TLS' },
    );
  }
  if (options.tlsCertPath !== undefined && !verify) {
    throw tlsInvalid(
      'tlsCertPath is set but TLS is off: set tlsVerify: true as well (TLS without verifying ' +
        'the engine is not offered), or drop tlsCertPath',
      { field: 'tlsCertPath' },
    );
  }
  const given = options.tlsCertPath ?? (env.DOCKER_CERT_PATH?.trim() || join(home, '.docker'));
  if (typeof given !== 'string' || given === '' || given.includes('\0')) {
    throw tlsInvalid('tlsCertPath must be a directory path', { field: 'tlsCertPath' });
  }
  return { verify, certPath: resolve(given) };
}

/**
 * Reads `ca.pem`, `cert.pem` and `key.pem` from `certPath` and checks that they load (a
 * certificate and its matching, unencrypted key; a CA). Errors name the file and the fix,
 * never a byte of its content.
 *
 * @throws DockerRuntimeError DSO_DOCKER_TLS_INVALID when a file is missing, unreadable, too
 *   large or not usable
 */
export async function readDockerTls(certPath: string): Promise<DockerTlsFiles> {
  const fix =
    `DOCKER_CERT_PATH (or tlsCertPath) must name a directory holding ca.pem (the CA that ` +
    "signed the engine's certificate), cert.pem and key.pem (this client's certificate and " +
    'key, signed by a CA the engine trusts), as for `docker --tlsverify`';
  const [ca, cert, key] = await Promise.all(
    TLS_FILES.map(async (name) => {
      const path = join(certPath, name);
      let content: Buffer;
      try {
        content = await readFile(path);
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        throw tlsInvalid(
          `cannot read ${path}${typeof code === 'string' ? ` (${code})` : ''}: ${fix}`,
          { path, cause: error },
        );
      }
      if (content.byteLength === 0 || content.byteLength > MAX_TLS_FILE_BYTES) {
        throw tlsInvalid(
          `${path} is ${content.byteLength === 0 ? 'empty' : 'larger than 1 MiB'}: ${fix}`,
          { path },
        );
      }
      return content;
    }),
  );
  try {
    // Loads all three as a connection would: a key that does not match the certificate, an
    // encrypted key or a file that is not PEM fails here, at creation, not at the first call.
    createSecureContext({ ca, cert, key });
  } catch (error) {
    // OpenSSL's reason ("key values mismatch", "bad decrypt") names the problem, never content.
    const reason = (error as Error).message?.slice(0, 200) ?? 'unknown';
    throw tlsInvalid(
      `the TLS files in ${certPath} are not usable (${reason}): cert.pem and key.pem must be ` +
        `a matching certificate and unencrypted private key in PEM, ca.pem one or more PEM certificates`,
      { path: certPath, cause: error },
    );
  }
  return { ca: ca as Buffer, cert: cert as Buffer, key: key as Buffer, certPath };
}

/** OpenSSL's and Node's codes for an engine certificate that does not verify. */
const SERVER_CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'HOSTNAME_MISMATCH',
  'IP_ADDRESS_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** OpenSSL's codes for bytes that are not TLS at all: a plain HTTP port. */
const NOT_TLS_CODES = new Set(['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG']);
/** The same, as OpenSSL's reason text when Node reports the failure as a write's EPROTO. */
const NOT_TLS_REASON = /wrong version number|packet length too long|http request/i;

/**
 * A clear {@link DockerRuntimeError} for a TLS handshake that failed while reaching the engine,
 * or `undefined` when `error` is not one. Says which side refused and what to fix.
 *
 * An engine that refuses this client's certificate sends an alert (dockerd does) or, like
 * Node's own TLS servers, just closes the connection: a reset right after connecting is then
 * reported as DSO_DOCKER_UNREACHABLE naming that likely cause, since a network fault looks
 * the same.
 */
export function tlsFailure(
  error: unknown,
  endpoint: { display: string },
  certPath: string,
): DockerRuntimeError | undefined {
  const found = errnoInChain(error);
  if (found === undefined) return undefined;
  const { code } = found;
  // OpenSSL's reason ("wrong version number") names the problem; it never holds key material.
  const reason = /error:[0-9A-F]+:[^:]*:[^:]*:([^:]+)/i.exec(found.message)?.[1]?.trim();
  const shown = reason === undefined ? code : `${code}, ${reason}`;
  const facts = { endpoint: endpoint.display, certPath, errno: code, cause: error };
  const clientFix =
    `${join(certPath, 'cert.pem')} must be signed by a CA the engine trusts ` +
    '(dockerd --tlscacert) and allowed for client authentication';
  if (SERVER_CERT_CODES.has(code)) {
    return tlsInvalid(
      `the Docker Engine's certificate at ${endpoint.display} did not verify (${shown}): ` +
        `${join(certPath, 'ca.pem')} must hold the CA that signed it, and its subjectAltName ` +
        'must cover the host in DOCKER_HOST (a DNS name or IP address)',
      facts,
    );
  }
  if (NOT_TLS_CODES.has(code) || (code === 'EPROTO' && NOT_TLS_REASON.test(found.message))) {
    return tlsInvalid(
      `${endpoint.display} does not speak TLS (${shown}): point DOCKER_HOST at the engine's TLS ` +
        'port (2376, dockerd --tlsverify), or turn TLS off for a plain loopback port',
      facts,
    );
  }
  const alert = /alert/i;
  if (
    (code.startsWith('ERR_SSL_') || code === 'EPROTO') &&
    alert.test(`${code} ${found.message}`)
  ) {
    return tlsInvalid(
      `the Docker Engine at ${endpoint.display} refused the TLS handshake (${shown}): usually ` +
        `it does not accept this client's certificate; ${clientFix}`,
      facts,
    );
  }
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code === 'EPROTO') {
    return tlsInvalid(
      `the TLS handshake with the Docker Engine at ${endpoint.display} failed (${shown}): check ` +
        `the files in ${certPath} against the engine's TLS settings`,
      facts,
    );
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') {
    return new DockerRuntimeError(
      'DSO_DOCKER_UNREACHABLE',
      `the Docker Engine at ${endpoint.display} closed the TLS connection right away (${code}): ` +
        `usually it does not accept this client's certificate; ${clientFix}. Otherwise check ` +
        'that the engine listens there with --tlsverify and nothing in between cuts connections',
      facts,
    );
  }
  return undefined;
}

/** The first string `code` along the error and its causes, with that error's message. */
function errnoInChain(error: unknown): { code: string; message: string } | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth += 1) {
    const { code, message } = current as { code?: unknown; message?: unknown };
    if (typeof code === 'string') {
      return { code, message: typeof message === 'string' ? message.slice(0, 1_000) : '' };
    }
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function invalidHost(value: string, hint: string, cause?: unknown): DockerRuntimeError {
  return new DockerRuntimeError(
    'DSO_DOCKER_INVALID_HOST',
    `invalid docker host ${JSON.stringify(value)}: ${hint}`,
    cause === undefined ? { host: value } : { host: value, cause },
  );
}

function tlsInvalid(message: string, facts: Record<string, unknown>): DockerRuntimeError {
  return new DockerRuntimeError('DSO_DOCKER_TLS_INVALID', message, facts);
}
