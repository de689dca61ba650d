import { Socket } from 'node:net';

/** A TCP connection attempt seen by {@link guardLoopback}. */
export interface ConnectAttempt {
  host: string;
  port: number;
  allowed: boolean;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

/**
 * Watches every outgoing TCP connection of this process (the SDK's HTTP handler, and the
 * instance-metadata and STS clients of the credential chain all connect through
 * `net.Socket#connect`) and refuses any to a host other than the loopback interface, so a test
 * can prove nothing left the machine: the refused socket fails with ECONNREFUSED instead of
 * connecting. Returns the attempts seen and a function that restores the original method.
 *
 * @example
 * const guard = guardLoopback();
 * await provider.resolve({ path: 'prod/db' });
 * expect(guard.attempts.filter((a) => !a.allowed)).toEqual([]);
 * guard.restore();
 */
export function guardLoopback(): { attempts: ConnectAttempt[]; restore(): void } {
  const attempts: ConnectAttempt[] = [];
  const original = Socket.prototype.connect;
  // biome-ignore lint/suspicious/noExplicitAny: connect is overloaded (options, port/host, path).
  Socket.prototype.connect = function guardedConnect(this: Socket, ...args: any[]) {
    const first = args[0];
    // net.connect passes its normalised arguments as one array: [options, callback].
    const options: { host?: string | null; port?: number; path?: string | null } = Array.isArray(
      first,
    )
      ? (first[0] ?? {})
      : typeof first === 'object' && first !== null
        ? first
        : { port: first, host: typeof args[1] === 'string' ? args[1] : undefined };
    // A Unix socket or named pipe is local by nature.
    if (typeof options.path === 'string') return original.apply(this, args as never);
    const host = options.host ?? 'localhost';
    const allowed = LOOPBACK.has(host);
    attempts.push({ host, port: Number(options.port), allowed });
    if (!allowed) {
      const error = Object.assign(
        new Error(`connect ECONNREFUSED ${host} (blocked by the test's loopback guard)`),
        {
          code: 'ECONNREFUSED',
        },
      );
      process.nextTick(() => this.destroy(error));
      return this;
    }
    return original.apply(this, args as never);
  } as typeof Socket.prototype.connect;
  return {
    attempts,
    restore() {
      Socket.prototype.connect = original;
    },
  };
}
