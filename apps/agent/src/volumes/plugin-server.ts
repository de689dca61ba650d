import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { DsoError, errorCode, isDsoError, type Logger } from '@dso/core';
import {
  createHttpServer,
  type HttpServer,
  pathnameOf,
  readBody,
  sendBody,
} from '../http/serve.js';
import type { VolumeDriver } from './volume-driver.js';

/** Where the engine discovers legacy plugins by their socket. */
export const DOCKER_PLUGIN_DIR = '/run/docker/plugins';
/** The content type of every answer of Docker's plugin protocol. */
export const PLUGIN_CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';
/** The largest request body: a volume's options are references, never values. */
const MAX_REQUEST_BYTES = 64 * 1024;

/** Options of {@link startVolumePluginServer}. */
export interface VolumePluginServerOptions {
  driver: VolumeDriver;
  logger: Logger;
  /** @default DOCKER_PLUGIN_DIR */
  pluginDir?: string;
}

/** The volume driver's socket, served. */
export interface VolumePluginServer extends AsyncDisposable {
  readonly socketPath: string;
  /** Stops serving and removes the socket: the engine then fails to start containers that use the driver. */
  close(): Promise<void>;
}

/**
 * Serves Docker's (legacy, socket-discovered) volume plugin protocol on
 * `<pluginDir>/<driverName>.sock`, reachable by root only: `Plugin.Activate`, then
 * `VolumeDriver.Create/Remove/Get/List/Path/Mount/Unmount/Capabilities` (scope `local`), each a
 * POST with a JSON body, each answered 200, or 500 with `Err` on failure (the engine shows it).
 *
 * @throws DsoError DSO_VOLUME_SOCKET_IN_USE when another process answers on the socket
 */
export async function startVolumePluginServer(
  options: VolumePluginServerOptions,
): Promise<VolumePluginServer> {
  const { driver, logger } = options;
  const dir = options.pluginDir ?? DOCKER_PLUGIN_DIR;
  const socketPath = join(dir, `${driver.driverName}.sock`);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  if (await answers(socketPath)) {
    throw new DsoError(
      'DSO_VOLUME_SOCKET_IN_USE',
      `${socketPath} already answers: another agent (or plugin) serves the volume driver "${driver.driverName}"; stop it, or set volumes.driverName`,
      { socketPath },
    );
  }
  rmSync(socketPath, { force: true }); // left by an agent that did not stop cleanly

  const answer = (response: Parameters<typeof sendBody>[0], body: unknown) =>
    sendBody(response, 200, PLUGIN_CONTENT_TYPE, JSON.stringify(body));
  // A failure is a 500 with `Err`. Docker reads `Err` from any answer (and prefixes a non-200's
  // with the method: `VolumeDriver.Mount: …`), but Podman 4.3 reads only the status: a 200 with
  // `Err` is a success to it, so a refused Create made the volume anyway and a failed Mount
  // started the container on an empty mount point (its own runtime folder).
  const refuse = (response: Parameters<typeof sendBody>[0], message: string) =>
    sendBody(response, 500, PLUGIN_CONTENT_TYPE, JSON.stringify({ Err: message }));

  const http: HttpServer = createHttpServer({
    name: 'volume plugin',
    logger,
    internalError: JSON.stringify({ Err: 'DSO volume driver: internal error (see the agent log)' }),
    // Mount resolves secrets: it may take up to volumes.mountTimeoutMs.
    limits: { requestTimeoutMs: 60_000 },
    async handle(request, response) {
      const raw = await readBody(request, MAX_REQUEST_BYTES, true);
      if (raw === undefined) {
        refuse(response, `request body over ${MAX_REQUEST_BYTES} bytes`);
        return;
      }
      let body: Record<string, unknown> = {};
      try {
        if (raw.byteLength > 0) body = JSON.parse(raw.toString('utf8')) ?? {};
      } catch {
        refuse(response, 'request body is not JSON');
        return;
      }
      const name = typeof body.Name === 'string' ? body.Name : '';
      const id = typeof body.ID === 'string' ? body.ID : '';
      const method = pathnameOf(request.url);
      try {
        switch (method) {
          case '/Plugin.Activate':
            return answer(response, { Implements: ['VolumeDriver'] });
          case '/VolumeDriver.Capabilities':
            return answer(response, { Capabilities: { Scope: 'local' } });
          case '/VolumeDriver.Create': {
            const opts = body.Opts;
            await driver.create(
              name,
              typeof opts === 'object' && opts !== null ? (opts as Record<string, unknown>) : {},
            );
            return answer(response, { Err: '' });
          }
          case '/VolumeDriver.Remove':
            await driver.remove(name);
            return answer(response, { Err: '' });
          case '/VolumeDriver.Get': {
            const volume = driver.get(name);
            return volume === undefined
              ? refuse(response, `no DSO volume named ${name}`)
              : answer(response, { Volume: volume, Err: '' });
          }
          case '/VolumeDriver.List':
            return answer(response, { Volumes: driver.list(), Err: '' });
          case '/VolumeDriver.Path':
            return answer(response, { Mountpoint: driver.path(name), Err: '' });
          case '/VolumeDriver.Mount':
            return answer(response, { Mountpoint: await driver.mount(name, id), Err: '' });
          case '/VolumeDriver.Unmount':
            await driver.unmount(name, id);
            return answer(response, { Err: '' });
          default:
            sendBody(
              response,
              404,
              PLUGIN_CONTENT_TYPE,
              JSON.stringify({ Err: `unknown method ${method}` }),
            );
            return;
        }
      } catch (error) {
        // Operational failures carry a message made for the person at `docker run`; anything
        // else is logged and answered without its details.
        if (!isDsoError(error)) {
          logger.warn(
            { err: error, code: errorCode(error), method },
            'volume plugin request failed',
          );
          refuse(response, 'DSO volume driver: internal error (see the agent log)');
          return;
        }
        refuse(response, error.message);
      }
    },
  });
  const previous = process.umask(0o177); // the socket is created 0600: root only
  try {
    await http.listen({ path: socketPath });
  } finally {
    process.umask(previous);
  }
  chmodSync(socketPath, 0o600);
  logger.info({ socketPath, driver: driver.driverName }, 'volume driver serving');
  const close = async () => {
    await http.close();
    rmSync(socketPath, { force: true });
  };
  return { socketPath, close, [Symbol.asyncDispose]: close };
}

/** Whether something answers on a unix socket now. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    const done = (yes: boolean) => {
      socket.destroy();
      resolve(yes);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(1_000, () => done(false));
  });
}
