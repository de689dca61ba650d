/**
 * Helpers for the engine tests: the shared test image, labelled throwaway containers that are
 * always removed, and a one-shot `docker exec` to read state back. Test-only; not published.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { vi } from 'vitest';
import testImage from '../../../../tools/test-image.json' with { type: 'json' };
import { parseDockerHost } from '../docker-host.js';
import { detectEngineDialect, type EngineKind } from '../engine-dialect.js';

const run = promisify(execFile);
const WORKSPACE = join(import.meta.dirname, '../../../..');

/** The test image tag and the label every test object carries, from tools/test-image.json. */
export const TEST_IMAGE = testImage.image;
export const TEST_LABEL = testImage.label;

/**
 * The engine the tests run against: `DOCKER_HOST` when set (tools/test.mjs runs the engine
 * tests once on Docker and once on the Podman service of tools/services.sh this way), else the
 * local Docker. A unix socket only: the tests read and write the host side of that engine.
 */
export const TEST_DOCKER_HOST = process.env.DOCKER_HOST || 'unix:///var/run/docker.sock';
const testEndpoint = parseDockerHost(TEST_DOCKER_HOST);
if (testEndpoint.kind !== 'unix') {
  throw new Error(
    `the engine tests need a local engine on a unix socket; DOCKER_HOST is ${TEST_DOCKER_HOST}`,
  );
}
/** The socket of {@link TEST_DOCKER_HOST}. */
export const TEST_ENGINE_SOCKET: string = testEndpoint.socketPath;

/** The engine, straight through dockerode, for arranging and checking what the tests need. */
export const docker = new Docker({ socketPath: TEST_ENGINE_SOCKET });

/** What the tests may need to know of the engine under test: its kind and data root. */
export interface TestEngineFacts {
  kind: EngineKind;
  /** `docker info`'s DockerRootDir: /var/lib/docker, or Podman's graph root. */
  dataRoot: string;
}

let engineFacts: Promise<TestEngineFacts> | undefined;
/** The engine's kind (from /version, as the runtime reads it) and data root (from /info). */
export function testEngineFacts(): Promise<TestEngineFacts> {
  engineFacts ??= (async () => {
    const [version, info] = await Promise.all([docker.version(), docker.info()]);
    return {
      kind: detectEngineDialect(version).kind,
      dataRoot: String((info as { DockerRootDir?: string }).DockerRootDir ?? ''),
    };
  })();
  return engineFacts;
}

/** Builds the test image with tools/test-image.sh when it is missing. */
export async function ensureTestImage(): Promise<void> {
  try {
    await docker.getImage(TEST_IMAGE).inspect();
  } catch {
    // Missing (or unreadable): build it; the script fails loudly if it cannot.
    await run('bash', [join(WORKSPACE, 'tools/test-image.sh')], { cwd: WORKSPACE });
  }
}

export interface TestContainerOptions {
  user?: string;
  tmpfs?: Record<string, string>;
  readonlyRootfs?: boolean;
  mounts?: Docker.MountConfig;
  capDrop?: string[];
  labels?: Record<string, string>;
  /** `NAME=value` entries of its environment. */
  env?: string[];
  start?: boolean;
}

/**
 * Creates labelled containers for one test file (label `dso.test=<runId>`, name
 * `dso-test-<uuid>`, no network) and removes all of them, however the tests ended.
 */
export function createContainerPool() {
  const runId = randomUUID();
  const ids = new Set<string>();

  return {
    runId,
    /** A container running `sleep 3600`, started unless `start: false`. */
    async create(options: TestContainerOptions = {}): Promise<{ id: string; name: string }> {
      const name = `dso-test-${randomUUID()}`;
      const container = await docker.createContainer({
        name,
        Image: TEST_IMAGE,
        Cmd: ['sleep', '3600'],
        User: options.user ?? '',
        Env: options.env ?? [],
        Labels: { [TEST_LABEL]: runId, ...options.labels },
        HostConfig: {
          NetworkMode: 'none',
          Tmpfs: options.tmpfs ?? {},
          ReadonlyRootfs: options.readonlyRootfs ?? false,
          Mounts: options.mounts ?? [],
          CapDrop: options.capDrop ?? [],
        },
      });
      ids.add(container.id);
      if (options.start !== false) await container.start();
      return { id: container.id, name };
    },
    /** Force-removes every container of this run, the ones created elsewhere included. */
    async removeAll(): Promise<void> {
      const listed = await docker.listContainers({
        all: true,
        filters: { label: [`${TEST_LABEL}=${runId}`] },
      });
      for (const info of listed) ids.add(info.Id);
      await Promise.all(
        [...ids].map(async (id) => {
          try {
            await docker.getContainer(id).remove({ force: true, v: true });
          } catch (error) {
            // Already gone is the goal; anything else must fail the run.
            if ((error as { statusCode?: number }).statusCode !== 404) throw error;
          }
        }),
      );
      ids.clear();
    },
  };
}

/** Runs a command in a container through the docker CLI; output as raw bytes. */
export async function execIn(
  id: string,
  command: string[],
  options: { user?: string } = {},
): Promise<{ stdout: Buffer; stderr: string }> {
  const { stdout, stderr } = await run(
    'docker',
    ['exec', ...(options.user === undefined ? [] : ['-u', options.user]), id, ...command],
    { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 },
  );
  return { stdout, stderr: stderr.toString() };
}

/** Runs a shell snippet in a container and returns its stdout as text. */
export async function shIn(id: string, script: string, user = '0'): Promise<string> {
  return (await execIn(id, ['sh', '-c', script], { user })).stdout.toString();
}

/**
 * Waits, with vitest's `vi.waitFor` (every 25 ms), until `check` returns a value other than
 * undefined, and returns it; fails at the deadline naming `what`. An error thrown by `check`
 * ends the wait at once: a failure is not "not yet".
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  const outcome = await vi.waitFor(
    async (): Promise<{ value: T } | { error: unknown }> => {
      let value: T | undefined;
      try {
        value = await check();
      } catch (error) {
        return { error };
      }
      if (value === undefined)
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      return { value };
    },
    { timeout: timeoutMs, interval: 25 },
  );
  if ('error' in outcome) throw outcome.error;
  return outcome.value;
}

/**
 * Waits until an engine process this test started (a private dockerd, a Podman service)
 * answers a ping on `client`, for 30 s; fails at once, naming its log, if the process exits.
 */
export async function waitForEngineProcess(
  what: string,
  child: { exitCode: number | null },
  client: { ping(): Promise<unknown> },
  logFile: string,
): Promise<void> {
  await waitFor(
    `${what} to answer`,
    async () => {
      if (child.exitCode !== null) {
        throw new Error(`${what} exited with ${child.exitCode}; see ${logFile}`);
      }
      try {
        await client.ping();
        return true;
      } catch {
        // Not up yet: the next poll asks again.
        return undefined;
      }
    },
    30_000,
  );
}

/**
 * Creates a labelled container of this pool's run with its own command (the pool's `create`
 * always runs `sleep 3600`); `pool.removeAll()` removes it with the rest, found by its label.
 */
export async function createCommandContainer(
  pool: { runId: string },
  cmd: string[],
  options: { user?: string; start?: boolean } = {},
): Promise<{ id: string; name: string }> {
  const name = `dso-test-${randomUUID()}`;
  const container = await docker.createContainer({
    name,
    Image: TEST_IMAGE,
    Cmd: cmd,
    User: options.user ?? '',
    Labels: { [TEST_LABEL]: pool.runId },
    HostConfig: { NetworkMode: 'none' },
  });
  if (options.start !== false) await container.start();
  return { id: container.id, name };
}

/** A directory laid out as `DOCKER_CERT_PATH` wants it: ca.pem, cert.pem, key.pem. */
export interface TlsClientDirs {
  /** The CA that signed the proxy's certificate, and a client certificate it trusts. */
  good: string;
  /** Another CA (the proxy's certificate does not verify), with the trusted client cert. */
  otherCa: string;
  /** The right CA, with a client certificate from a CA the proxy does not trust. */
  untrustedClient: string;
  /** The right CA and client certificate, but no key.pem. */
  noKey: string;
}

/** Certificates made for one test file: a CA, a server cert for 127.0.0.1, client dirs. */
export interface TlsMaterial {
  /** The 0700 temp dir holding everything; `dispose()` deletes it. */
  root: string;
  dirs: TlsClientDirs;
  /** Server side: the CA that clients must be signed by, and the server's cert and key. */
  server: { caFile: string; certFile: string; keyFile: string };
  caPem: Buffer;
  dispose(): Promise<void>;
}

/**
 * Makes a CA, a server certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1) and client
 * certificates with the `openssl` CLI in a fresh 0700 temp dir, and the client directories
 * (`ca.pem`, `cert.pem`, `key.pem`) the runtime's `tlsCertPath` takes.
 */
export async function createTlsMaterial(): Promise<TlsMaterial> {
  const root = await mkdtemp(join(tmpdir(), 'dso-tls-'));
  await chmod(root, 0o700);
  const openssl = async (...args: string[]) => {
    try {
      await run('openssl', args, { cwd: root });
    } catch (error) {
      await rm(root, { recursive: true, force: true });
      const missing = (error as { code?: unknown }).code === 'ENOENT';
      throw new Error(
        missing
          ? "the openssl CLI is missing: install Debian's openssl package to run the TLS tests"
          : `openssl ${args[0]} failed: ${(error as { stderr?: unknown }).stderr ?? error}`,
        { cause: error },
      );
    }
  };
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  async function ca(name: string): Promise<void> {
    await openssl(
      'req',
      '-x509',
      ...ecKey,
      '-keyout',
      `${name}-key.pem`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=dso-test-${name}`,
    );
  }
  async function issue(name: string, signer: string, extensions: string): Promise<void> {
    await writeFile(join(root, `${name}.ext`), extensions);
    await openssl(
      'req',
      ...ecKey,
      '-keyout',
      `${name}-key.pem`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=dso-test-${name}`,
    );
    await openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${signer}.pem`,
      '-CAkey',
      `${signer}-key.pem`,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  }
  await ca('ca');
  await ca('other-ca');
  await issue('server', 'ca', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await issue('client', 'ca', 'extendedKeyUsage=clientAuth\n');
  await issue('stranger', 'other-ca', 'extendedKeyUsage=clientAuth\n');
  const read = (name: string) => readFile(join(root, name));
  async function clientDir(name: string, files: Record<string, string>): Promise<string> {
    const dir = join(root, name);
    await mkdir(dir, { mode: 0o700 });
    for (const [target, source] of Object.entries(files)) {
      await writeFile(join(dir, target), await read(source), { mode: 0o600 });
    }
    return dir;
  }
  const dirs: TlsClientDirs = {
    good: await clientDir('good', {
      'ca.pem': 'ca.pem',
      'cert.pem': 'client.pem',
      'key.pem': 'client-key.pem',
    }),
    otherCa: await clientDir('other', {
      'ca.pem': 'other-ca.pem',
      'cert.pem': 'client.pem',
      'key.pem': 'client-key.pem',
    }),
    untrustedClient: await clientDir('untrusted', {
      'ca.pem': 'ca.pem',
      'cert.pem': 'stranger.pem',
      'key.pem': 'stranger-key.pem',
    }),
    noKey: await clientDir('nokey', { 'ca.pem': 'ca.pem', 'cert.pem': 'client.pem' }),
  };
  const caPem = await read('ca.pem');
  return {
    root,
    dirs,
    server: {
      caFile: join(root, 'ca.pem'),
      certFile: join(root, 'server.pem'),
      keyFile: join(root, 'server-key.pem'),
    },
    caPem,
    dispose: () => rm(root, { recursive: true, force: true }),
  };
}

/**
 * A TLS front for the local engine, as `dockerd --tlsverify` would be: a `tls` server on
 * 127.0.0.1 with {@link createTlsMaterial}'s certificates that demands a client certificate
 * from its CA and pipes each connection to the engine under test ({@link TEST_ENGINE_SOCKET}). `close()` stops it, destroys
 * its connections and deletes the certificates.
 */
export async function startTlsEngineProxy(): Promise<{
  host: string;
  port: number;
  dirs: TlsClientDirs;
  /** The CA the proxy trusts and signs with, for a raw client in a test. */
  caPem: Buffer;
  close(): Promise<void>;
}> {
  const material = await createTlsMaterial();
  const { dirs, caPem } = material;
  const read = (file: string) => readFile(file);
  const sockets = new Set<Socket>();
  const server = createTlsServer(
    {
      key: await read(material.server.keyFile),
      cert: await read(material.server.certFile),
      ca: caPem,
      requestCert: true,
      rejectUnauthorized: true,
      // An exec half-closes its stdin and keeps reading the output: keep the way back open.
      allowHalfOpen: true,
    },
    (client) => {
      const engine = connect(TEST_ENGINE_SOCKET);
      sockets.add(client);
      sockets.add(engine);
      const forget = () => {
        client.destroy();
        engine.destroy();
        sockets.delete(client);
        sockets.delete(engine);
      };
      client.on('error', forget).on('close', forget);
      engine.on('error', forget).on('close', forget);
      client.pipe(engine).pipe(client);
    },
  );
  // A refused handshake surfaces here; the client side is what the tests check.
  server.on('tlsClientError', () => undefined);
  // The raw TCP sockets, handshakes in progress included: close() destroys every one.
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `tcp://127.0.0.1:${port}`,
    port,
    dirs,
    caPem,
    async close() {
      // The keys go first: the server holds its own copies, and must not keep them on disk.
      await material.dispose();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Options of {@link createMountingContainer}. */
export interface MountingContainerOptions {
  /** The command, run without a shell unless it names one. */
  cmd: string[];
  user?: string;
  mounts?: Docker.MountConfig;
}

/**
 * Creates, without starting, a container of the test image that runs `cmd` with `mounts` and
 * exits, labelled for the pool whose `runId` is given (its `removeAll` removes it).
 */
export async function createMountingContainer(
  runId: string,
  options: MountingContainerOptions,
): Promise<string> {
  const container = await docker.createContainer({
    name: `dso-test-${randomUUID()}`,
    Image: TEST_IMAGE,
    Cmd: options.cmd,
    User: options.user ?? '',
    Labels: { [TEST_LABEL]: runId },
    HostConfig: { NetworkMode: 'none', Mounts: options.mounts ?? [] },
  });
  return container.id;
}

/** A container's output so far, split out of the engine's multiplexed log stream. */
export async function logsOf(id: string): Promise<{ stdout: string; stderr: string }> {
  const raw = (await docker
    .getContainer(id)
    .logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  // Frames of `[stream, 0, 0, 0, size uint32 BE]` and `size` bytes (Tty: false).
  for (let offset = 0; offset + 8 <= raw.byteLength; ) {
    const size = raw.readUInt32BE(offset + 4);
    const payload = raw.subarray(offset + 8, offset + 8 + size);
    (raw[offset] === 2 ? err : out).push(payload);
    offset += 8 + size;
  }
  return { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

/** Starts a created container, waits for it to exit, and returns its exit code and output. */
export async function runToExit(
  id: string,
  timeoutMs = 60_000,
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const container = docker.getContainer(id);
  await container.start();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`container ${id} did not exit within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    const { StatusCode } = (await Promise.race([container.wait(), timeout])) as {
      StatusCode: number;
    };
    return { exitCode: StatusCode, ...(await logsOf(id)) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The actions (`exec_create`, `start`...) the engine reported between `since` and now for
 * containers of the pool whose `runId` is given.
 */
export async function eventsSince(runId: string, since: Date): Promise<string[]> {
  const stream = (await docker.getEvents({
    since: Math.floor(since.getTime() / 1000),
    until: Math.ceil(Date.now() / 1000) + 1,
    filters: { type: ['container'], label: [`${TEST_LABEL}=${runId}`] },
  })) as unknown as AsyncIterable<Buffer>;
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => String((JSON.parse(line) as { Action?: string }).Action));
}
