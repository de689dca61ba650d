import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Certificates for TLS tests, as PEM text. Test material only: made fresh, never a secret. */
export interface TestPki {
  /** The CA that signed the server and client certificates. */
  caPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  /** A client certificate (CN `dso-test-client`) for TLS client authentication. */
  clientCertPem: string;
  clientKeyPem: string;
  /** A second CA that signed nothing here: trusting only it must fail verification. */
  otherCaPem: string;
}

export interface TestPkiOptions {
  /** DNS names in the server certificate. @default ['localhost'] */
  dnsNames?: string[];
  /** IP addresses in the server certificate. @default ['127.0.0.1'] */
  ips?: string[];
}

/**
 * Makes a CA, a server certificate and a client certificate with the `openssl` CLI (ECDSA
 * P-256, valid two days) in a temporary directory that is removed before this returns.
 *
 * @example
 * const pki = await createTestPki({ dnsNames: ['vault.test'], ips: [] });
 */
export async function createTestPki(options: TestPkiOptions = {}): Promise<TestPki> {
  const dnsNames = options.dnsNames ?? ['localhost'];
  const ips = options.ips ?? ['127.0.0.1'];
  const dir = await mkdtemp(join(tmpdir(), 'dso-vault-pki-'));
  const file = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  try {
    for (const ca of ['ca', 'other-ca']) {
      await openssl(
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        file(`${ca}.key`),
        '-out',
        file(`${ca}.pem`),
        '-days',
        '2',
        '-subj',
        `/CN=dso-test-${ca}`,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      );
    }
    const altNames = [...dnsNames.map((name) => `DNS:${name}`), ...ips.map((ip) => `IP:${ip}`)];
    await writeFile(
      file('server.ext'),
      `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n${
        altNames.length > 0 ? `subjectAltName=${altNames.join(',')}\n` : ''
      }`,
    );
    await writeFile(
      file('client.ext'),
      'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n',
    );
    for (const [name, cn] of [
      ['server', 'fake-vault'],
      ['client', 'dso-test-client'],
    ] as const) {
      await openssl(
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        file(`${name}.key`),
        '-out',
        file(`${name}.csr`),
        '-subj',
        `/CN=${cn}`,
      );
      await openssl(
        'x509',
        '-req',
        '-in',
        file(`${name}.csr`),
        '-CA',
        file('ca.pem'),
        '-CAkey',
        file('ca.key'),
        '-CAcreateserial',
        '-out',
        file(`${name}.pem`),
        '-days',
        '2',
        '-extfile',
        file(`${name}.ext`),
      );
    }
    const text = (name: string) => readFile(file(name), 'utf8');
    return {
      caPem: await text('ca.pem'),
      serverCertPem: await text('server.pem'),
      serverKeyPem: await text('server.key'),
      clientCertPem: await text('client.pem'),
      clientKeyPem: await text('client.key'),
      otherCaPem: await text('other-ca.pem'),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
