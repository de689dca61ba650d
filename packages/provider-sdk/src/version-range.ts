/**
 * The subset of npm's semver ranges a provider package writes for its `@dso/provider-sdk` peer:
 * `1.2.3`, `=1.2.3`, `^0.1.0`, `~1.2`, `1.x`, `*`, comparators (`>=0.1.0 <0.3.0`), hyphen ranges
 * (`0.1.0 - 0.2`) and `||`. A pre-release version (`1.0.0-rc.1`) sorts below its release.
 * Written here, not imported, so the SDK keeps its one runtime dependency (zod).
 */

type Version = readonly [number, number, number, string];
type Comparator = readonly ['>=' | '>' | '<' | '<=' | '=', Version];

const VERSION = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;
const PARTIAL =
  /^(>=|<=|>|<|=|\^|~)?\s*v?(\*|x|X|\d+)(?:\.(\*|x|X|\d+)(?:\.(\*|x|X|\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?)?)?$/;

/**
 * Whether `version` (`X.Y.Z`) is in `range`; `undefined` when either cannot be read, so a
 * caller can say "cannot read the range" instead of guessing.
 *
 * @example
 * satisfiesVersionRange('0.1.0', '^0.1.0'); // true
 * satisfiesVersionRange('0.2.0', '^0.1.0'); // false
 */
export function satisfiesVersionRange(version: string, range: string): boolean | undefined {
  const parsed = parseVersion(version);
  if (parsed === undefined) return undefined;
  const sets = parseRange(range);
  if (sets === undefined) return undefined;
  return sets.some((set) => set.every((comparator) => test(parsed, comparator)));
}

function parseVersion(text: string): Version | undefined {
  const match = VERSION.exec(text.trim());
  if (match === null) return undefined;
  return [Number(match[1]), Number(match[2]), Number(match[3]), match[4] ?? ''];
}

function parseRange(range: string): Comparator[][] | undefined {
  const sets: Comparator[][] = [];
  for (const part of range.split('||')) {
    const text = part.trim();
    const hyphen = /^(\S+)\s+-\s+(\S+)$/.exec(text);
    const comparators = hyphen
      ? [
          ...(comparatorsOf(`>=${hyphen[1]}`) ?? [null]),
          ...(comparatorsOf(`<=${hyphen[2]}`) ?? [null]),
        ]
      : text === ''
        ? []
        : text
            .replace(/(>=|<=|>|<|=|\^|~)\s+/g, '$1')
            .split(/\s+/)
            .flatMap((token) => comparatorsOf(token) ?? [null]);
    if (comparators.includes(null)) return undefined;
    sets.push(comparators as Comparator[]);
  }
  return sets;
}

/** One written comparator as primitive ones; `undefined` when it cannot be read. */
function comparatorsOf(token: string): Comparator[] | undefined {
  const match = PARTIAL.exec(token);
  if (match === null) return undefined;
  const operator = match[1] ?? '';
  const wild = (part: string | undefined) => part === undefined || /^[*xX]$/.test(part);
  const major = wild(match[2]) ? undefined : Number(match[2]);
  const minor = major === undefined || wild(match[3]) ? undefined : Number(match[3]);
  const patch = minor === undefined || wild(match[4]) ? undefined : Number(match[4]);
  const pre = patch === undefined ? '' : (match[5] ?? '');
  if (major === undefined)
    return operator === '<' || operator === '>' ? [['<', [0, 0, 0, '']]] : [];
  const low: Version = [major, minor ?? 0, patch ?? 0, pre];
  // The first version past what the partial names: 1.2 → 1.3.0, 1 → 2.0.0.
  const next: Version = minor === undefined ? [major + 1, 0, 0, ''] : [major, minor + 1, 0, ''];
  const exact = patch !== undefined;
  switch (operator) {
    case '^': {
      const upper: Version =
        major > 0 || minor === undefined
          ? [major + 1, 0, 0, '']
          : minor > 0 || patch === undefined
            ? [0, minor + 1, 0, '']
            : [0, 0, patch + 1, ''];
      return [
        ['>=', low],
        ['<', upper],
      ];
    }
    case '~':
      return [
        ['>=', low],
        ['<', next],
      ];
    case '>=':
      return [['>=', low]];
    case '>':
      return exact ? [['>', low]] : [['>=', next]];
    case '<':
      return [['<', low]];
    case '<=':
      return exact ? [['<=', low]] : [['<', next]];
    default:
      return exact
        ? [['=', low]]
        : [
            ['>=', low],
            ['<', next],
          ];
  }
}

function test(version: Version, [operator, bound]: Comparator): boolean {
  const order = compare(version, bound);
  switch (operator) {
    case '>=':
      return order >= 0;
    case '>':
      return order > 0;
    case '<':
      return order < 0;
    case '<=':
      return order <= 0;
    default:
      return order === 0;
  }
}

function compare(a: Version, b: Version): number {
  for (let index = 0; index < 3; index++) {
    const difference = (a[index] as number) - (b[index] as number);
    if (difference !== 0) return Math.sign(difference);
  }
  // A pre-release sorts below its release; two pre-releases compare as text.
  if (a[3] === b[3]) return 0;
  if (a[3] === '') return 1;
  if (b[3] === '') return -1;
  return a[3] < b[3] ? -1 : 1;
}
