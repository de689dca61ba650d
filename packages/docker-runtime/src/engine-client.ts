import { inspect } from 'node:util';
import Docker from 'dockerode';

/**
 * What docker-modem hands its `buildRequest` for each request: the options given to
 * `http.request` (method, path, headers, the pooled agent, the abort signal, TLS key and
 * certificates). Only the fields read here are named.
 */
interface RequestOptions {
  method?: unknown;
  path?: unknown;
}

/** The one docker-modem method this module wraps (see {@link createEngineClient}). */
interface RequestBuilder {
  buildRequest?: (options: RequestOptions, ...rest: unknown[]) => unknown;
}

/**
 * A dockerode client whose requests cost no formatting: docker-modem (5.0.7, the newest)
 * formats every request's options with `util.inspect(options, { showHidden: true, depth: null })`
 * for a debug line, even when nobody enables that debug output. With a keep-alive agent in the
 * options that walks the agent, every pooled socket and their parsers, on each call (the
 * largest share of a delivery's CPU in a profile of the agent). Each request's options get a
 * `util.inspect.custom` that answers `METHOD /path` instead, so the line costs a string
 * concatenation, and with `DEBUG=modem` it no longer prints the headers (registry
 * credentials), the TLS private key's first bytes or the socket pool either.
 *
 * Nothing in node_modules is patched: the client's own modem instance wraps `buildRequest`,
 * the method that receives those options. Should a later docker-modem drop that method, the
 * client works as before, formatting included; `engine-client.test.ts` then fails.
 *
 * @example
 * const docker = createEngineClient({ socketPath: '/var/run/docker.sock', agent });
 * await docker.getContainer(id).inspect();
 */
export function createEngineClient(options: Docker.DockerOptions): Docker {
  const docker = new Docker(options);
  const modem = docker.modem as unknown as RequestBuilder;
  const buildRequest = modem.buildRequest;
  if (typeof buildRequest === 'function') {
    modem.buildRequest = function quietBuildRequest(this: unknown, request, ...rest) {
      // Not enumerable, so no copy of the options (http.request's, ssh's Object.assign) takes it.
      Object.defineProperty(request, inspect.custom, { value: summarise, configurable: true });
      return buildRequest.call(this, request, ...rest);
    };
  }
  return docker;
}

/** The request as a debug line shows it: `GET /v1.41/containers/<id>/json`. */
function summarise(this: RequestOptions): string {
  return `${String(this.method)} ${String(this.path)}`;
}
