import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A throwaway certificate authority and a server certificate for 127.0.0.1 it signed. */
export interface TestCertificates {
  /** Directory holding the files; removed by {@link TestCertificates.remove}. */
  dir: string;
  /** PEM file of the CA certificate: what `tls.caFile` names. */
  caFile: string;
  caPem: string;
  /** PEM of the server's private key and certificate (for `https.createServer`). */
  serverKeyPem: string;
  serverCertPem: string;
  remove(): Promise<void>;
}

/**
 * Makes a CA and a server certificate for `IP:127.0.0.1` with the openssl CLI (Node's crypto
 * cannot issue X.509 certificates). Keys are P-256, valid for one day, made fresh per call: they
 * protect nothing but a test's loopback traffic.
 *
 * @throws Error when the openssl CLI is missing or fails
 */
export async function createTestCertificates(): Promise<TestCertificates> {
  const dir = await mkdtemp(join(tmpdir(), 'dso-azure-test-ca-'));
  const file = (name: string) => join(dir, name);
  const openssl = (args: string[]) => run('openssl', args, { cwd: dir, timeout: 30_000 });
  try {
    await writeFile(
      file('ca.ext'),
      'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n',
    );
    await writeFile(
      file('server.ext'),
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=serverAuth',
        'subjectAltName=IP:127.0.0.1',
        'authorityKeyIdentifier=keyid',
        '',
      ].join('\n'),
    );
    const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await openssl([
      'req',
      '-new',
      ...ecKey,
      '-keyout',
      'ca.key',
      '-out',
      'ca.csr',
      '-subj',
      '/CN=dso-test-ca',
    ]);
    await openssl([
      'x509',
      '-req',
      '-in',
      'ca.csr',
      '-signkey',
      'ca.key',
      '-days',
      '1',
      '-extfile',
      'ca.ext',
      '-out',
      'ca.pem',
    ]);
    await openssl([
      'req',
      '-new',
      ...ecKey,
      '-keyout',
      'server.key',
      '-out',
      'server.csr',
      '-subj',
      '/CN=127.0.0.1',
    ]);
    await openssl([
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      'server.ext',
      '-out',
      'server.pem',
    ]);
    const [caPem, serverKeyPem, serverCertPem] = await Promise.all([
      readFile(file('ca.pem'), 'utf8'),
      readFile(file('server.key'), 'utf8'),
      readFile(file('server.pem'), 'utf8'),
    ]);
    // The CA's key is not needed again: nothing else should ever be signed with it.
    await rm(file('ca.key'), { force: true });
    return {
      dir,
      caFile: file('ca.pem'),
      caPem,
      serverKeyPem,
      serverCertPem,
      remove: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
