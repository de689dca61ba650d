/**
 * JSON text of `value` with every object's keys in code-unit order at every depth, so the same
 * data always serialises to the same bytes whatever order Vault returned it in. Arrays keep their
 * order; `undefined` members are dropped as `JSON.stringify` drops them.
 *
 * @example
 * canonicalJson({ b: 1, a: { d: [2, 1], c: null } }); // '{"a":{"c":null,"d":[2,1]},"b":1}'
 * @throws TypeError for a value JSON cannot represent (a BigInt, a cycle)
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value, new Set()));
}

function sortKeys(value: unknown, seen: Set<object>): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (seen.has(value)) throw new TypeError('canonicalJson: the value contains a cycle');
  seen.add(value);
  let result: unknown;
  if (Array.isArray(value)) {
    result = value.map((item) => sortKeys(item, seen));
  } else {
    // A null prototype, so a key named `__proto__` stays a key instead of replacing the prototype.
    const sorted: Record<string, unknown> = Object.create(null);
    for (const key of Object.keys(value).sort()) {
      sorted[key] = sortKeys((value as Record<string, unknown>)[key], seen);
    }
    result = sorted;
  }
  seen.delete(value);
  return result;
}
