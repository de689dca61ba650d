// "Did you mean …?" for unknown keys and options. Small on purpose: candidates are the dozen keys
// of one mapping, so a quadratic distance is nothing.

/**
 * The optimal-string-alignment distance between two strings: insertions, deletions,
 * substitutions and swaps of two neighbouring characters each cost 1 (`tll` → `ttl` is 1).
 *
 * @example
 * editDistance('tll', 'ttl');          // 1
 * editDistance('backnd', 'backend');   // 1
 */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  // Three rows are enough: a swap looks two rows back.
  let before = new Array<number>(b.length + 1).fill(0);
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  let current = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    current[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, before[j - 2]! + 1);
      }
      current[j] = best;
    }
    [before, previous, current] = [previous, current, before];
  }
  return previous[b.length]!;
}

/** Case, `-` and `_` do not matter when comparing keys: `ttl_ms`, `TTL-MS` and `ttlMs` meet. */
function normalise(key: string): string {
  return key.toLowerCase().replace(/[-_]/g, '');
}

/** A key without its unit suffix, so `ttl` and `tll` find `ttlMs`, `maxBytes` finds nothing odd. */
function withoutUnit(key: string): string {
  return key.replace(/(?:Ms|Bytes)$/, '');
}

/**
 * The candidate closest to `word`, when one is close enough to be what was meant: within about a
 * third of the word's length in edits, ignoring case, `-`, `_` and a unit suffix (`Ms`,
 * `Bytes`) the word left off. Undefined when nothing is close.
 *
 * @example
 * closestMatch('tll', ['backend', 'ttlMs', 'maxEntries']); // 'ttlMs'
 * closestMatch('colour', ['backend', 'ttlMs']);            // undefined
 */
export function closestMatch(word: string, candidates: Iterable<string>): string | undefined {
  const target = normalise(word);
  const allowed = Math.min(3, Math.max(1, Math.floor(target.length / 3)));
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    if (candidate === word) continue;
    const distance = Math.min(
      editDistance(target, normalise(candidate)),
      editDistance(target, normalise(withoutUnit(candidate))),
    );
    if (distance <= allowed && distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}
