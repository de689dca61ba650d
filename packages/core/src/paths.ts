import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

/** Where DSO keeps its local state: the vault and, by default, the vault's key file. */
export interface DsoPaths {
  /** `DSO_HOME`, default `/var/lib/dso` for root, `$XDG_DATA_HOME/dso` (or `~/.local/share/dso`) otherwise. */
  home: string;
  /** The local provider's encrypted vault file: `DSO_VAULT_PATH`, default `<home>/vault.dso`. */
  vaultPath: string;
  /** The key file used when neither `DSO_VAULT_PASSPHRASE` nor `DSO_VAULT_KEY_FILE` is set: `<home>/vault.key`. */
  defaultKeyFile: string;
}

/**
 * Resolves DSO's local paths from the environment, the same way for the agent and the CLI.
 *
 * @example
 * const { vaultPath } = resolveDsoPaths(process.env);
 */
export function resolveDsoPaths(
  env: NodeJS.ProcessEnv = process.env,
  uid: number = process.getuid?.() ?? -1,
): DsoPaths {
  const dataHome =
    env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME)
      ? env.XDG_DATA_HOME
      : join(homedir(), '.local', 'share');
  const home = env.DSO_HOME || (uid === 0 ? '/var/lib/dso' : join(dataHome, 'dso'));
  return {
    home,
    vaultPath: env.DSO_VAULT_PATH || join(home, 'vault.dso'),
    defaultKeyFile: join(home, 'vault.key'),
  };
}
