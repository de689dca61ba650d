/**
 * A unix-socket proxy in front of the engine's socket, for tests that must break connections
 * without touching the engine: `cut()` destroys every open connection (an events stream
 * breaks), `block()` makes the engine look unreachable until `unblock()`. Test-only.
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SocketProxy {
  /** `unix://…` for the runtime's host option. */
  readonly host: string;
  /** Connections accepted so far (forwarded or refused). */
  readonly accepted: number;
  cut(): void;
  block(): void;
  unblock(): void;
  close(): Promise<void>;
}

export async function startSocketProxy(target = '/var/run/docker.sock'): Promise<SocketProxy> {
  const path = join(tmpdir(), `dso-proxy-${randomUUID().slice(0, 8)}.sock`);
  const open = new Set<Socket>();
  let blocked = false;
  let accepted = 0;
  const server = createServer((client) => {
    accepted += 1;
    if (blocked) {
      client.destroy();
      return;
    }
    const upstream = connect(target);
    open.add(client);
    open.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  return {
    host: `unix://${path}`,
    get accepted() {
      return accepted;
    },
    cut() {
      for (const socket of open) socket.destroy();
      open.clear();
    },
    block() {
      blocked = true;
    },
    unblock() {
      blocked = false;
    },
    async close() {
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(path, { force: true });
    },
  };
}
