import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The HTTP statuses {@link MemoryStore.fail} can make every request answer with: 401 (bad
 * token), 429 (throttled) and 503 (unavailable).
 */
export type MemoryStoreFailure = 401 | 429 | 503;

/** A versioned key-value store in memory, served over HTTP on 127.0.0.1. */
export interface MemoryStore {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** The bearer token every request must carry. */
  readonly token: string;
  /** Stores a new current version of `path`; returns its version (`1`, `2`, …). */
  put(path: string, value: Uint8Array): string;
  /** Makes every request answer `status` until called with `undefined`. */
  fail(status: MemoryStoreFailure | undefined): void;
  close(): Promise<void>;
}

/** The longest a watch request is held open before it answers with no change. */
const MAX_WATCH_WAIT_MS = 30_000;
/** Request bodies are small JSON (watch requests): refuse anything larger. */
const MAX_BODY_BYTES = 64 * 1024;

/** Options of {@link startMemoryStore}. */
export interface MemoryStoreOptions {
  /** Whether superseded versions stay readable by id. @default true */
  history?: boolean;
}

interface Entry {
  versions: Array<{ version: string; value: Buffer }>;
}

/**
 * Starts the example store on a random port of 127.0.0.1. Its API (all JSON, `Authorization: Bearer <token>`):
 *
 * - `GET /v1/secret?path=&version=` → `{ version, value }` (value in base64) or 404
 * - `GET /v1/version?path=` → `{ version }` or 404
 * - `GET /v1/list?prefix=` → `{ paths }`
 * - `POST /v1/watch` `{ known?: { [path]: version | null }, waitMs }` → `{ current }`, held
 *   until one of the paths' versions differs from `known` or `waitMs` passes
 * - `GET /v1/health` → `{ ok: true }`
 *
 * @example
 * const store = await startMemoryStore();
 * store.put('app/db', new TextEncoder().encode('s3cret')); // '1'
 * await store.close();
 */
export async function startMemoryStore(options: MemoryStoreOptions = {}): Promise<MemoryStore> {
  const { history = true } = options;
  const token = randomBytes(16).toString('hex');
  const entries = new Map<string, Entry>();
  const watchers = new Set<() => void>();
  let failure: MemoryStoreFailure | undefined;

  const current = (path: string) => entries.get(path)?.versions.at(-1)?.version ?? null;

  const send = (response: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    response.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...(status === 429 ? { 'retry-after': '1' } : {}),
    });
    response.end(text);
  };

  const readBody = async (request: IncomingMessage): Promise<unknown> => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of request as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) throw new RangeError('body too large');
      chunks.push(chunk);
    }
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  };

  const watch = async (request: IncomingMessage, response: ServerResponse) => {
    const body = (await readBody(request)) as {
      paths?: unknown;
      known?: Record<string, string | null>;
      waitMs?: unknown;
    };
    const paths = Array.isArray(body.paths) ? body.paths.filter((p) => typeof p === 'string') : [];
    const snapshot = () => Object.fromEntries(paths.map((path) => [path, current(path)]));
    const changed = () =>
      body.known === undefined ||
      paths.some((path) => current(path) !== (body.known?.[path] ?? null));
    if (changed()) {
      send(response, 200, { current: snapshot() });
      return;
    }
    const waitMs = Math.min(Number(body.waitMs) || 0, MAX_WATCH_WAIT_MS);
    await new Promise<void>((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        watchers.delete(onPut);
        response.off('close', finish);
        resolve();
      };
      const onPut = () => {
        if (changed()) finish();
      };
      const timer = setTimeout(finish, waitMs);
      watchers.add(onPut);
      // The client went away (its call was aborted): stop holding the request.
      response.on('close', finish);
    });
    if (!response.destroyed) send(response, 200, { current: snapshot() });
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    if (request.headers.authorization !== `Bearer ${token}`) {
      send(response, 401, { error: 'unauthorized' });
      return;
    }
    if (failure !== undefined) {
      send(response, failure, { error: `failing with ${failure}` });
      return;
    }
    const path = url.searchParams.get('path') ?? '';
    const route = `${request.method} ${url.pathname}`;
    switch (route) {
      case 'GET /v1/secret': {
        const entry = entries.get(path);
        const wanted = url.searchParams.get('version');
        const found =
          wanted === null
            ? entry?.versions.at(-1)
            : entry?.versions.find((v) => v.version === wanted);
        if (found === undefined) send(response, 404, { error: 'not found' });
        else send(response, 200, { version: found.version, value: found.value.toString('base64') });
        return;
      }
      case 'GET /v1/version': {
        const version = current(path);
        if (version === null) send(response, 404, { error: 'not found' });
        else send(response, 200, { version });
        return;
      }
      case 'GET /v1/list': {
        const prefix = url.searchParams.get('prefix') ?? '';
        send(response, 200, {
          paths: [...entries.keys()].filter((p) => p.startsWith(prefix)).sort(),
        });
        return;
      }
      case 'POST /v1/watch':
        await watch(request, response);
        return;
      case 'GET /v1/health':
        send(response, 200, { ok: true });
        return;
      default:
        send(response, 404, { error: 'no such route' });
    }
  };

  const server = createServer((request, response) => {
    handle(request, response).catch(() => {
      // A malformed request body: answer 400; nothing of it is kept or logged.
      if (!response.headersSent) send(response, 400, { error: 'bad request' });
      else response.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    token,
    put(path, value) {
      const entry = entries.get(path) ?? { versions: [] };
      entries.set(path, entry);
      const version = String(Number(entry.versions.at(-1)?.version ?? '0') + 1);
      if (!history) for (const old of entry.versions.splice(0)) old.value.fill(0);
      entry.versions.push({ version, value: Buffer.from(value) });
      for (const notify of [...watchers]) notify();
      return version;
    },
    fail(status) {
      failure = status;
    },
    async close() {
      // Held watch requests end with their sockets.
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      for (const entry of entries.values()) for (const { value } of entry.versions) value.fill(0);
      entries.clear();
    },
  };
}
