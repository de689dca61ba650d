import {
  createFakeClock,
  createLogger,
  createMemoryCache,
  createRedactor,
  parseReference,
  REDACTED,
} from '@dso/core';
import { ProviderError, type SecretProvider, SecretValue } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import { createSecretResolver } from './secrets.js';

const CANARY = 'canary-secrets-0d8e';
const signal = new AbortController().signal;

/** A provider the test can take down, counting its calls. */
function provider() {
  const state = { down: false, calls: 0, version: 1 };
  const value: SecretProvider = {
    name: 'local',
    capabilities: { list: false, watch: false, probe: false, health: false },
    async resolve({ path }) {
      state.calls += 1;
      if (state.down) {
        throw new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'down', { retryable: true });
      }
      return {
        value: SecretValue.fromText(path === 'app/json' ? `{"a":"${CANARY}"}` : CANARY),
        version: String(state.version),
      };
    },
    async close() {},
  };
  return { provider: value, state };
}

function setup(maxStalenessMs = new Map<string, number>()) {
  const clock = createFakeClock();
  const redactor = createRedactor();
  const { provider: local, state } = provider();
  const secrets = createSecretResolver({
    providers: new Map([['local', local]]),
    defaultProvider: 'local',
    cache: createMemoryCache({ clock, ttlMs: 1_000, staleIfErrorMs: 60_000 }),
    redactor,
    logger: createLogger({ level: 'silent', redactor }),
    clock,
    maxStalenessMs,
  });
  return { secrets, clock, state, redactor };
}

describe('createSecretResolver', () => {
  it('asks the provider once for many callers, and registers the value with the redactor', async () => {
    const { secrets, state, redactor } = setup();
    const reference = parseReference('dsofile://app/db');
    const [a, b] = await Promise.all([
      secrets.resolve(reference, signal),
      secrets.resolve(reference, signal),
    ]);
    expect(state.calls).toBe(1);
    expect(a?.value.revealText()).toBe(CANARY);
    expect(redactor.redact(`x ${CANARY}`)).not.toContain(CANARY);
    a?.value.dispose();
    b?.value.dispose();
  });

  it('serves the last known value while the provider is down, within its maximum staleness', async () => {
    const { secrets, clock, state } = setup(new Map([['local', 5_000]]));
    const reference = parseReference('dsofile://app/db');
    (await secrets.resolve(reference, signal)).value.dispose();
    state.down = true;
    clock.advance(1_000 + 5_000);
    const stale = await secrets.resolve(reference, signal);
    expect(stale.value.revealText()).toBe(CANARY);
    stale.value.dispose();
    clock.advance(1);
    await expect(secrets.resolve(reference, signal)).rejects.toMatchObject({
      code: 'DSO_AGENT_RESOLVE_FAILED',
      retryable: true,
      message: expect.stringContaining('maxStalenessMs (5000 ms)'),
    });
  });

  it('names the reference, never the value, when a field is missing or a provider unknown', async () => {
    const { secrets } = setup();
    const missing = secrets.resolve(parseReference('dsofile://app/json#nope'), signal);
    await expect(missing).rejects.toMatchObject({
      code: 'DSO_AGENT_RESOLVE_FAILED',
      details: { reference: 'dsofile://app/json#nope' },
    });
    await missing.catch((error: Error) => expect(error.message).not.toContain(CANARY));
    await expect(
      secrets.resolve(parseReference('dsofile://vault:app/db'), signal),
    ).rejects.toMatchObject({ code: 'DSO_AGENT_PROVIDER_UNKNOWN' });
  });

  it('names the provider a reference without `provider:` asked when it fails there', async () => {
    const { secrets, state } = setup();
    state.down = true;
    await expect(secrets.resolve(parseReference('dsofile://app/db'), signal)).rejects.toThrow(
      /^could not resolve dsofile:\/\/app\/db from provider local \(the default for references without `provider:`\)$/,
    );
    // A reference with `provider:` names it already.
    await expect(
      secrets.resolve(parseReference('dsofile://local:app/other'), signal),
    ).rejects.toThrow(/^could not resolve dsofile:\/\/local:app\/other$/);
  });

  it('keeps the cached value when asking again past the cache fails', async () => {
    const { secrets, state } = setup();
    const reference = parseReference('dsofile://app/db');
    (await secrets.resolve(reference, signal)).value.dispose();
    state.down = true;
    expect(await secrets.refresh('local', 'app/db', signal)).toBe(false);
    state.down = false;
    state.version = 2;
    expect(await secrets.refresh('local', 'app/db', signal)).toBe(true);
    const now = await secrets.resolve(reference, signal);
    expect(now.version).toBe('2');
    now.value.dispose();
  });

  it('reads the provider a formatted reference names', () => {
    const { secrets } = setup();
    expect(secrets.providerOf('dsofile://vault:app/db')).toBe('vault');
    expect(secrets.providerOf('dso://app/db')).toBe('local');
  });

  it('forgets a value once its SecretValues are disposed and nothing else holds it', async () => {
    const { secrets, redactor } = setup();
    const one = await secrets.resolve(parseReference('dsofile://app/db'), signal);
    expect(redactor.redact(CANARY)).toBe(REDACTED);
    one.value.dispose();
    expect(redactor.redact(CANARY)).toBe(CANARY);
    expect(redactor.size).toBe(0);
  });

  it('keeps a value while a cache entry of it lives, when the cache has the redactor', async () => {
    const clock = createFakeClock();
    const redactor = createRedactor();
    const cache = createMemoryCache({ clock, ttlMs: 1_000, staleIfErrorMs: 0, redactor });
    const { provider: local } = provider();
    const secrets = createSecretResolver({
      providers: new Map([['local', local]]),
      defaultProvider: 'local',
      cache,
      redactor,
      logger: createLogger({ level: 'silent', redactor }),
      clock,
      maxStalenessMs: new Map(),
    });
    (await secrets.resolve(parseReference('dsofile://app/db'), signal)).value.dispose();
    expect(redactor.redact(CANARY)).toBe(REDACTED);
    await cache.clear();
    expect(redactor.redact(CANARY)).toBe(CANARY);
    await cache.close();
  });

  it("keeps a file's value registered while its content is in the caller's hands", async () => {
    const { secrets, redactor } = setup();
    const files = await secrets.resolveFiles(
      [{ name: 'db', reference: parseReference('dsofile://app/db') }],
      signal,
    );
    // The SecretValues are disposed and the cache has no redactor: only the content holds it.
    expect(redactor.redact(CANARY)).toBe(REDACTED);
    expect(files[0]!.content.toString()).toBe(CANARY);
  });

  it('keeps what a consumer holds until it is given another version or let go', async () => {
    const { secrets, redactor } = setup();
    const first = Buffer.from(CANARY);
    secrets.hold('container-a', [first]);
    secrets.hold('container-b', [first]);
    first.fill(0);
    expect(redactor.redact(CANARY)).toBe(REDACTED);

    // Another version for container-a: the first stays for container-b.
    const next = `${CANARY}-v2`;
    secrets.hold('container-a', [Buffer.from(next)]);
    expect(redactor.redact(`${CANARY} ${next}`)).toBe(`${REDACTED} ${REDACTED}`);
    secrets.letGo('container-b');
    expect(redactor.redact(`${CANARY} ${next}`)).toBe(`${CANARY} ${REDACTED}`);
    secrets.letGo('container-a');
    expect(redactor.redact(next)).toBe(next);
    expect(redactor.size).toBe(0);
  });
});
