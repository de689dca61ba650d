// Walks configSchema's structure: the reference renderer lists its fields, and the problem
// reporter asks which keys a mapping allows. Only the wrappers the schema uses are unwrapped.
import * as z from 'zod';
import type { ConfigFieldMeta } from './schema.js';

/** One documented entry of the configuration: a section, a map of named entries, or a value. */
export type ConfigField = {
  /** Keys from the root; a named entry of a map reads `<name>`. */
  path: readonly string[];
  kind: 'section' | 'map' | 'value';
  /** The field's schema as declared, wrappers and all (its `.meta()` and default live here). */
  schema: z.ZodType;
  /** The schema under its default, optional and pipe wrappers. */
  inner: z.ZodType;
  meta: ConfigFieldMeta | undefined;
};

/** The placeholder for a map's entry names in a field path (`providers.<name>.type`). */
export const ENTRY_NAME = '<name>';

/** The schema that validates a value: under defaults, optionals and transform pipes. */
export function unwrapSchema(schema: z.ZodType): z.ZodType {
  let current: z.ZodType = schema;
  for (;;) {
    if (
      current instanceof z.ZodDefault ||
      current instanceof z.ZodPrefault ||
      current instanceof z.ZodOptional ||
      current instanceof z.ZodNullable
    ) {
      current = current.unwrap() as z.ZodType;
    } else if (current instanceof z.ZodPipe) {
      // A preprocess is transform → schema; a parse-then-convert field is schema → transform.
      current = (current.in instanceof z.ZodTransform ? current.out : current.in) as z.ZodType;
    } else {
      return current;
    }
  }
}

/** The field's documentation from its `.meta()`, if it has any. */
export function fieldMeta(schema: z.ZodType): ConfigFieldMeta | undefined {
  const found = schema.meta();
  return found !== undefined && typeof found.description === 'string'
    ? (found as ConfigFieldMeta)
    : undefined;
}

/** The keys the mapping at `path` allows, or undefined when there is no strict mapping there. */
export function allowedKeysAt(
  root: z.ZodType,
  path: readonly PropertyKey[],
): readonly string[] | undefined {
  let current = unwrapSchema(root);
  for (const key of path) {
    if (current instanceof z.ZodObject) {
      const next = (current.shape as Record<string, z.ZodType>)[String(key)];
      if (next === undefined) return undefined;
      current = unwrapSchema(next);
    } else if (current instanceof z.ZodRecord) {
      current = unwrapSchema(current.valueType as z.ZodType);
    } else {
      return undefined;
    }
  }
  return current instanceof z.ZodObject ? Object.keys(current.shape) : undefined;
}

/** Every field under `root`, depth first, in declaration order. */
export function listFields(root: z.ZodType): ConfigField[] {
  const fields: ConfigField[] = [];
  const visit = (object: z.ZodObject, prefix: readonly string[]) => {
    for (const [key, schema] of Object.entries(object.shape as Record<string, z.ZodType>)) {
      const path = [...prefix, key];
      const inner = unwrapSchema(schema);
      const meta = fieldMeta(schema);
      if (inner instanceof z.ZodObject) {
        fields.push({ path, kind: 'section', schema, inner, meta });
        visit(inner, path);
      } else if (inner instanceof z.ZodRecord) {
        const entry = unwrapSchema(inner.valueType as z.ZodType);
        if (entry instanceof z.ZodObject) {
          fields.push({ path, kind: 'map', schema, inner, meta });
          visit(entry, [...path, ENTRY_NAME]);
        } else {
          fields.push({ path, kind: 'value', schema, inner, meta });
        }
      } else {
        fields.push({ path, kind: 'value', schema, inner, meta });
      }
    }
  };
  const object = unwrapSchema(root);
  if (object instanceof z.ZodObject) visit(object, []);
  return fields;
}
