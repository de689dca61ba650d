/** The longest Key Vault secret name, in characters. */
export const MAX_SECRET_NAME_LENGTH = 127;

/** What a path's `/` becomes in a Key Vault secret name. */
export const PATH_SEPARATOR_IN_NAME = '--';

const NAME = /^[0-9A-Za-z-]{1,127}$/;
const VERSION = /^[0-9A-Fa-f]{32}$/;

/**
 * The Key Vault secret name for a DSO path, or why there is none. Key Vault names are
 * `[0-9a-zA-Z-]{1,127}` and case-insensitive, so each `/` becomes `--` (the convention of
 * .NET's Key Vault configuration provider) and every other character must already be a
 * letter, digit or `-`. A path is accepted only when its name reads back as the same path, so
 * two paths never share a secret: `app/db-password` ⇄ `app--db-password`, while `app--db`
 * (which would read back as `app/db`) and `app-/db` are refused.
 *
 * @example
 * secretNameForPath('app/db/password'); // { ok: true, name: 'app--db--password' }
 * secretNameForPath('app/db_password'); // { ok: false, reason: '… "_" …' }
 */
export function secretNameForPath(
  path: string,
): { ok: true; name: string } | { ok: false; reason: string } {
  const name = path.replaceAll('/', PATH_SEPARATOR_IN_NAME);
  const bad = /[^0-9A-Za-z/-]/.exec(path);
  if (bad !== null) {
    return {
      ok: false,
      reason: `it holds ${JSON.stringify(bad[0])}: Key Vault secret names allow only letters, digits and "-" (each "/" becomes "--")`,
    };
  }
  if (!NAME.test(name)) {
    return {
      ok: false,
      reason: `its Key Vault name is ${name.length} characters long; the limit is ${MAX_SECRET_NAME_LENGTH} (each "/" counts as two)`,
    };
  }
  const readBack = pathForSecretName(name);
  if (readBack !== path) {
    return {
      ok: false,
      reason: `its Key Vault name ${name} reads back as the path ${readBack} ("--" separates segments, so a segment may not hold "--" or end in "-" before a "/")`,
    };
  }
  return { ok: true, name };
}

/**
 * The DSO path for a Key Vault secret name: each `--`, left to right, becomes `/`.
 *
 * @example
 * pathForSecretName('app--db--password'); // 'app/db/password'
 * pathForSecretName('db-password');       // 'db-password'
 */
export function pathForSecretName(name: string): string {
  return name.replaceAll(PATH_SEPARATOR_IN_NAME, '/');
}

/**
 * True for a Key Vault secret version id: 32 hexadecimal characters.
 *
 * @example
 * isSecretVersionId('4c2f0e8a9b7d4e1f8a6b5c3d2e1f0a9b'); // true
 * isSecretVersionId('latest');                           // false
 */
export function isSecretVersionId(version: string): boolean {
  return VERSION.test(version);
}
