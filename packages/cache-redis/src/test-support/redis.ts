import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '@dso/core';
import { Redis } from 'ioredis';

/** The test Redis that tools/services.sh starts: loopback only. */
export const TEST_REDIS_URL = `redis://127.0.0.1:${process.env.DSO_TEST_REDIS_PORT ?? '6379'}`;

/** A fresh 32-byte cache key. */
export const testKey = () => randomBytes(32);

/**
 * A key prefix unique to one test file's run, so runs never see each other's keys, and a way
 * to delete every key under it afterwards.
 */
export function createTestNamespace() {
  const run = `dso-test-${randomUUID()}:`;
  let next = 0;
  const admin = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  return {
    run,
    admin,
    /** A prefix under the run's, unique per call. */
    prefix: () => `${run}${next++}:`,
    /** Every key under `prefix` (default: the whole run's). */
    async keys(prefix = run): Promise<string[]> {
      const found: string[] = [];
      let cursor = '0';
      do {
        const [nextCursor, batch] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = nextCursor;
        found.push(...batch);
      } while (cursor !== '0');
      return found;
    },
    /** Deletes every key of the run and closes the admin connection. */
    async dispose() {
      const keys = await this.keys();
      if (keys.length > 0) await admin.del(...keys);
      await admin.quit();
    },
  };
}

/** A logger whose lines are kept in memory, for asserting what was (and was not) logged. */
export function createCapturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  // pino writes synchronously to a plain Writable's write(), so lines are there on return.
  return { logger: createLogger({ level: 'debug', destination }), lines };
}
