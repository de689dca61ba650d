import { randomBytes } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import {
  createProvider,
  isProviderError,
  type ProviderError,
  type ProviderLogger,
  type SecretProvider,
} from '@dso/provider-sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { azureProvider, BINARY_CONTENT_TYPE } from './index.js';
import {
  type AzureFixture,
  FIXTURE_SECRET_ENV,
  startAzureFixture,
} from './test-support/azure-fixture.js';
import type { FakeFault, FakeRequest } from './test-support/fake-key-vault.js';

// Every HTTP request any part of this process makes (the SDK, MSAL, the fixture) is recorded,
// so the file can prove that nothing but 127.0.0.1 was ever contacted.
const contacted: string[] = [];
const onRequest = (message: unknown) => {
  const { request } = message as { request: { host?: string; getHeader(name: string): unknown } };
  contacted.push(String(request.host ?? request.getHeader('host')));
};
diagnostics.subscribe('http.client.request.start', onRequest);

let fixture: AzureFixture;
const opened: SecretProvider[] = [];
const logLines: string[] = [];

const recordingLogger: ProviderLogger = {
  debug: (message, fields) => logLines.push(`debug ${message} ${JSON.stringify(fields ?? {})}`),
  info: (message, fields) => logLines.push(`info ${message} ${JSON.stringify(fields ?? {})}`),
  warn: (message, fields) => logLines.push(`warn ${message} ${JSON.stringify(fields ?? {})}`),
  error: (message, fields) => logLines.push(`error ${message} ${JSON.stringify(fields ?? {})}`),
};

beforeAll(async () => {
  // Small pages with empty pages between them, as the real service sometimes sends.
  fixture = await startAzureFixture({ pageSize: 2, emptyPages: true });
}, 30_000);

afterEach(async () => {
  for (const provider of opened.splice(0)) await provider.close();
});

afterAll(async () => {
  await fixture?.close();
  diagnostics.unsubscribe('http.client.request.start', onRequest);
  // Checked here, after every test of the file ran.
  expect(contacted.length).toBeGreaterThan(0);
  expect(new Set(contacted.map((host) => host.replace(/:\d+$/, '')))).toEqual(
    new Set(['127.0.0.1']),
  );
});

async function open(
  overrides: Record<string, unknown> = {},
  env: Record<string, string> = fixture.env,
): Promise<SecretProvider> {
  const provider = await createProvider(
    azureProvider,
    { ...fixture.config, ...overrides },
    { name: 'az', env, log: recordingLogger },
  );
  opened.push(provider);
  return provider;
}

async function withFault<T>(fault: FakeFault, body: () => Promise<T>): Promise<T> {
  const end = fixture.fake.fault(fault);
  try {
    return await body();
  } finally {
    end();
  }
}

/**
 * Waits until the fake has received `count` requests of `kind` since `mark` (its request count
 * before the call): a request the fake hangs is then in flight, not yet to be sent.
 */
async function received(kind: FakeRequest['kind'], mark: number, count = 1): Promise<void> {
  await expect
    .poll(() => fixture.fake.requests.slice(mark).filter((r) => r.kind === kind).length, {
      timeout: 5_000,
      message: `${count} ${kind} request(s) to reach the fake`,
    })
    .toBeGreaterThanOrEqual(count);
}

async function rejection(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (caught: unknown) => caught,
  );
  expect(isProviderError(error)).toBe(true);
  return error as ProviderError;
}

/** Everything an error could show a reader, causes included. */
function serialise(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 10; depth += 1) {
    parts.push(inspect(current, { depth: 8, showHidden: true }), String(current));
    try {
      parts.push(JSON.stringify(current, Object.getOwnPropertyNames(current)));
    } catch {
      // Cyclic: inspect above printed it.
    }
    current = (current as { cause?: unknown })?.cause;
  }
  return parts.join('\n');
}

const unique = (prefix: string) => `${prefix}-${randomBytes(5).toString('hex')}`;
const canary = () => `canary-${randomBytes(12).toString('hex')}`;

describe('resolve', () => {
  it('completes the bearer challenge, fetches one token, and serves the value with its version', async () => {
    const path = `${unique('app')}/db`;
    const version = await fixture.put(path, Buffer.from('s3cret'));
    const mark = fixture.fake.requests.length;
    const tokensBefore = fixture.fake.tokensIssued;
    const provider = await open();
    const first = await provider.resolve({ path });
    expect(first.value.revealText()).toBe('s3cret');
    expect(first.version).toBe(version);
    expect(String(first.value)).toBe('[REDACTED]');
    await provider.resolve({ path });
    await provider.resolve({ path });
    const seen = fixture.fake.requests.slice(mark);
    // The first request goes out without a token and is challenged; the token comes from the
    // fake's token endpoint (found through its OpenID configuration); then every request has it.
    expect(seen[0]).toMatchObject({ kind: 'vault', authorized: false });
    expect(seen.map((request) => request.kind)).toContain('openid-configuration');
    expect(seen.filter((request) => request.kind === 'token')).toHaveLength(1);
    expect(seen.filter((request) => request.kind === 'instance-discovery')).toHaveLength(0);
    expect(seen.filter((request) => request.kind === 'vault' && request.authorized)).toHaveLength(
      3,
    );
    expect(fixture.fake.tokensIssued - tokensBefore).toBe(1);
    // The path's "/" became "--" in the secret name.
    expect(seen.at(-1)?.path).toBe(`/secrets/${path.replace('/', '--')}/`);
  });

  it('serves the current version, and a superseded one by its id', async () => {
    const path = unique('rotated');
    const v1 = await fixture.put(path, Buffer.from('one'));
    const v2 = await fixture.put(path, Buffer.from('two'));
    const provider = await open();
    expect((await provider.resolve({ path })).version).toBe(v2);
    const pinned = await provider.resolve({ path, version: v1 });
    expect(pinned.value.revealText()).toBe('one');
    expect(pinned.version).toBe(v1);
    expect(v1).toMatch(/^[0-9a-f]{32}$/);
  });

  it('serves bytes stored base64 under contentType application/octet-stream', async () => {
    const path = unique('binary');
    const bytes = Uint8Array.from([0, 1, 2, 0xfe, 0xff, 0x80]);
    await fixture.put(path, bytes);
    const stored = fixture.fake.versions(path).at(-1);
    expect(stored?.contentType).toBe(BINARY_CONTENT_TYPE);
    const provider = await open();
    expect([...(await provider.resolve({ path })).value.reveal()]).toEqual([...bytes]);
  });

  it('serves text as UTF-8 whatever other content type it has', async () => {
    const name = unique('typed');
    fixture.fake.setSecret(name, 'héllo', { contentType: 'text/plain; charset=utf-8' });
    const provider = await open();
    expect((await provider.resolve({ path: name })).value.revealText()).toBe('héllo');
  });

  it('rejects a binary secret whose value is not base64 with DSO_PROVIDER_INTERNAL, quoting nothing of it', async () => {
    const name = unique('badbase64');
    const value = `${canary()}!!`;
    fixture.fake.setSecret(name, value, { contentType: 'Application/Octet-Stream; x=1' });
    const provider = await open();
    const error = await rejection(provider.resolve({ path: name }));
    expect(error.code).toBe('DSO_PROVIDER_INTERNAL');
    expect(error.message).toContain('not base64');
    expect(serialise(error)).not.toContain(value.slice(0, 20));
  });

  it.each([
    ['disabled', { enabled: false }, 'is disabled'],
    ['expired', { expiresOn: new Date(Date.now() - 60_000) }, 'expired at'],
    ['not yet valid', { notBefore: new Date(Date.now() + 3_600_000) }, 'is not valid before'],
  ])(
    'rejects a %s secret with DSO_PROVIDER_NOT_FOUND saying why',
    async (_, attributes, reason) => {
      const name = unique('dated');
      fixture.fake.setSecret(name, 'value', attributes);
      const provider = await open();
      const error = await rejection(provider.resolve({ path: name }));
      expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
      expect(error.retryable).toBe(false);
      expect(error.message).toContain(reason);
      expect(error.message).toContain(name);
    },
  );

  it('rejects a disabled superseded version while the current one still serves', async () => {
    const name = unique('partly');
    const old = fixture.fake.setSecret(name, 'old');
    fixture.fake.setSecret(name, 'new');
    fixture.fake.updateSecret(name, old.version, { enabled: false });
    const provider = await open();
    expect((await provider.resolve({ path: name })).value.revealText()).toBe('new');
    const error = await rejection(provider.resolve({ path: name, version: old.version }));
    expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(error.message).toContain('disabled');
  });

  it('names the path and the Key Vault name when the secret is missing, and the version when that is', async () => {
    const provider = await open();
    const path = `${unique('nowhere')}/db`;
    const missing = await rejection(provider.resolve({ path }));
    expect(missing.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(missing.provider).toBe('az');
    expect(missing.path).toBe(path);
    expect(missing.message).toContain(path);
    expect(missing.message).toContain(path.replace('/', '--'));
    const existing = unique('versioned');
    await fixture.put(existing, Buffer.from('x'));
    const version = 'ab'.repeat(16);
    const noVersion = await rejection(provider.resolve({ path: existing, version }));
    expect(noVersion.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(noVersion.message).toContain(version);
    expect((noVersion.cause as { serviceCode?: string }).serviceCode).toBe('SecretNotFound');
  });

  it.each([
    ['app/db_password', '"_"'],
    ['app/db.password', '"."'],
    ['app--db', 'reads back as the path app/db'],
    ['app-/db', 'reads back'],
    [`a/${'x'.repeat(130)}`, 'the limit is 127'],
  ])(
    'refuses the path %s, which names no Key Vault secret, without a request',
    async (path, reason) => {
      const provider = await open();
      const mark = fixture.fake.requests.length;
      const error = await rejection(provider.resolve({ path }));
      expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
      expect(error.message).toContain(reason);
      expect(fixture.fake.requests.length).toBe(mark);
    },
  );

  it('refuses a version that is not 32 hex characters without a request', async () => {
    const provider = await open();
    const mark = fixture.fake.requests.length;
    const error = await rejection(provider.resolve({ path: 'anything', version: '../../secrets' }));
    expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(error.message).toContain('32 hexadecimal');
    expect(fixture.fake.requests.length).toBe(mark);
  });

  it('reads names case-insensitively, as Key Vault does', async () => {
    const name = unique('Mixed-Case');
    fixture.fake.setSecret(name, 'cased');
    const provider = await open();
    expect((await provider.resolve({ path: name.toLowerCase() })).value.revealText()).toBe('cased');
  });
});

describe('list', () => {
  it('pages through every secret (nextLink, empty pages) and returns paths under the prefix', async () => {
    const root = unique('tree');
    const inside = [`${root}/a/one`, `${root}/a/two`, `${root}/a/deep/three`, `${root}/a`];
    const outside = [`${root}/ab`, `${root}/b/four`];
    for (const path of [...inside, ...outside]) await fixture.put(path, Buffer.from('v'));
    const provider = await open();
    const mark = fixture.fake.requests.length;
    expect(await provider.list!(`${root}/a/`)).toEqual([...inside].sort());
    expect(await provider.list!(`${root}/a`)).toEqual([...inside].sort());
    const pages = fixture.fake.requests
      .slice(mark)
      .filter((request) => request.kind === 'vault' && request.path === '/secrets');
    // Two pages per listing at least: the fake serves two items a page.
    expect(pages.length).toBeGreaterThan(4);
    expect(pages.some((request) => request.query.$skiptoken !== undefined)).toBe(true);
    const all = await provider.list!();
    for (const path of [...inside, ...outside]) expect(all).toContain(path);
  });

  it('matches the prefix case-insensitively and leaves out disabled, expired and not-yet-valid secrets', async () => {
    const root = unique('filter');
    fixture.fake.setSecret(`${root}--Live`, 'v');
    fixture.fake.setSecret(`${root}--off`, 'v', { enabled: false });
    fixture.fake.setSecret(`${root}--old`, 'v', { expiresOn: new Date(Date.now() - 1_000) });
    fixture.fake.setSecret(`${root}--later`, 'v', { notBefore: new Date(Date.now() + 60_000) });
    const provider = await open();
    expect(await provider.list!(`${root.toUpperCase()}/`)).toEqual([`${root}/Live`]);
  });

  it('stops promptly when aborted while a later page hangs', async () => {
    for (let index = 0; index < 4; index += 1) fixture.fake.setSecret(unique('page'), 'v');
    const provider = await open();
    await provider.list!(); // the token is fetched; now only pages are requested
    await withFault({ kind: 'hang', skip: 1 }, async () => {
      const controller = new AbortController();
      const mark = fixture.fake.requests.length;
      const listing = provider.list!(undefined, { signal: controller.signal });
      await received('vault', mark, 2); // the first page answered, the second one hanging
      const started = Date.now();
      controller.abort();
      const error = await rejection(listing);
      expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
      expect(Date.now() - started).toBeLessThan(1_500);
    });
  });
});

describe('health', () => {
  it('reads one page of one item and reports ok', async () => {
    const provider = await open();
    const mark = fixture.fake.requests.length;
    expect(await provider.health!()).toMatchObject({ ok: true });
    const pages = fixture.fake.requests
      .slice(mark)
      .filter((request) => request.kind === 'vault' && request.authorized);
    expect(pages).toHaveLength(1);
    expect(pages[0]).toMatchObject({ path: '/secrets', query: { maxresults: '1' } });
  });

  it.each([
    [{ kind: 'status', status: 503 } as const, 'DSO_PROVIDER_UNAVAILABLE'],
    [{ kind: 'status', status: 403 } as const, 'DSO_PROVIDER_UNAUTHORIZED'],
  ])('reports not ok with the code during %j', async (fault, code) => {
    const provider = await open();
    await provider.health!();
    const health = await withFault(fault, () => provider.health!());
    expect(health.ok).toBe(false);
    expect(health.detail).toContain(code);
    expect(await provider.health!()).toMatchObject({ ok: true });
  });
});

describe('errors', () => {
  it('maps 403 AccessDenied and ForbiddenByRbac to DSO_PROVIDER_UNAUTHORIZED with the fix', async () => {
    const path = unique('guarded');
    await fixture.put(path, Buffer.from('x'));
    const provider = await open();
    for (const innerCode of ['AccessDenied', 'ForbiddenByRbac']) {
      const error = await withFault({ kind: 'status', status: 403, innerCode }, () =>
        rejection(provider.resolve({ path })),
      );
      expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
      expect(error.retryable).toBe(false);
      expect(error.message).toContain(`403 Forbidden/${innerCode}`);
      expect(error.message).toContain('Key Vault Secrets User');
      expect(error.cause).toMatchObject({ name: 'AzureServiceError', statusCode: 403, innerCode });
    }
  });

  it('maps a 401 for a token Key Vault no longer accepts to DSO_PROVIDER_UNAUTHORIZED', async () => {
    const path = unique('revoked');
    await fixture.put(path, Buffer.from('x'));
    const provider = await open();
    await provider.resolve({ path });
    const error = await withFault({ kind: 'status', status: 401 }, () =>
      rejection(provider.resolve({ path })),
    );
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(error.message).toContain('401 Unauthorized');
  });

  it('retries a 429 whose Retry-After fits maxRetryDelayMs, and serves', async () => {
    const path = unique('busy');
    await fixture.put(path, Buffer.from('x'));
    const provider = await open();
    await provider.resolve({ path });
    const mark = fixture.fake.requests.length;
    const resolved = await withFault(
      { kind: 'status', status: 429, retryAfterSeconds: 0, count: 1 },
      () => provider.resolve({ path }),
    );
    expect(resolved.value.revealText()).toBe('x');
    expect(fixture.fake.requests.length - mark).toBe(2);
  });

  it('fails at once with DSO_PROVIDER_THROTTLED when Retry-After asks for more than maxRetryDelayMs', async () => {
    const path = unique('throttled');
    await fixture.put(path, Buffer.from('x'));
    const provider = await open();
    await provider.resolve({ path });
    const mark = fixture.fake.requests.length;
    const started = Date.now();
    const error = await withFault({ kind: 'status', status: 429, retryAfterSeconds: 30 }, () =>
      rejection(provider.resolve({ path })),
    );
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(fixture.fake.requests.length - mark).toBe(1);
    expect(error.code).toBe('DSO_PROVIDER_THROTTLED');
    expect(error.retryable).toBe(true);
    expect(error.message).toContain('retry after 30 s');
    expect(error.cause).toMatchObject({
      statusCode: 429,
      retryAfterMs: 30_000,
      serviceCode: 'Throttled',
    });
  });

  it('reports DSO_PROVIDER_THROTTLED with the wait once the SDK has used its retries on a 429', async () => {
    const path = unique('throttled-short');
    await fixture.put(path, Buffer.from('x'));
    const provider = await open({ maxRetries: 1 });
    await provider.resolve({ path });
    const mark = fixture.fake.requests.length;
    const error = await withFault({ kind: 'status', status: 429, retryAfterSeconds: 0 }, () =>
      rejection(provider.resolve({ path })),
    );
    expect(fixture.fake.requests.length - mark).toBe(2);
    expect(error.code).toBe('DSO_PROVIDER_THROTTLED');
    expect(error.message).toContain('429 Throttled');
  });

  it.each([
    [503, 'ServiceUnavailable'],
    [500, 'InternalServerError'],
  ] as const)(
    'retries a %i maxRetries times, then fails with DSO_PROVIDER_UNAVAILABLE',
    async (status, code) => {
      const path = unique('down');
      await fixture.put(path, Buffer.from('x'));
      const provider = await open({ maxRetries: 2, retryDelayMs: 10 });
      await provider.resolve({ path });
      const mark = fixture.fake.requests.length;
      const error = await withFault({ kind: 'status', status }, () =>
        rejection(provider.resolve({ path })),
      );
      expect(fixture.fake.requests.length - mark).toBe(3);
      expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
      expect(error.retryable).toBe(true);
      expect(error.message).toContain(`${status} ${code}`);
    },
  );

  it('maps a connection reset to DSO_PROVIDER_UNAVAILABLE after the SDK retries', async () => {
    const path = unique('reset');
    await fixture.put(path, Buffer.from('x'));
    const provider = await open({ maxRetries: 1, retryDelayMs: 10 });
    await provider.resolve({ path });
    const error = await withFault({ kind: 'reset' }, () => rejection(provider.resolve({ path })));
    expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
    expect(error.message).toContain('cannot reach Key Vault');
  });

  it('maps a refused connection to DSO_PROVIDER_UNAVAILABLE', async () => {
    const provider = await open({ vaultUrl: 'https://127.0.0.1:1/', maxRetries: 0 });
    const error = await rejection(provider.resolve({ path: 'anything' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
    expect(error.message).toContain('ECONNREFUSED');
  });

  it('maps an untrusted certificate to DSO_PROVIDER_INVALID_CONFIG pointing at tls.caFile', async () => {
    const provider = await open({ tls: {} });
    const error = await rejection(provider.resolve({ path: 'anything' }));
    expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(error.message).toContain('tls.caFile');
  });

  it('maps a challenge for another resource to DSO_PROVIDER_INVALID_CONFIG unless verification is off', async () => {
    const provider = await open({ disableChallengeResourceVerification: false });
    const error = await rejection(provider.resolve({ path: 'anything' }));
    expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(error.message).toContain('disableChallengeResourceVerification');
  });

  it('maps a truncated answer to DSO_PROVIDER_INTERNAL without quoting the body it could not parse', async () => {
    const path = unique('cut');
    const value = canary();
    await fixture.put(path, Buffer.from(value));
    const provider = await open();
    await provider.resolve({ path });
    const error = await withFault({ kind: 'truncated' }, () =>
      rejection(provider.resolve({ path })),
    );
    expect(error.code).toBe('DSO_PROVIDER_INTERNAL');
    expect(serialise(error)).not.toContain(value);
  });

  it('never shows a value or a token in an error, its causes, or a log line', async () => {
    const path = unique('canary');
    const value = canary();
    await fixture.put(path, Buffer.from(value));
    const provider = await open();
    await provider.resolve({ path });
    const errors: unknown[] = [];
    const faults: FakeFault[] = [
      { kind: 'status', status: 401 },
      { kind: 'status', status: 403 },
      { kind: 'status', status: 429, retryAfterSeconds: 60 },
      { kind: 'status', status: 503, retryAfterSeconds: 60 },
      { kind: 'truncated' },
      { kind: 'reset' },
    ];
    for (const fault of faults) {
      await withFault(fault, async () => {
        errors.push(await rejection(provider.resolve({ path })));
        errors.push(await rejection(provider.list!()));
      });
    }
    errors.push(await rejection(provider.resolve({ path, version: 'f'.repeat(32) })));
    expect(errors.length).toBe(13);
    const text = `${errors.map(serialise).join('\n')}\n${logLines.join('\n')}`;
    expect(text).not.toContain(value);
    expect(text).not.toContain(Buffer.from(value).toString('base64'));
    expect(fixture.fake.issuedTokens.length).toBeGreaterThan(0);
    for (const token of fixture.fake.issuedTokens) expect(text).not.toContain(token);
    expect(text).not.toContain(fixture.fake.clientSecret);
  });
});

describe('timeouts and cancellation', () => {
  it('gives up on a request that gets no answer within requestTimeoutMs with DSO_PROVIDER_TIMEOUT', async () => {
    const path = unique('slow');
    await fixture.put(path, Buffer.from('x'));
    const provider = await open({ requestTimeoutMs: 300 });
    await provider.resolve({ path });
    const started = Date.now();
    const error = await withFault({ kind: 'hang' }, () => rejection(provider.resolve({ path })));
    expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
    expect(error.message).toContain('requestTimeoutMs (300 ms)');
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('settles an aborted call at once while Key Vault hangs, and serves the next call', async () => {
    const path = unique('abort');
    await fixture.put(path, Buffer.from('x'));
    const provider = await open();
    await provider.resolve({ path });
    await withFault({ kind: 'hang', count: 1 }, async () => {
      const controller = new AbortController();
      const mark = fixture.fake.requests.length;
      const call = provider.resolve({ path }, { signal: controller.signal });
      await received('vault', mark);
      const started = Date.now();
      controller.abort();
      const error = await rejection(call);
      expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
      expect(Date.now() - started).toBeLessThan(1_000);
    });
    expect((await provider.resolve({ path })).value.revealText()).toBe('x');
  });

  it('settles an aborted call at once while the token endpoint hangs', async () => {
    const provider = await open();
    await withFault({ kind: 'hang', target: 'token' }, async () => {
      const controller = new AbortController();
      const mark = fixture.fake.requests.length;
      const call = provider.resolve({ path: 'anything' }, { signal: controller.signal });
      await received('token', mark);
      const started = Date.now();
      controller.abort();
      const error = await rejection(call);
      expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
      expect(Date.now() - started).toBeLessThan(1_000);
    });
  });

  it('rejects a call with an already-aborted signal without any request', async () => {
    const provider = await open();
    const mark = fixture.fake.requests.length;
    const error = await rejection(provider.resolve({ path: 'x' }, { signal: AbortSignal.abort() }));
    expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
    expect(fixture.fake.requests.length).toBe(mark);
  });

  it('ends a hung call when the provider is closed', async () => {
    const path = unique('closing');
    await fixture.put(path, Buffer.from('x'));
    const provider = await open();
    await provider.resolve({ path });
    await withFault({ kind: 'hang', count: 1 }, async () => {
      const mark = fixture.fake.requests.length;
      const call = provider.resolve({ path });
      await received('vault', mark);
      const started = Date.now();
      await provider.close();
      const error = await rejection(call);
      expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
      expect(Date.now() - started).toBeLessThan(1_000);
    });
  });
});

describe('credentials', () => {
  it('refuses a token request with a wrong client secret as DSO_PROVIDER_UNAUTHORIZED naming the AADSTS code', async () => {
    const provider = await open({}, { [FIXTURE_SECRET_ENV]: 'not-the-secret' });
    const error = await rejection(provider.resolve({ path: 'anything' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(error.message).toContain('invalid_client');
    expect(error.message).toContain('AADSTS7000215');
    expect(serialise(error)).not.toContain('not-the-secret');
  });

  it('maps a token endpoint that keeps answering 503 to DSO_PROVIDER_UNAVAILABLE', async () => {
    const provider = await open({ maxRetries: 1, retryDelayMs: 10 });
    const error = await withFault({ kind: 'status', status: 503, target: 'token' }, () =>
      rejection(provider.resolve({ path: 'anything' })),
    );
    expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
    expect(error.message).toContain('AADSTS50196');
  });

  it('maps an authority that cannot be reached to DSO_PROVIDER_UNAVAILABLE', async () => {
    const provider = await open({ authorityHost: 'https://127.0.0.1:1' });
    const error = await rejection(provider.resolve({ path: 'anything' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
    expect(error.message).toContain('https://127.0.0.1:1');
  });

  it('refuses a vault of another tenant with DSO_PROVIDER_UNAUTHORIZED', async () => {
    const credential = { ...(fixture.config.credential as object), tenantId: 'contoso.example' };
    const provider = await open({ credential });
    const error = await rejection(provider.resolve({ path: 'anything' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(error.message).toContain('another Entra ID tenant');
  });

  it('refuses at creation a clientSecretEnv variable that is not set, naming the setting', async () => {
    const error = await rejection(open({}, {}));
    expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(error.message).toContain('credential.clientSecretEnv');
    expect(error.message).not.toContain(FIXTURE_SECRET_ENV);
  });

  it('reads the default chain from the provider environment (AZURE_* there, not in process.env)', async () => {
    expect(process.env.AZURE_CLIENT_SECRET).toBeUndefined();
    const provider = await open(
      { credential: { kind: 'default' }, authorityHost: undefined },
      {
        AZURE_TENANT_ID: fixture.fake.tenantId,
        AZURE_CLIENT_ID: fixture.fake.clientId,
        AZURE_CLIENT_SECRET: fixture.fake.clientSecret,
        AZURE_AUTHORITY_HOST: fixture.fake.authorityHost,
      },
    );
    const path = unique('default');
    await fixture.put(path, Buffer.from('chained'));
    expect((await provider.resolve({ path })).value.revealText()).toBe('chained');
  });

  it('stops the default chain at a refused service principal (no managed identity attempt)', async () => {
    const provider = await open(
      { credential: { kind: 'default' } },
      {
        AZURE_TENANT_ID: fixture.fake.tenantId,
        AZURE_CLIENT_ID: fixture.fake.clientId,
        AZURE_CLIENT_SECRET: 'wrong',
      },
    );
    const error = await rejection(provider.resolve({ path: 'anything' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    // The file's afterAll proves no request left 127.0.0.1 (IMDS is 169.254.169.254).
  });

  it('gets a token with a federated token file (workload identity) in the default chain', async () => {
    const federatedToken = `federated-${randomBytes(16).toString('hex')}`;
    const own = await startAzureFixture({ federatedToken });
    const dir = await mkdtemp(join(tmpdir(), 'dso-azure-wi-'));
    try {
      const tokenFile = join(dir, 'token');
      await writeFile(tokenFile, federatedToken, { mode: 0o600 });
      const provider = await createProvider(
        azureProvider,
        { ...own.config, credential: { kind: 'default' } },
        {
          name: 'az-wi',
          env: {
            AZURE_TENANT_ID: own.fake.tenantId,
            AZURE_CLIENT_ID: own.fake.clientId,
            AZURE_FEDERATED_TOKEN_FILE: tokenFile,
          },
        },
      );
      try {
        await own.put('wi/secret', Buffer.from('federated'));
        expect((await provider.resolve({ path: 'wi/secret' })).value.revealText()).toBe(
          'federated',
        );
      } finally {
        await provider.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
      await own.close();
    }
  }, 20_000);
});

describe('configuration', () => {
  it('refuses an unreadable or empty caFile at creation, without quoting the file name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dso-azure-ca-'));
    try {
      const notPem = join(dir, 'not-a-ca.pem');
      await writeFile(notPem, 'hello');
      for (const caFile of [join(dir, 'missing.pem'), notPem]) {
        const error = await rejection(open({ tls: { caFile } }));
        expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
        expect(error.message).toContain('tls.caFile');
        expect(serialise(error)).not.toContain(dir);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('speaks an older Key Vault API version when serviceVersion asks', async () => {
    const path = unique('api');
    await fixture.put(path, Buffer.from('x'));
    const provider = await open({ serviceVersion: '7.4' });
    const mark = fixture.fake.requests.length;
    await provider.resolve({ path });
    const versions = fixture.fake.requests
      .slice(mark)
      .filter((request) => request.kind === 'vault')
      .map((request) => request.query['api-version']);
    expect(new Set(versions)).toEqual(new Set(['7.4']));
  });
});
