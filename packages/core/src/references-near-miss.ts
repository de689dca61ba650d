import { isReference } from './references.js';

/**
 * The optimal-string-alignment distance between two texts: insertions, deletions, substitutions
 * and swaps of two neighbours each cost 1 (`flie` is 1 from `file`).
 *
 * @example
 * editDistance('dso.flie', 'dso.file'); // 1
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) =>
    Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

const SCHEME_LIKE = /^([A-Za-z]{2,10})(:?)(\/{0,3})(.*)$/s;

/**
 * The reference `text` was probably meant to be, when it is one with a misspelt scheme or
 * separator: `dsofile:/app/x` (one slash), `dso:/x`, `dsofile//x` (no colon), `DSO://x` (case),
 * `dsofiel://x`. Undefined for a valid reference and for anything not close to one
 * (`postgres://db`, a plain value).
 *
 * @example
 * suggestReference('dsofile:/app/db'); // 'dsofile://app/db'
 * suggestReference('dso://app/db');    // undefined (already a reference)
 */
export function suggestReference(text: string): string | undefined {
  if (typeof text !== 'string' || isReference(text)) return undefined;
  const match = SCHEME_LIKE.exec(text.trim());
  if (match === null) return undefined;
  const [, word, colon, slashes, rest] = match as unknown as [
    string,
    string,
    string,
    string,
    string,
  ];
  if (rest === '' || (colon === '' && slashes === '')) return undefined;
  const lower = word.toLowerCase();
  const separatorRight = colon === ':' && slashes === '//';
  let scheme: 'dso' | 'dsofile' | undefined;
  if (lower === 'dso' || lower === 'dsofile') {
    scheme = lower;
  } else if (lower.length >= 5 && editDistance(lower, 'dsofile') <= 2) {
    scheme = 'dsofile';
  } else if (separatorRight && lower.startsWith('d') && editDistance(lower, 'dso') === 1) {
    // Only with "://": two letters from "dso" alone is too weak a sign (`db:`, `do:`).
    scheme = 'dso';
  }
  if (scheme === undefined) return undefined;
  // `dso:x` with neither slash is a near miss only when the scheme was written out whole.
  if (colon === ':' && slashes === '' && lower !== scheme) return undefined;
  return `${scheme}://${rest.replace(/^\/+/, '')}`;
}
