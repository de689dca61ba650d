import { posix } from 'node:path';
import { DsoError, isDsoError } from './errors.js';
import {
  formatReference,
  isReference,
  parseReference,
  type SecretReference,
} from './references.js';
import { editDistance, suggestReference } from './references-near-miss.js';

/**
 * The container labels DSO reads. Labels hold references and policy, never secret values.
 *
 * | key | meaning |
 * | --- | --- |
 * | `dso.enable` | `true` opts the container in |
 * | `dso.file.<name>` | a `dsofile://` reference delivered as the file `<target>/<name>` |
 * | `dso.target` | the absolute directory the files go in |
 * | `dso.mode` | the files' octal mode |
 * | `dso.owner` | the files' numeric `uid[:gid]` |
 * | `dso.env.<NAME>` | the `dso://` reference the environment variable `<NAME>` was created from (the value itself is in the container's environment) |
 * | `dso.env-version.<NAME>` | the version of that secret the container was created with |
 * | `dso.rotate` | the rotation policy: `files`, `signal`, `hook`, `restart`, `replace` |
 * | `dso.rotate.signal` | the signal of `signal` |
 * | `dso.rotate.hook` | the command of `hook`, a JSON list |
 * | `dso.rotate.escalate` | the heaviest policy tried when a lighter one fails |
 */
export const LABELS = {
  enable: 'dso.enable',
  target: 'dso.target',
  mode: 'dso.mode',
  owner: 'dso.owner',
  filePrefix: 'dso.file.',
  envPrefix: 'dso.env.',
  envVersionPrefix: 'dso.env-version.',
  rotate: 'dso.rotate',
  rotateSignal: 'dso.rotate.signal',
  rotateHook: 'dso.rotate.hook',
  rotateEscalate: 'dso.rotate.escalate',
} as const;

/**
 * What a running container does when a secret it uses changes, lightest first. The files are
 * rewritten in every case; `signal` then sends a signal, `hook` runs a command in it, `restart`
 * restarts it, `replace` creates a new container beside it (with its `dso://` environment values
 * resolved again), hands it the name once healthy, and rolls back otherwise.
 */
export const LABEL_ROTATION_POLICIES = ['files', 'signal', 'hook', 'restart', 'replace'] as const;
/** One of {@link LABEL_ROTATION_POLICIES}. */
export type LabelRotationPolicy = (typeof LABEL_ROTATION_POLICIES)[number];

/** A container's own rotation policy, from its `dso.rotate*` labels. */
export type ManagedRotation = {
  policy: LabelRotationPolicy;
  /** For `signal`: the signal's name, e.g. `SIGHUP`; absent means the configured default. */
  signal?: string;
  /** For `hook`: the command run in the container (argv; never holds a value). */
  hook?: string[];
  /** The heaviest policy tried when a lighter one fails; absent means the configured default. */
  escalateTo?: LabelRotationPolicy;
};

/** One environment variable of a managed container that holds a resolved `dso://` secret. */
export type ManagedEnv = {
  /** The variable's name. */
  name: string;
  /** Where its value came from; always a `dso` reference. */
  reference: SecretReference;
  /** The version its value had when the container was created (`dso.env-version.<NAME>`), when known. */
  createdVersion?: string;
};

/** Where a managed container's secret files go when `dso.target` is absent. */
export const DEFAULT_SECRETS_DIR = '/run/secrets';

/** The mode of a managed container's secret files when `dso.mode` is absent: owner read-only. */
export const DEFAULT_FILE_MODE = 0o400;

/**
 * The longest secret file name: it fits a plain ustar name field, so the injection's tar stream
 * needs no extension headers. One rule for labels and for the runtime that writes the files.
 */
export const MAX_FILE_NAME_LENGTH = 100;

/** The largest uid or gid accepted, the same for labels and the runtime (busybox and most images use 32-bit signed ids). */
export const MAX_OWNER_ID = 2 ** 31 - 1;
const MAX_ID = MAX_OWNER_ID;

/**
 * Why `name` cannot be a secret file's name, or undefined when it can: 1 to
 * {@link MAX_FILE_NAME_LENGTH} characters of `A-Z a-z 0-9 . _ -`, not `.`, and not starting with
 * `..` (reserved for DSO's own `..data` link and version directories).
 *
 * @example
 * checkSecretFileName('db_password'); // undefined
 * checkSecretFileName('..data');      // 'starts with ".." (reserved for dso)'
 */
export function checkSecretFileName(name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'is empty';
  if (name.length > MAX_FILE_NAME_LENGTH)
    return `is longer than ${MAX_FILE_NAME_LENGTH} characters`;
  if (!FILE_NAME.test(name)) return 'may only hold A-Z a-z 0-9 . _ -';
  if (name === '.') return 'is "."';
  if (name.startsWith('..')) return 'starts with ".." (reserved for dso)';
  return undefined;
}

/** One secret file of a managed container. */
export type ManagedFile = {
  /** The file's name inside the target directory. */
  name: string;
  /** Where its content comes from; always a `dsofile` reference. */
  reference: SecretReference;
};

/** What a managed container's labels ask for. */
export type ManagedSpec = {
  /** Absolute, normalised directory inside the container that holds the files. */
  target: string;
  /** Permission bits of every file, `0o000` to `0o777`. */
  mode: number;
  /** Numeric owner of the files; absent means the container's own user. */
  owner?: { uid: number; gid: number };
  /** The files, sorted by name. */
  files: ManagedFile[];
  /** Environment variables created from `dso://` references (`dso.env.*`), sorted by name. */
  env: ManagedEnv[];
  /** Its rotation policy; absent means the configured default. */
  rotation?: ManagedRotation;
};

const FILE_NAME = /^[A-Za-z0-9._-]+$/;
const MODE = /^(?:0o)?([0-7]{1,4})$/;
const OWNER = /^([0-9]{1,10})(?::([0-9]{1,10}))?$/;
// Control characters in a path are legal to the kernel but only ever a mistake or an attack.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
const CONTROL = /[\u0000-\u001f\u007f]/;
const PLAIN_KEY = /^[\x21-\x7e]{1,300}$/;
/** The longest `dso.target`: the runtime passes it to a shell script as an argument. */
const MAX_TARGET_LENGTH = 1024;
/** The characters a target may hold: the runtime's rule, so a target the labels accept is one it writes to. */
const TARGET_CHARACTERS = /^[A-Za-z0-9._\-/]+$/;

/**
 * Reads a container's DSO labels. A container is managed only when `dso.enable` is exactly
 * `true`; for any other container this returns `undefined` without looking further.
 *
 * Defaults: `dso.target` {@link DEFAULT_SECRETS_DIR}, `dso.mode` {@link DEFAULT_FILE_MODE},
 * no `dso.owner` (the container's own user, decided by whoever writes the files). A managed
 * container with no `dso.file.*` label is valid and has no files. `dso.owner=<uid>` without a
 * gid uses the uid as the gid. Other `dso.*` labels are ignored, so labels written by a newer
 * `dso up` do not break an older agent.
 *
 * @example
 * parseManagedLabels({ 'dso.enable': 'true', 'dso.file.db_password': 'dsofile://app/db#password' });
 * // { target: '/run/secrets', mode: 0o400, files: [{ name: 'db_password', reference: { … } }] }
 * @throws DsoError DSO_LABEL_INVALID naming the label, what is wrong with it and the fix
 */
export function parseManagedLabels(
  labels: Readonly<Record<string, string>> | null | undefined,
): ManagedSpec | undefined {
  if (labels == null || labels[LABELS.enable] !== 'true') return undefined;

  const target = parseTarget(labels[LABELS.target]);
  const mode = parseMode(labels[LABELS.mode]);
  const owner = parseOwner(labels[LABELS.owner]);

  const files: ManagedFile[] = [];
  for (const [key, value] of Object.entries(labels)) {
    if (!key.startsWith(LABELS.filePrefix)) continue;
    const name = key.slice(LABELS.filePrefix.length);
    checkFileName(key, name);
    files.push({ name, reference: parseLabelReference(key, value, 'dsofile') });
  }
  // Code-unit order, not localeCompare: the same labels give the same order on every host.
  files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const env: ManagedEnv[] = [];
  for (const [key, value] of Object.entries(labels)) {
    if (!key.startsWith(LABELS.envPrefix)) continue;
    const name = key.slice(LABELS.envPrefix.length);
    if (!ENV_NAME.test(name)) {
      throw labelError(
        key,
        'does not name an environment variable',
        `write ${LABELS.envPrefix}<NAME> with NAME made of A-Z a-z 0-9 _ (not starting with a digit)`,
      );
    }
    const variable: ManagedEnv = { name, reference: parseLabelReference(key, value, 'dso') };
    const versionKey = `${LABELS.envVersionPrefix}${name}`;
    const createdVersion = labels[versionKey];
    if (createdVersion !== undefined) {
      if (!VERSION_TEXT.test(createdVersion)) {
        throw labelError(
          versionKey,
          'is not a version (1 to 256 printable characters)',
          'remove it: the agent then takes the version it first sees as the current one',
        );
      }
      variable.createdVersion = createdVersion;
    }
    env.push(variable);
  }
  env.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const spec: ManagedSpec = { target, mode, files, env };
  if (owner !== undefined) spec.owner = owner;
  const rotation = parseRotation(labels);
  if (rotation !== undefined) spec.rotation = rotation;
  return spec;
}

const SIGNAL_NAME = /^(?:SIG)?[A-Z][A-Z0-9+]{1,10}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;
const VERSION_TEXT = /^[\x21-\x7e]{1,256}$/;

/**
 * A container's own rotation policy from its `dso.rotate*` labels alone, for a container that
 * gets its files another way (a DSO volume) and may carry no other DSO label.
 *
 * @example
 * parseRotationLabels({ 'dso.rotate': 'signal', 'dso.rotate.signal': 'SIGUSR1' });
 * @throws DsoError DSO_LABEL_INVALID as {@link parseManagedLabels} does
 */
export function parseRotationLabels(
  labels: Readonly<Record<string, string>>,
): ManagedRotation | undefined {
  return parseRotation(labels);
}

function parseRotation(labels: Readonly<Record<string, string>>): ManagedRotation | undefined {
  const policy = labels[LABELS.rotate];
  const signal = labels[LABELS.rotateSignal];
  const hookText = labels[LABELS.rotateHook];
  const escalate = labels[LABELS.rotateEscalate];
  if (policy === undefined) {
    if (escalate !== undefined) {
      throw labelError(
        LABELS.rotateEscalate,
        `has no effect without ${LABELS.rotate}`,
        `add ${LABELS.rotate}=<the first policy to try>`,
      );
    }
    if (signal !== undefined || hookText !== undefined) {
      throw labelError(
        signal !== undefined ? LABELS.rotateSignal : LABELS.rotateHook,
        `has no effect without ${LABELS.rotate}`,
        `add ${LABELS.rotate}=${signal !== undefined ? 'signal' : 'hook'}`,
      );
    }
    return undefined;
  }
  if (!(LABEL_ROTATION_POLICIES as readonly string[]).includes(policy)) {
    throw labelError(
      LABELS.rotate,
      `must be one of ${LABEL_ROTATION_POLICIES.join(', ')}`,
      'choose how the container takes a rotated secret',
    );
  }
  const rotation: ManagedRotation = { policy: policy as LabelRotationPolicy };
  if (escalate !== undefined) {
    const order = LABEL_ROTATION_POLICIES as readonly string[];
    if (!order.includes(escalate) || order.indexOf(escalate) <= order.indexOf(policy)) {
      throw labelError(
        LABELS.rotateEscalate,
        `must be a policy heavier than ${policy} (${order.slice(order.indexOf(policy) + 1).join(', ') || 'there is none'})`,
        `e.g. ${LABELS.rotateEscalate}=restart, or remove it`,
      );
    }
    rotation.escalateTo = escalate as LabelRotationPolicy;
  }
  if (signal !== undefined) {
    if (policy !== 'signal' || !SIGNAL_NAME.test(signal)) {
      throw labelError(
        LABELS.rotateSignal,
        policy !== 'signal' ? `is read only with ${LABELS.rotate}=signal` : 'is not a signal name',
        'write a name such as SIGHUP or USR1',
      );
    }
    rotation.signal = signal.startsWith('SIG') ? signal : `SIG${signal}`;
  }
  if (policy === 'hook') {
    if (hookText === undefined) {
      throw labelError(
        LABELS.rotateHook,
        `is required with ${LABELS.rotate}=hook`,
        'give the command as a JSON list, e.g. ["/app/reload","--quiet"]',
      );
    }
    let hook: unknown;
    try {
      hook = JSON.parse(hookText);
    } catch {
      hook = undefined;
    }
    if (
      !Array.isArray(hook) ||
      hook.length === 0 ||
      hook.length > 64 ||
      hook.some((arg) => typeof arg !== 'string' || arg.length > 1024 || arg.includes('\0'))
    ) {
      throw labelError(
        LABELS.rotateHook,
        'must be a JSON list of 1 to 64 strings',
        'e.g. ["/app/reload","--quiet"]; it runs in the container, and like any exec its argv is visible to every events subscriber: never put a value in it',
      );
    }
    rotation.hook = hook as string[];
  } else if (hookText !== undefined) {
    throw labelError(
      LABELS.rotateHook,
      `is read only with ${LABELS.rotate}=hook`,
      `add ${LABELS.rotate}=hook or remove it`,
    );
  }
  return rotation;
}

/**
 * Writes the labels that make a container managed as `spec` describes; the inverse of
 * {@link parseManagedLabels}. Every label is written out, defaults included, so
 * `docker inspect` shows the whole policy; `dso.owner` only when `spec.owner` is set.
 *
 * @example
 * toManagedLabels({ target: '/run/secrets', mode: 0o400, files: [
 *   { name: 'db_password', reference: { scheme: 'dsofile', path: 'app/db', field: 'password' } },
 * ] });
 * // { 'dso.enable': 'true', 'dso.target': '/run/secrets', 'dso.mode': '0400',
 * //   'dso.file.db_password': 'dsofile://app/db#password' }
 * @throws DsoError DSO_LABEL_INVALID when the spec could not be read back from its labels
 *   (a bad name, target, mode or owner, a `dso` reference, or two files with one name)
 */
export function toManagedLabels(
  spec: Omit<ManagedSpec, 'env'> & { env?: ManagedEnv[] },
): Record<string, string> {
  const labels: Record<string, string> = {
    [LABELS.enable]: 'true',
    [LABELS.target]: spec.target,
    [LABELS.mode]: formatMode(spec.mode),
  };
  if (spec.owner !== undefined) labels[LABELS.owner] = `${spec.owner.uid}:${spec.owner.gid}`;
  if (spec.rotation !== undefined) {
    labels[LABELS.rotate] = spec.rotation.policy;
    if (spec.rotation.signal !== undefined) labels[LABELS.rotateSignal] = spec.rotation.signal;
    if (spec.rotation.hook !== undefined)
      labels[LABELS.rotateHook] = JSON.stringify(spec.rotation.hook);
    if (spec.rotation.escalateTo !== undefined)
      labels[LABELS.rotateEscalate] = spec.rotation.escalateTo;
  }
  for (const variable of spec.env ?? []) {
    const key = `${LABELS.envPrefix}${variable.name}`;
    if (Object.hasOwn(labels, key)) {
      throw labelError(
        key,
        `two variables are named ${JSON.stringify(variable.name)}`,
        'give each variable its own name',
      );
    }
    labels[key] = formatFileReference(key, variable.reference);
    if (variable.createdVersion !== undefined) {
      labels[`${LABELS.envVersionPrefix}${variable.name}`] = variable.createdVersion;
    }
  }
  for (const file of spec.files) {
    const key = `${LABELS.filePrefix}${file.name}`;
    if (Object.hasOwn(labels, key)) {
      throw labelError(
        key,
        `two files are named ${JSON.stringify(file.name)}`,
        'give each file its own name',
      );
    }
    labels[key] = formatFileReference(key, file.reference);
  }
  // Reading the labels back applies every rule of the contract in one place.
  parseManagedLabels(labels);
  return labels;
}

function parseTarget(value: string | undefined): string {
  const key = LABELS.target;
  if (value === undefined) return DEFAULT_SECRETS_DIR;
  const fix = `use an absolute directory such as ${key}=${DEFAULT_SECRETS_DIR}`;
  const shown = JSON.stringify(value);
  if (value === '') throw labelError(key, 'is empty', fix);
  if (value.length > MAX_TARGET_LENGTH) {
    throw labelError(key, `is longer than ${MAX_TARGET_LENGTH} characters`, fix);
  }
  if (CONTROL.test(value)) throw labelError(key, 'holds a control character', fix);
  if (!TARGET_CHARACTERS.test(value)) {
    throw labelError(key, `${shown} holds characters other than A-Z a-z 0-9 . _ - /`, fix);
  }
  if (!value.startsWith('/')) throw labelError(key, `${shown} is not an absolute path`, fix);
  if (value === '/') throw labelError(key, 'is the root directory', fix);
  if (value.split('/').includes('..')) throw labelError(key, `${shown} holds ".."`, fix);
  if (posix.normalize(value) !== value || value.endsWith('/')) {
    throw labelError(
      key,
      `${shown} is not normalised (no ".", "//" or trailing "/")`,
      `write it as ${key}=${posix.normalize(value).replace(/\/+$/, '') || DEFAULT_SECRETS_DIR}`,
    );
  }
  return value;
}

/** Builds the error of a bad setting: a label's, or a volume option's. */
type SettingError = (key: string, problem: string, fix: string, cause?: unknown) => DsoError;

function parseMode(
  value: string | undefined,
  key: string = LABELS.mode,
  fail: SettingError = labelError,
): number {
  const labelError = fail;
  if (value === undefined) return DEFAULT_FILE_MODE;
  const fix = `use permission bits from 0000 to 0777, e.g. ${key}=0400`;
  const match = MODE.exec(value);
  if (match === null) {
    throw labelError(key, `${JSON.stringify(value)} is not an octal mode`, fix);
  }
  const mode = Number.parseInt(match[1]!, 8);
  if (mode > 0o777) {
    throw labelError(
      key,
      `${JSON.stringify(value)} sets setuid, setgid or sticky bits, which secret files never need`,
      fix,
    );
  }
  return mode;
}

function parseOwner(
  value: string | undefined,
  key: string = LABELS.owner,
  fail: SettingError = labelError,
): { uid: number; gid: number } | undefined {
  const labelError = fail;
  if (value === undefined) return undefined;
  const fix = `use numeric ids, e.g. ${key}=1000:1000 (see \`id -u\` and \`id -g\` inside the image), or remove it to use the default`;
  const match = OWNER.exec(value);
  if (match === null) {
    throw labelError(key, `${JSON.stringify(value)} is not <uid> or <uid>:<gid>`, fix);
  }
  const uid = Number(match[1]);
  const gid = match[2] === undefined ? uid : Number(match[2]);
  if (uid > MAX_ID || gid > MAX_ID) {
    throw labelError(key, `${JSON.stringify(value)} has an id above ${MAX_ID}`, fix);
  }
  return { uid, gid };
}

function checkFileName(key: string, name: string): void {
  const fix = `name the file with letters, digits, ".", "_" and "-", e.g. ${LABELS.filePrefix}db_password`;
  if (name === '') throw labelError(key, 'has no file name after the prefix', fix);
  const problem = checkSecretFileName(name);
  if (problem) throw labelError(key, `names a file that ${problem}`, fix);
}

/**
 * The reference in a label: `dsofile://` for a file (`dso.file.*`), `dso://` for an
 * environment variable (`dso.env.*`). A value that is not a reference is never quoted: it may be
 * the secret itself, put where a reference belongs.
 */
function parseLabelReference(
  key: string,
  value: string,
  scheme: SecretReference['scheme'],
  fail: SettingError = labelError,
): SecretReference {
  const labelError = fail;
  const fix = `write a reference such as ${key}=${scheme}://app/db/password`;
  if (!isReference(value)) {
    // A near miss (`dsofile:/app/x`) is a reference mistyped, not a value: it may be quoted.
    const meant = suggestReference(value);
    if (meant !== undefined) {
      throw labelError(
        key,
        `holds ${JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value)}, which is not a ${scheme}:// reference`,
        `did you mean ${key}=${meant.replace(/^dso(?:file)?:\/\//, `${scheme}://`)}?`,
      );
    }
    throw labelError(key, `does not hold a ${scheme}:// reference (its value is not shown)`, fix);
  }
  let reference: SecretReference;
  try {
    reference = parseReference(value);
  } catch (error) {
    if (!isDsoError(error)) throw error;
    throw labelError(key, `holds an ${error.message}`, fix, error);
  }
  if (reference.scheme !== scheme) {
    throw labelError(
      key,
      scheme === 'dsofile'
        ? `holds a ${reference.scheme}:// reference, but a file needs dsofile://`
        : `holds a ${reference.scheme}:// reference, but an environment value needs dso://`,
      scheme === 'dsofile'
        ? `write ${key}=${formatReference({ ...reference, scheme })}`
        : `write ${key}=${formatReference({ ...reference, scheme })}, or deliver it as a file with ${LABELS.filePrefix}<name>`,
    );
  }
  return reference;
}

function formatFileReference(key: string, reference: SecretReference): string {
  try {
    return formatReference(reference);
  } catch (error) {
    if (!isDsoError(error)) throw error;
    throw labelError(key, `holds an ${error.message}`, 'fix the reference', error);
  }
}

function formatMode(mode: number): string {
  // Four digits with a leading zero, as chmod(1) and compose files write modes.
  return Number.isInteger(mode) && mode >= 0
    ? `0${mode.toString(8).padStart(3, '0')}`
    : String(mode);
}

function labelError(key: string, problem: string, fix: string, cause?: unknown): DsoError {
  // A label key comes from whoever created the container: quote it unless it is plain text.
  const shown = PLAIN_KEY.test(key)
    ? key
    : JSON.stringify(key.length > 300 ? `${key.slice(0, 300)}…` : key);
  return new DsoError('DSO_LABEL_INVALID', `label ${shown} ${problem}; ${fix}`, {
    label: key,
    ...(cause === undefined ? {} : { cause }),
  });
}

/** A DSO volume's settings, from its driver options (`volume-opt=`, compose `driver_opts`). */
export type VolumeSpec = {
  /** One file per option: the option's name is the file's, its value a `dsofile://` reference. */
  files: ManagedFile[];
  /** The files' mode (`dso.mode`). @default VOLUME_DEFAULT_MODE */
  mode: number;
  /** The files' owner (`dso.owner`). @default { uid: 0, gid: 0 } */
  owner: { uid: number; gid: number };
};

/**
 * The mode of a volume's files when `dso.mode` is absent: readable by any user of the one
 * container that sees the folder (the container's user is not known when the engine mounts a
 * volume), as Swarm secrets (0444) and Kubernetes secret volumes (0644) do.
 */
export const VOLUME_DEFAULT_MODE = 0o444;

/** The `dso.`-prefixed settings a volume's options may hold. */
export const VOLUME_SETTINGS = { mode: 'dso.mode', owner: 'dso.owner' } as const;

/**
 * Reads a DSO volume's driver options: every option is a file (`<name>=dsofile://<path>`),
 * except the `dso.`-prefixed settings `dso.mode` and `dso.owner`. References only: a value
 * that is not one is refused without being quoted (it may be the secret itself).
 *
 * @example
 * parseVolumeOptions({ db_password: 'dsofile://app/db#password', 'dso.mode': '0440' });
 * // { files: [{ name: 'db_password', reference: … }], mode: 0o440, owner: { uid: 0, gid: 0 } }
 * @throws DsoError DSO_VOLUME_OPTION_INVALID naming the option, what is wrong with it and the fix
 */
export function parseVolumeOptions(
  options: Readonly<Record<string, unknown>> | null | undefined,
): VolumeSpec {
  const entries = Object.entries(options ?? {});
  const text = (key: string, value: unknown): string => {
    if (typeof value !== 'string') {
      throw volumeOptionError(key, 'is not text', `write it as ${key}=<text>`);
    }
    return value;
  };
  let mode = VOLUME_DEFAULT_MODE;
  let owner = { uid: 0, gid: 0 };
  const files: ManagedFile[] = [];
  for (const [key, value] of entries) {
    if (key === VOLUME_SETTINGS.mode) {
      mode = parseMode(text(key, value), key, volumeOptionError);
    } else if (key === VOLUME_SETTINGS.owner) {
      owner = parseOwner(text(key, value), key, volumeOptionError) ?? owner;
    } else if (key.startsWith('dso.')) {
      const meant = Object.values(VOLUME_SETTINGS).find(
        (setting) => editDistance(key.toLowerCase(), setting) <= 2,
      );
      throw volumeOptionError(
        key,
        'is not a DSO volume setting',
        meant === undefined
          ? `use ${Object.values(VOLUME_SETTINGS).join(' or ')}; a container's rotation policy is its dso.rotate label`
          : `did you mean ${meant}?`,
      );
    } else {
      const problem = checkSecretFileName(key);
      if (problem) {
        throw volumeOptionError(
          key,
          `names a file that ${problem}`,
          'name the file with letters, digits, ".", "_" and "-", e.g. db_password=dsofile://app/db',
        );
      }
      files.push({
        name: key,
        reference: parseLabelReference(key, text(key, value), 'dsofile', volumeOptionError),
      });
    }
  }
  if (files.length === 0) {
    throw volumeOptionError(
      '(none)',
      'names no file',
      'give at least one, e.g. --mount type=volume,volume-driver=dso,dst=/run/secrets,volume-opt=db_password=dsofile://app/db',
    );
  }
  files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { files, mode, owner };
}

function volumeOptionError(key: string, problem: string, fix: string, cause?: unknown): DsoError {
  const shown = PLAIN_KEY.test(key)
    ? key
    : JSON.stringify(key.length > 300 ? `${key.slice(0, 300)}…` : key);
  return new DsoError('DSO_VOLUME_OPTION_INVALID', `volume option ${shown} ${problem}; ${fix}`, {
    option: key,
    ...(cause === undefined ? {} : { cause }),
  });
}
