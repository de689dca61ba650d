import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import * as z from 'zod';
import { DsoError } from './errors.js';
import { createRedactor, type Redactor } from './redaction.js';
import {
  formatReference,
  MAX_REFERENCE_LENGTH,
  parseReference,
  type SecretReference,
} from './references.js';

/** Who acted: the agent on its own, a CLI user, or a caller of the agent's API. */
export const AUDIT_ACTOR_KINDS = ['agent', 'cli', 'api'] as const;
/** What was done with a secret. */
export const AUDIT_ACTIONS = [
  'resolve',
  'inject',
  'rotate',
  'env-resolve',
  'remove',
  'secret-set',
  'secret-delete',
] as const;
/**
 * How it ended: done, failed (may pass when tried again), refused for lack of permission, or
 * refused by the agent for a reason that will not pass by itself (`refused`: a bad label, a
 * target that is no tmpfs, …; its `reason` says what to change).
 */
export const AUDIT_OUTCOMES = ['ok', 'error', 'denied', 'refused'] as const;
/** The longest `reason` of a record; longer ones are cut. */
const AUDIT_MAX_REASON_CHARS = 300;

export type AuditActorKind = (typeof AUDIT_ACTOR_KINDS)[number];
/**
 * - `resolve`: a value fetched from a provider (or the cache);
 * - `inject`: a file set written into a container;
 * - `rotate`: a delivered secret replaced by a new version;
 * - `env-resolve`: a `dso://` environment value resolved for a container;
 * - `remove`: delivered files removed from a container;
 * - `secret-set`, `secret-delete`: a secret stored or deleted in a provider that DSO writes to.
 */
export type AuditAction = (typeof AUDIT_ACTIONS)[number];
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/** Who acted. */
export type AuditActor = {
  kind: AuditActorKind;
  /** The Unix uid of the CLI user or API caller (from the socket's peer credentials). */
  uid?: number;
  /** The process id of the caller. */
  pid?: number;
  /** A user or client name: letters, digits and `._@-`, at most 64. */
  name?: string;
};

/**
 * One audited operation on one secret: who, what, which reference and container, which
 * version, how it ended. Never a value: there is no field for one, and fields not listed here
 * are refused, so that a value cannot ride along in an extra one.
 */
export type AuditRecord = {
  /** When it was recorded: ISO 8601, UTC, with milliseconds. */
  at: string;
  actor: AuditActor;
  action: AuditAction;
  /**
   * The secret reference, formatted (`dsofile://vault:app/db#password@3`): never a value.
   * Always there, except on a `refused` record of a refusal that concerns no one reference (a
   * bad label, a target that is no tmpfs).
   */
  reference?: string;
  /** The configured provider that was asked; there whenever `reference` is. */
  provider?: string;
  /** The version the provider delivered, when it reports one. */
  version?: string;
  /** The container the secret was delivered to: its full or short (12) hex id. */
  containerId?: string;
  /** The container's name (without its leading `/`), when known: for `refused` records. */
  containerName?: string;
  /** The DSO volume whose folder the secret was written to. */
  volume?: string;
  outcome: AuditOutcome;
  /** The `DSO_*` code of the failure, for `error`, `denied` and `refused`. */
  code?: string;
  /**
   * For `refused`: why, and what to change, as the refusal's message says it (one line, at most
   * {@link AUDIT_MAX_REASON_CHARS}, through the redactor like the whole line): never a value.
   */
  reason?: string;
  /** Whether the value came from the cache rather than the provider. */
  cacheHit?: boolean;
  /** How long the operation took, in milliseconds. */
  durationMs?: number;
  /** For `rotate`: the policy whose action this was (`files`, `signal`, `hook`, `restart`, `replace`). */
  policy?: 'files' | 'signal' | 'hook' | 'restart' | 'replace';
};

/** What {@link AuditLog.record} takes: a record without its time, the reference parsed or not. */
export type AuditEntry = Omit<AuditRecord, 'at' | 'reference'> & {
  reference?: string | SecretReference;
};

/** Somewhere to write lines that is not a stream: a function of a test, a pino destination. */
export interface AuditLineSink {
  write(line: string): unknown;
}

/** Options of {@link createAuditLog}. */
export interface AuditLogOptions {
  /**
   * Where lines go: a `Writable` (a file opened for appending, standard output), ended and
   * awaited by `close()`, or any object with `write(line)`.
   */
  destination: Writable | AuditLineSink;
  /**
   * Every line passes through `redactor.redact` before it is written: a registered value that
   * reached a reference path or a name by mistake comes out as `[REDACTED]`.
   * @default a redactor with no values and every credential pattern
   */
  redactor?: Redactor;
  /**
   * Where `at` comes from; milliseconds since the Unix epoch.
   * @default Date.now
   */
  clock?: { now(): number };
  /**
   * How many bytes a `Writable` destination may hold unwritten before `record` throws
   * `DSO_AUDIT_BACKLOG`, rather than grow without bound behind a stalled disk.
   * @default 8 MiB
   */
  maxBufferedBytes?: number;
}

/** An append-only log of {@link AuditRecord}s, one JSON document a line. */
export interface AuditLog {
  /**
   * Validates `entry`, stamps it with the time, and writes it as one line.
   *
   * @throws TypeError when `entry` has a field that {@link AuditRecord} does not, or a field of
   *   the wrong shape (the message names the field, never its content)
   * @throws DsoError DSO_AUDIT_CLOSED after `close()`; DSO_AUDIT_WRITE_FAILED once the
   *   destination has failed; DSO_AUDIT_BACKLOG when the destination is too far behind
   */
  record(entry: AuditEntry): void;
  /** Ends a stream destination and waits until every line is written; idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** The default of {@link AuditLogOptions.maxBufferedBytes}. */
export const DEFAULT_AUDIT_MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

const PROVIDER = /^[a-z][a-z0-9-]{0,62}$/;
const ACTOR_NAME = /^[A-Za-z0-9._@-]{1,64}$/;
const VERSION = /^[A-Za-z0-9._-]{1,128}$/;
const CONTAINER_ID = /^(?:[0-9a-f]{12}|[0-9a-f]{64})$/;
// A Docker volume's name, as the engine allows it.
const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
const CODE = /^DSO_[A-Z0-9_]+$/;
// A Docker container's name, as the engine allows it.
const CONTAINER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
const REASON = /^[^\u0000-\u001f\u007f]+$/;
// Date#toISOString's shape: what `at` always is when this module wrote it.
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const actorSchema = z.strictObject({
  kind: z.enum(AUDIT_ACTOR_KINDS),
  uid: z.int().min(0).max(0xffff_ffff).optional(),
  pid: z.int().min(1).max(0x7fff_ffff).optional(),
  name: z.string().regex(ACTOR_NAME).optional(),
});

const fields = {
  actor: actorSchema,
  action: z.enum(AUDIT_ACTIONS),
  provider: z.string().regex(PROVIDER).optional(),
  version: z.string().regex(VERSION).optional(),
  containerId: z.string().regex(CONTAINER_ID).optional(),
  containerName: z.string().regex(CONTAINER_NAME).optional(),
  volume: z.string().regex(VOLUME_NAME).optional(),
  outcome: z.enum(AUDIT_OUTCOMES),
  code: z.string().regex(CODE).optional(),
  reason: z.string().max(AUDIT_MAX_REASON_CHARS).regex(REASON).optional(),
  cacheHit: z.boolean().optional(),
  durationMs: z.number().min(0).optional(),
  policy: z.enum(['files', 'signal', 'hook', 'restart', 'replace']).optional(),
};

/**
 * A reference and its provider are there on every record but a `refused` one, which may have
 * neither (a refusal of a whole container); a reason only on a `refused` one, which needs one.
 */
function requireParts(
  record: { outcome: AuditOutcome; reference?: unknown; provider?: unknown; reason?: unknown },
  context: z.core.$RefinementCtx,
): void {
  const refused = record.outcome === 'refused';
  if (!refused && record.reference === undefined) {
    context.addIssue({ code: 'custom', path: ['reference'], message: 'required' });
  }
  if ((!refused || record.reference !== undefined) && record.provider === undefined) {
    context.addIssue({ code: 'custom', path: ['provider'], message: 'required' });
  }
  if (refused !== (record.reason !== undefined)) {
    context.addIssue({
      code: 'custom',
      path: ['reason'],
      message: refused ? 'required' : 'only for refused',
    });
  }
}

const entrySchema = z
  .strictObject({
    ...fields,
    // Made one line and cut by toRecord: a message is never refused for its length or a newline.
    reason: z
      .string()
      .min(1)
      .max(64 * 1024)
      .optional(),
    reference: z
      .union([
        z.string().max(MAX_REFERENCE_LENGTH),
        z.strictObject({
          scheme: z.enum(['dso', 'dsofile']),
          provider: z.string().optional(),
          path: z.string(),
          field: z.string().optional(),
          version: z.string().optional(),
        }),
      ])
      .optional(),
  })
  .superRefine(requireParts);

const recordSchema = z
  .strictObject({
    at: z.string().regex(ISO_UTC),
    ...fields,
    reference: z.string().max(MAX_REFERENCE_LENGTH).optional(),
  })
  .superRefine(requireParts);

/**
 * Creates an audit log writing one JSON line per record to `destination`. Each entry is
 * checked against a strict schema (unknown fields are refused, whatever they hold), its
 * reference is parsed and written in canonical form, and the finished line passes through the
 * redactor before it is written: defence in depth for the value that should never be there.
 *
 * @example
 * const audit = createAuditLog({ destination: createWriteStream(file, { flags: 'a', mode: 0o600 }), redactor });
 * audit.record({
 *   actor: { kind: 'agent' },
 *   action: 'inject',
 *   reference: 'dsofile://vault:app/db#password',
 *   provider: 'vault',
 *   version: '7',
 *   containerId,
 *   outcome: 'ok',
 *   cacheHit: false,
 *   durationMs: 41.2,
 * });
 * // {"at":"2025-01-01T00:00:00.000Z","actor":{"kind":"agent"},"action":"inject",…,"outcome":"ok",…}
 * await audit.close();
 */
export function createAuditLog(options: AuditLogOptions): AuditLog {
  const { destination } = options;
  if (typeof destination?.write !== 'function') {
    throw new TypeError('audit destination must be a Writable or have a write(line) method');
  }
  const redactor = options.redactor ?? createRedactor();
  const clock = options.clock ?? { now: () => Date.now() };
  const maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_AUDIT_MAX_BUFFERED_BYTES;
  const stream = destination instanceof Writable ? destination : undefined;
  let failure: unknown;
  // Without a listener a stream's error would crash the process; with it, the error is kept
  // and reported by the next record() and by close().
  stream?.on('error', (error) => {
    failure ??= error;
  });
  let closing: Promise<void> | undefined;

  function record(entry: AuditEntry): void {
    if (closing !== undefined) {
      throw new DsoError('DSO_AUDIT_CLOSED', 'the audit log is closed; records cannot be added');
    }
    if (failure !== undefined) {
      throw new DsoError(
        'DSO_AUDIT_WRITE_FAILED',
        'the audit log destination failed; check the disk or file it writes to',
        { cause: failure },
      );
    }
    if (stream !== undefined && stream.writableLength > maxBufferedBytes) {
      throw new DsoError(
        'DSO_AUDIT_BACKLOG',
        `the audit log destination is more than ${maxBufferedBytes} bytes behind; check the disk it writes to`,
        { bufferedBytes: stream.writableLength },
      );
    }
    const line = `${redactor.redact(JSON.stringify(toRecord(entry, clock.now())))}\n`;
    destination.write(line);
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      if (stream === undefined) return;
      if (failure !== undefined) throw failure;
      stream.end();
      await finished(stream);
    })();
    return closing;
  }

  return { record, close, [Symbol.asyncDispose]: close };
}

/**
 * Reads one line of an audit log back into an {@link AuditRecord}, with the same strict
 * checks it was written under.
 *
 * @example
 * for await (const line of readline.createInterface({ input })) report(parseAuditLine(line));
 * @throws TypeError when the line is not a JSON document of an audit record's shape
 */
export function parseAuditLine(line: string): AuditRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    // The parser's message quotes the line; this one does not, and nothing else is lost.
    throw new TypeError('audit line is not a JSON document');
  }
  const result = recordSchema.safeParse(parsed);
  if (!result.success) throw refused('audit line', result.error);
  return result.data;
}

/** The record for `entry`, fields in a fixed order; throws TypeError when it does not fit. */
function toRecord(entry: AuditEntry, now: number): AuditRecord {
  const result = entrySchema.safeParse(entry);
  if (!result.success) throw refused('audit record', result.error);
  const checked = result.data;
  const record: AuditRecord = {
    at: new Date(now).toISOString(),
    actor: pick(checked.actor, ['kind', 'uid', 'pid', 'name']),
    action: checked.action,
    ...(checked.reference === undefined
      ? {}
      : { reference: canonicalReference(checked.reference) }),
    ...(checked.provider === undefined ? {} : { provider: checked.provider }),
    ...(checked.version === undefined ? {} : { version: checked.version }),
    ...(checked.containerId === undefined ? {} : { containerId: checked.containerId }),
    ...(checked.containerName === undefined ? {} : { containerName: checked.containerName }),
    ...(checked.volume === undefined ? {} : { volume: checked.volume }),
    outcome: checked.outcome,
    ...(checked.code === undefined ? {} : { code: checked.code }),
    ...(checked.reason === undefined ? {} : { reason: oneLine(checked.reason) }),
    ...(checked.cacheHit === undefined ? {} : { cacheHit: checked.cacheHit }),
    ...(checked.durationMs === undefined ? {} : { durationMs: checked.durationMs }),
    ...(checked.policy === undefined ? {} : { policy: checked.policy }),
  };
  return record;
}

/** A reason as recorded: control characters as spaces, at most {@link AUDIT_MAX_REASON_CHARS}. */
function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced
  const flat = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim() || '-';
  return flat.length > AUDIT_MAX_REASON_CHARS
    ? `${flat.slice(0, AUDIT_MAX_REASON_CHARS - 1)}…`
    : flat;
}

function canonicalReference(reference: string | SecretReference): string {
  try {
    return formatReference(typeof reference === 'string' ? parseReference(reference) : reference);
  } catch {
    // The parser's error quotes the text, and text given as a reference by mistake may be a
    // value: say what is wrong without it, and without the cause that carries it.
    throw new TypeError(
      'audit record refused: reference is not a valid secret reference (dso://… or dsofile://…)',
    );
  }
}

function pick<T extends object, K extends keyof T>(object: T, keys: readonly K[]): T {
  const out = {} as T;
  for (const key of keys) if (object[key] !== undefined) out[key] = object[key];
  return out;
}

/** A TypeError naming each bad field and what is wrong with it, never what it holds. */
function refused(what: string, error: z.ZodError): TypeError {
  const problems = error.issues.map((issue) => {
    const path = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      const where = path === '' ? '' : ` in ${path}`;
      return `unknown field${issue.keys.length > 1 ? 's' : ''}${where}: ${issue.keys.map(quoteKey).join(', ')}`;
    }
    return `${path === '' ? 'the record' : path}: ${describe(issue)}`;
  });
  return new TypeError(`${what} refused: ${problems.join('; ')}`);
}

/** What is wrong, from the issue's kind and the schema's expectation, not from the input. */
function describe(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return issue.expected === 'undefined' ? 'not allowed' : `expected ${issue.expected}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((value) => JSON.stringify(value)).join(', ')}`;
    case 'invalid_format':
      return 'not of the expected form';
    case 'too_big':
      return 'too large or too long';
    case 'too_small':
      return 'too small or too short';
    case 'custom':
      // This module's own fixed words (requireParts), never the input.
      return issue.message;
    default:
      return 'not of the expected shape';
  }
}

/** A field name as written in an error: quoted when short and plain, otherwise elided. */
function quoteKey(key: string): string {
  return /^[A-Za-z0-9_-]{1,40}$/.test(key) ? JSON.stringify(key) : '(a field with an unusual name)';
}
