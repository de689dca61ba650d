import { Readable } from 'node:stream';
import { parseConfig } from '@dso/core';
import { DEFAULT_MAX_SECRET_BYTES, maxSecretBytesFor } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import { MAX_SECRET_BYTES, readSecretFromStream } from './read-secret.js';

const CANARY = 'canary-cli-5a1f';

describe('readSecretFromStream', () => {
  it('reads every byte and drops one trailing newline', async () => {
    expect((await readSecretFromStream(Readable.from([`${CANARY}\n`]))).toString()).toBe(CANARY);
    expect((await readSecretFromStream(Readable.from([`${CANARY}\r\n`]))).toString()).toBe(CANARY);
    expect((await readSecretFromStream(Readable.from([`${CANARY}\n\n`]))).toString()).toBe(
      `${CANARY}\n`,
    );
  });

  it('keeps the newline when asked', async () => {
    const value = await readSecretFromStream(Readable.from([`${CANARY}\n`]), { keepNewline: true });
    expect(value.toString()).toBe(`${CANARY}\n`);
  });

  it('joins chunks and keeps binary bytes', async () => {
    const bytes = [0, 1, 2, 255];
    const value = await readSecretFromStream(
      Readable.from([Buffer.from(bytes.slice(0, 2)), Buffer.from(bytes.slice(2))]),
    );
    expect([...value]).toEqual(bytes);
  });

  it('rejects with DSO_CLI_VALUE_TOO_LARGE past the limit', async () => {
    await expect(
      readSecretFromStream(Readable.from([Buffer.alloc(11)]), { maxBytes: 10 }),
    ).rejects.toMatchObject({
      code: 'DSO_CLI_VALUE_TOO_LARGE',
    });
  });

  it('takes a value of exactly the limit with its trailing newline', async () => {
    const value = await readSecretFromStream(Readable.from([Buffer.alloc(10, 1), '\r\n']), {
      maxBytes: 10,
    });
    expect(value.byteLength).toBe(10);
  });

  it('says which setting raises the limit', async () => {
    const limit = { maxBytes: 10, provider: 'vault', maxMessageBytes: 65_550 };
    await expect(
      readSecretFromStream(Readable.from([Buffer.alloc(11), '\n']), { maxBytes: 10, limit }),
    ).rejects.toThrow(/larger than 10 bytes.*raise providers\.vault\.maxMessageBytes in dso\.yaml/);
  });

  it('rejects with DSO_CLI_VALUE_EMPTY when nothing is piped', async () => {
    await expect(readSecretFromStream(Readable.from(['\n']))).rejects.toMatchObject({
      code: 'DSO_CLI_VALUE_EMPTY',
    });
  });

  it("agrees with the agent's default: what the default providers.local.maxMessageBytes carries, 1 MiB or more", () => {
    const config = parseConfig('', { env: { DSO_HOME: '/nonexistent' } });
    const local = config.providers.local!;
    expect(MAX_SECRET_BYTES).toBe(maxSecretBytesFor(local.maxMessageBytes));
    expect(MAX_SECRET_BYTES).toBeGreaterThanOrEqual(DEFAULT_MAX_SECRET_BYTES);
  });
});
