import { DEFAULT_FILE_MODE, LABELS } from './labels.js';
import { editDistance, suggestReference } from './references-near-miss.js';

/**
 * A problem in a container's labels (or a compose service's) that does not stop DSO from reading
 * them but almost always means something the operator wanted is not happening: an unknown
 * `dso.*` label (a typo: `dso.flie.x` delivers nothing), a near-miss reference, or an owner and
 * mode that do not fit together. Names, references and ids only, never a value.
 */
export type LabelWarning = {
  /**
   * `DSO_LABEL_UNKNOWN`: a `dso.*` label DSO does not read. `DSO_REFERENCE_NEAR_MISS`: text that
   * was meant as a reference but is not one. `DSO_LABEL_ACCESS_HINT`: owner and mode that lock
   * out the readers they seem meant for. `DSO_LABEL_NOT_ENABLED`: DSO labels on a container
   * without `dso.enable=true` (the agent's own check of containers it does not manage).
   */
  code:
    | 'DSO_LABEL_UNKNOWN'
    | 'DSO_REFERENCE_NEAR_MISS'
    | 'DSO_LABEL_ACCESS_HINT'
    | 'DSO_LABEL_NOT_ENABLED';
  /** The label the warning is about, as written. */
  label: string;
  /** What is wrong and what to do, in one sentence. */
  message: string;
  /** The closest known label, or the reference as it was probably meant. */
  suggestion?: string;
};

/**
 * The `dso.*` labels read whole (`dso.enable`, `dso.target`, …), and the prefixes whose rest is
 * a name (`dso.file.<name>`, `dso.env.<NAME>`, …). `dso.replace.*` are the runtime's own (a
 * blue-green replacement's bookkeeping).
 */
export const KNOWN_LABEL_KEYS: readonly string[] = [
  LABELS.enable,
  LABELS.target,
  LABELS.mode,
  LABELS.owner,
  LABELS.rotate,
  LABELS.rotateSignal,
  LABELS.rotateHook,
  LABELS.rotateEscalate,
];
/** See {@link KNOWN_LABEL_KEYS}. */
export const KNOWN_LABEL_PREFIXES: readonly string[] = [
  LABELS.filePrefix,
  LABELS.envPrefix,
  LABELS.envVersionPrefix,
  'dso.replace.',
];

/** The most edits a near miss may be from what it meant: one per four characters, 1 to 3. */
function allowedEdits(text: string): number {
  return Math.min(3, Math.max(1, Math.floor(text.length / 4)));
}

/**
 * The known label `key` was probably meant to be, or undefined when none is close: a whole key
 * (`dso.ower` → `dso.owner`), or a prefix with the rest kept (`dso.flie.x` → `dso.file.x`).
 * Case is ignored (`DSO.ENABLE` → `dso.enable`).
 *
 * @example
 * suggestLabel('dso.flie.db_password'); // 'dso.file.db_password'
 */
export function suggestLabel(key: string): string | undefined {
  const lower = key.toLowerCase();
  let best: { text: string; distance: number } | undefined;
  const consider = (text: string, distance: number) => {
    if (best === undefined || distance < best.distance) best = { text, distance };
  };
  for (const known of KNOWN_LABEL_KEYS) {
    if (known !== key) consider(known, editDistance(lower, known));
  }
  for (const prefix of KNOWN_LABEL_PREFIXES) {
    if (prefix === 'dso.replace.') continue;
    // The prefix as it may have been typed: a few characters shorter or longer.
    for (let end = Math.max(1, prefix.length - 2); end <= prefix.length + 2; end++) {
      if (end > key.length) break;
      const rest = key.slice(end);
      // A cut just after a dot is the likelier reading (`dso.files.x` → `dso.file.x`, not `dso.file.s.x`).
      const distance = editDistance(lower.slice(0, end), prefix) + (key[end - 1] === '.' ? 0 : 0.5);
      // A prefix written without its trailing dot (`dso.file`): the name is still to come.
      if (distance === 0 && rest !== '') continue;
      consider(`${prefix}${rest === '' ? '<name>' : rest.replace(/^[.]/, '')}`, distance);
    }
  }
  if (best === undefined || best.distance > allowedEdits(key.split('.').slice(0, 2).join('.')))
    return undefined;
  return best.text;
}

/**
 * `dso.*` labels that are DSO's own without being read by the agent, never suggested:
 * `dso.test` marks everything DSO's own tests create (and its test image: `tools/test-image.json`).
 */
const RESERVED_LABEL_KEYS: readonly string[] = ['dso.test'];

/** True when DSO reads the label `key` (a known key, or a known prefix followed by a name). */
export function isKnownLabel(key: string): boolean {
  if (KNOWN_LABEL_KEYS.includes(key) || RESERVED_LABEL_KEYS.includes(key)) return true;
  return KNOWN_LABEL_PREFIXES.some(
    (prefix) => key.startsWith(prefix) && key.length > prefix.length,
  );
}

/** A key that looks like it is meant for DSO: `dso.`, `dso-`, `dso_` in any case, or `dos.`/`ds.`. */
const DSO_LIKE_KEY = /^(?:dso|dos|ds|dsoo|sdo)[._-]/i;

/**
 * Looks at every label for what DSO would silently ignore: a `dso.*` label it does not read
 * (with the known label it was probably meant to be), a reference-like value with a misspelt
 * scheme, and owner/mode combinations that lock out a group reader. Non-DSO labels are left
 * alone. Never throws; values of `dso.file.*`/`dso.env.*` are checked by
 * {@link parseManagedLabels}, which refuses them (with the same suggestion).
 *
 * @example
 * checkLabels({ 'dso.enable': 'true', 'dso.flie.db': 'dsofile://app/db' });
 * // [{ code: 'DSO_LABEL_UNKNOWN', label: 'dso.flie.db', suggestion: 'dso.file.db', message: … }]
 */
export function checkLabels(
  labels: Readonly<Record<string, string>> | null | undefined,
): LabelWarning[] {
  const warnings: LabelWarning[] = [];
  if (labels == null) return warnings;
  for (const key of Object.keys(labels).sort()) {
    if (isKnownLabel(key) || !DSO_LIKE_KEY.test(key)) continue;
    const shown = quoteKey(key);
    const suggestion = suggestLabel(key);
    // `ds.`, `dos.`, `dso-` … may be another tool's namespace: only a near miss of ours counts.
    if (suggestion === undefined && !key.startsWith('dso.')) continue;
    warnings.push({
      code: 'DSO_LABEL_UNKNOWN',
      label: key,
      message:
        suggestion === undefined
          ? `label ${shown} is not a DSO label and is ignored; DSO reads ${[...KNOWN_LABEL_KEYS, ...KNOWN_LABEL_PREFIXES.slice(0, 3).map((prefix) => `${prefix}<name>`)].join(', ')}`
          : `label ${shown} is not a DSO label and is ignored; did you mean ${suggestion}?`,
      ...(suggestion === undefined ? {} : { suggestion }),
    });
  }
  const enable = labels[LABELS.enable];
  if (enable !== undefined && enable !== 'true' && /^(?:true|yes|on|1)$/i.test(enable.trim())) {
    warnings.push({
      code: 'DSO_LABEL_UNKNOWN',
      label: LABELS.enable,
      message: `label ${LABELS.enable}=${JSON.stringify(enable)} does not opt the container in (only the exact text "true" does); did you mean ${LABELS.enable}=true?`,
      suggestion: `${LABELS.enable}=true`,
    });
  }
  for (const [key, value] of Object.entries(labels)) {
    // Only DSO's own labels and ones near them: another tool's label is its business.
    if (!DSO_LIKE_KEY.test(key) || typeof value !== 'string') continue;
    const suggestion = suggestReference(value);
    if (suggestion === undefined) continue;
    warnings.push({
      code: 'DSO_REFERENCE_NEAR_MISS',
      label: key,
      message: `label ${quoteKey(key)} holds ${JSON.stringify(truncate(value))}, which is not a reference; did you mean ${suggestion}?`,
      suggestion,
    });
  }
  warnings.push(...checkFileAccess(labels));
  return warnings;
}

/**
 * Owner and mode that do not fit together, as hints: `dso.owner` with a group other than the
 * owner's and a mode the group cannot read (the workers of nginx, running as www-data, get
 * HTTP 500), or a group-readable `dso.mode` without `dso.owner` (the group is then the container
 * user's own, seldom the workers'). Unparseable values are left to {@link parseManagedLabels}.
 *
 * @example
 * checkFileAccess({ 'dso.owner': '0:33' }); // a hint: add dso.mode=0440
 */
export function checkFileAccess(
  labels: Readonly<Record<string, string | undefined>>,
  keys: { owner: string; mode: string; defaultMode: number } = {
    owner: LABELS.owner,
    mode: LABELS.mode,
    defaultMode: DEFAULT_FILE_MODE,
  },
): LabelWarning[] {
  const ownerText = labels[keys.owner];
  const modeText = labels[keys.mode];
  const owner = ownerText === undefined ? undefined : /^(\d+)(?::(\d+))?$/.exec(ownerText);
  const modeMatch = modeText === undefined ? undefined : /^(?:0o)?([0-7]{1,4})$/.exec(modeText);
  if (owner === null || modeMatch === null) return [];
  const mode = modeMatch === undefined ? keys.defaultMode : Number.parseInt(modeMatch[1]!, 8);
  const modeShown = `0${mode.toString(8).padStart(3, '0')}`;
  const groupReads = (mode & 0o040) !== 0;
  if (owner !== undefined) {
    const uid = owner[1]!;
    const gid = owner[2] ?? uid;
    if (gid !== uid && !groupReads) {
      return [
        {
          code: 'DSO_LABEL_ACCESS_HINT',
          label: keys.mode,
          message: `${keys.owner}=${ownerText} gives the files to group ${gid}, but mode ${modeShown} lets only user ${uid} read them; if workers run as group ${gid} (nginx: master root, workers www-data), set ${keys.mode}=0440`,
          suggestion: `${keys.mode}=0440`,
        },
      ];
    }
    return [];
  }
  if (modeText !== undefined && groupReads) {
    return [
      {
        code: 'DSO_LABEL_ACCESS_HINT',
        label: keys.owner,
        message: `${keys.mode}=${modeText} lets the files' group read them, but without ${keys.owner} that group is the container user's own; name the readers' group, e.g. ${keys.owner}=0:33 for nginx's www-data workers on Debian`,
        suggestion: `${keys.owner}=0:<gid of the readers>`,
      },
    ];
  }
  return [];
}

function quoteKey(key: string): string {
  return /^[\x21-\x7e]{1,300}$/.test(key) ? key : JSON.stringify(truncate(key));
}

function truncate(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
