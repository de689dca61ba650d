import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_RESPONSE_BYTES, vaultProviderConfigSchema } from './config.js';

const parse = (config: unknown) => vaultProviderConfigSchema.safeParse(config);
const problems = (config: unknown) => {
  const result = parse(config);
  if (result.success) return 'accepted';
  return result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('\n');
};

describe('vault provider configuration', () => {
  it('fills the defaults', () => {
    const result = parse({ address: 'https://vault.example.com:8200' });
    expect(result.success && result.data).toEqual({
      address: 'https://vault.example.com:8200',
      allowInsecureHttp: false,
      mount: 'secret',
      auth: { method: 'token', tokenEnv: 'VAULT_TOKEN' },
      tls: {},
      tlsSkipVerify: false,
      valueEncoding: 'utf8',
      requestTimeoutMs: 10_000,
      maxResponseBytes: DEFAULT_MAX_RESPONSE_BYTES,
      maxListPaths: 10_000,
    });
  });

  it('reads auth without method as token auth, and defaults the AppRole mount', () => {
    const token = parse({ address: 'https://v:8200', auth: { token: 'hvs.x' } });
    expect(token.success && token.data.auth).toEqual({ method: 'token', token: 'hvs.x' });
    const approle = parse({
      address: 'https://v:8200',
      auth: { method: 'approle', roleId: 'r', secretIdEnv: 'ROLE_SECRET' },
    });
    expect(approle.success && approle.data.auth).toEqual({
      method: 'approle',
      roleId: 'r',
      secretIdEnv: 'ROLE_SECRET',
      mount: 'approle',
    });
  });

  it('trims slashes from mounts and namespaces', () => {
    const result = parse({ address: 'https://v:8200', mount: '/kv/prod/', namespace: 'team-a/' });
    expect(result.success && [result.data.mount, result.data.namespace]).toEqual([
      'kv/prod',
      'team-a',
    ]);
  });

  it('allows http:// to loopback only, unless allowInsecureHttp', () => {
    expect(problems({ address: 'http://127.0.0.1:8200' })).toBe('accepted');
    expect(problems({ address: 'http://localhost:8200' })).toBe('accepted');
    expect(problems({ address: 'http://vault.internal:8200' })).toContain('allowInsecureHttp');
    expect(problems({ address: 'http://vault.internal:8200', allowInsecureHttp: true })).toBe(
      'accepted',
    );
  });

  it('refuses each malformed setting, naming it and never its value', () => {
    const cases: [unknown, string][] = [
      [{ address: 'vault-s3ntinel' }, 'address: address must be a URL'],
      [{ address: 'ftp://v-s3ntinel:8200' }, 'address must use https://'],
      [{ address: 'https://user:pw-s3ntinel@v:8200' }, 'must not carry credentials'],
      [{ address: 'https://v:8200/ui-s3ntinel' }, 'scheme, host and port only'],
      [{ address: 'https://v:8200', mountt: 'kv-s3ntinel' }, 'Unrecognized key'],
      [{ address: 'https://v:8200', mount: '../s3ntinel' }, 'mount must be segments'],
      [{ address: 'https://v:8200', namespace: 'a b-s3ntinel' }, 'namespace must be segments'],
      [
        { address: 'https://v:8200', auth: { method: 'ldap-s3ntinel' } },
        "auth.method must be 'token' or 'approle'",
      ],
      [
        { address: 'https://v:8200', auth: { token: 'hvs.s3ntinel', tokenEnv: 'S3NTINEL_ENV' } },
        'not both',
      ],
      [
        { address: 'https://v:8200', auth: { tokenEnv: 'hvs.s3ntinel' } },
        'environment variable name',
      ],
      [{ address: 'https://v:8200', auth: { method: 'approle' } }, 'auth.roleId'],
      [
        {
          address: 'https://v:8200',
          auth: { method: 'approle', roleId: 'r', secretId: 's3ntinel', secretIdEnv: 'S3NTINEL' },
        },
        'not both',
      ],
      [
        { address: 'https://v:8200', tls: { caFile: '/a-s3ntinel', caPem: 'pem-s3ntinel' } },
        'not both',
      ],
      [{ address: 'https://v:8200', tls: { certPem: 'pem-s3ntinel' } }, 'needs its key'],
      [
        { address: 'http://127.0.0.1:8200', tls: { caPem: 'pem-s3ntinel' } },
        'https:// address only',
      ],
      [{ address: 'http://127.0.0.1:8200', tlsSkipVerify: true }, 'https:// address only'],
      [{ address: 'https://v:8200', tlsSkipVerify: 'yes-s3ntinel' }, 'tlsSkipVerify'],
      [{ address: 'https://v:8200', valueEncoding: 'base64' }, 'set valueKey too'],
      [
        { address: 'https://v:8200', valueKey: 'v', valueEncoding: 'hex-s3ntinel' },
        'valueEncoding',
      ],
      [{ address: 'https://v:8200', requestTimeoutMs: 10 }, 'requestTimeoutMs'],
      [{ address: 'https://v:8200', maxResponseBytes: 1.5 }, 'maxResponseBytes'],
    ];
    for (const [config, expected] of cases) {
      const text = problems(config);
      expect(text, JSON.stringify(config)).toContain(expected);
      expect(text, JSON.stringify(config)).not.toContain('s3ntinel');
    }
  });
});
