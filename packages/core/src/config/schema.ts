import { PROVIDER_PACKAGE_NAME } from '@dso/provider-sdk';
import * as z from 'zod';
import { DEFAULT_API_SOCKET, MAX_SOCKET_PATH_BYTES } from '../agent-api/contract.js';
import { DEFAULT_QUEUE_CONCURRENCY, MAX_QUEUE_CONCURRENCY } from '../event-queue.js';
import { LOG_FORMATS, LOG_LEVELS } from '../logger.js';
import { closestMatch } from './suggest.js';
import {
  DURATION_SYNTAX,
  formatByteSize,
  formatDuration,
  parseByteSize,
  parseDuration,
  SIZE_SYNTAX,
} from './units.js';

// Every field carries `.meta({ description, type?, defaultText? })` on its outermost schema: the
// reference (docs/config.md) is rendered from these, so a field cannot exist undocumented.

/** The documentation each field of {@link configSchema} carries in its `.meta()`. */
// A type alias, not an interface: zod's metadata type has an index signature.
export type ConfigFieldMeta = {
  /** One or two sentences for the reference. */
  description: string;
  /** The type as the reference writes it, when the schema alone would read badly (`duration`). */
  type?: string;
  /** The default as the reference writes it, when it comes from the environment, not a constant. */
  defaultText?: string;
};

/** The provider types DSO ships. Any other type must be a provider package's name. */
export const BUILTIN_PROVIDER_TYPES = ['local', 'env', 'file', 'vault', 'aws', 'azure'] as const;

/**
 * The type of a provider run from its own `command` (a child in any language that speaks the
 * provider protocol, PROTOCOL.md of `@dso/provider-sdk`); `command` goes with it and no other.
 */
export const COMMAND_PROVIDER_TYPE = 'command';

/** How a container takes a rotated secret, from least to most disruptive. */
export const ROTATION_POLICIES = ['files', 'signal', 'hook', 'restart', 'replace'] as const;

/** A rotation policy: one of {@link ROTATION_POLICIES}. */
export type RotationPolicy = (typeof ROTATION_POLICIES)[number];

/** The same rule as a reference's provider part, so every configured name can be referenced. */
const PROVIDER_NAME = /^[a-z][a-z0-9-]{0,62}$/;
/** `dso-provider-<name>` or `@scope/dso-provider-<name>`: the SDK's rule, also `dso plugin install`'s. */
const PROVIDER_PACKAGE = PROVIDER_PACKAGE_NAME;
const MAX_PACKAGE_NAME_LENGTH = 214;
const SIGNALS = [
  'SIGHUP',
  'SIGINT',
  'SIGQUIT',
  'SIGTERM',
  'SIGUSR1',
  'SIGUSR2',
  'SIGWINCH',
  'SIGALRM',
  'SIGCONT',
] as const;

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;
const MIB = 1024 * 1024;

/**
 * What a value is, for "expected …, got …" messages. Only the kind, never the value itself:
 * a provider's settings may hold credentials.
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (value instanceof Date) return 'a date';
  switch (typeof value) {
    case 'string':
      return 'a string';
    case 'boolean':
      return 'a boolean';
    case 'number':
      if (!Number.isFinite(value)) return 'a non-finite number';
      return Number.isInteger(value) ? 'a number' : 'a fractional number';
    case 'object':
      return 'a mapping';
    default:
      return `a ${typeof value}`;
  }
}

function meta(field: ConfigFieldMeta): ConfigFieldMeta {
  return field;
}

/** `key:` with nothing after it means "all defaults" for a section, as an absent key would. */
function emptyAsAbsent(value: unknown): unknown {
  return value === null ? undefined : value;
}

/** A strict mapping whose every field has a default, so the whole section may be left out. */
function section<T extends z.ZodType>(description: string, object: T) {
  return z
    .preprocess(emptyAsAbsent, object.prefault({} as z.util.NoUndefined<z.input<T>>))
    .meta(meta({ description }));
}

interface Range {
  min: number;
  max: number;
}

/** How one kind of measured quantity (a duration, a size) is written, read and shown. */
interface Quantity {
  /** The word in messages: `duration`, `size`. */
  noun: string;
  /** The accepted syntax, for messages. */
  syntax: string;
  parse: (text: string) => number | undefined;
  format: (value: number) => string;
}

const DURATION: Quantity = {
  noun: 'duration',
  syntax: DURATION_SYNTAX,
  parse: parseDuration,
  format: formatDuration,
};
const SIZE: Quantity = {
  noun: 'size',
  syntax: SIZE_SYNTAX,
  parse: parseByteSize,
  format: formatByteSize,
};

/** A whole, non-negative number of the quantity's unit, or a string the quantity parses. */
function quantity(kind: Quantity, description: string, defaultValue: number, range: Range) {
  return quantityValue(kind, range)
    .default(defaultValue)
    .meta(meta({ description, type: kind.noun }));
}

/** {@link quantity} without a default: absent means "use the setting it overrides". */
function optionalQuantity(kind: Quantity, description: string, range: Range) {
  return quantityValue(kind, range)
    .optional()
    .meta(meta({ description, type: kind.noun, defaultText: 'unset' }));
}

function quantityValue(kind: Quantity, range: Range) {
  return z
    .union([z.number(), z.string()], {
      error: (issue) =>
        `expected a ${kind.noun} (${kind.syntax}), got ${describeValue(issue.input)}`,
    })
    .transform((value, ctx) => {
      const amount = typeof value === 'number' ? value : kind.parse(value);
      if (amount === undefined || !Number.isSafeInteger(amount) || amount < 0) {
        ctx.issues.push({
          code: 'custom',
          input: value,
          message: `expected a ${kind.noun} (${kind.syntax})`,
        });
        return z.NEVER;
      }
      if (amount < range.min || amount > range.max) {
        ctx.issues.push({
          code: 'custom',
          input: value,
          message: `must be from ${kind.format(range.min)} to ${kind.format(range.max)}`,
        });
        return z.NEVER;
      }
      return amount;
    });
}

/** A duration in ms: a whole number, or a string {@link parseDuration} reads. */
function duration(description: string, defaultMs: number, range: Range) {
  return quantity(DURATION, description, defaultMs, range);
}

/** An optional duration in ms that overrides another setting when present. */
function optionalDuration(description: string, range: Range) {
  return optionalQuantity(DURATION, description, range);
}

/** A size in bytes: a whole number, or a string {@link parseByteSize} reads. */
function byteSize(description: string, defaultBytes: number, range: Range) {
  return quantity(SIZE, description, defaultBytes, range);
}

/** A whole number within a range. */
function count(description: string, defaultValue: number, range: Range) {
  return z
    .number()
    .int()
    .min(range.min)
    .max(range.max)
    .default(defaultValue)
    .meta(meta({ description }));
}

/** Capped exponential backoff: attempts, first delay, cap. The first delay may not exceed the cap. */
function backoff(
  description: string,
  what: string,
  defaults: { maxAttempts: number; baseDelayMs: number; maxDelayMs: number },
) {
  return section(
    description,
    z
      .strictObject({
        maxAttempts: count(
          `How many times ${what} is tried in a row before giving up.`,
          defaults.maxAttempts,
          { min: 1, max: 1_000_000 },
        ),
        baseDelayMs: duration(
          'The first delay; each further attempt doubles it, with random jitter.',
          defaults.baseDelayMs,
          { min: 1, max: HOUR_MS },
        ),
        maxDelayMs: duration('The longest delay between two attempts.', defaults.maxDelayMs, {
          min: 1,
          max: DAY_MS,
        }),
      })
      .superRefine((value, ctx) => {
        if (value.baseDelayMs > value.maxDelayMs) {
          ctx.addIssue({
            code: 'custom',
            path: ['baseDelayMs'],
            message: 'must not be longer than `maxDelayMs`',
          });
        }
      }),
  );
}

function isProviderType(type: string): boolean {
  return (
    (BUILTIN_PROVIDER_TYPES as readonly string[]).includes(type) ||
    type === COMMAND_PROVIDER_TYPE ||
    (type.length <= MAX_PACKAGE_NAME_LENGTH && PROVIDER_PACKAGE.test(type))
  );
}

/** The message for a `type` that is neither built in nor a provider package's name. */
export const PROVIDER_TYPE_HINT =
  `expected a built-in provider (${BUILTIN_PROVIDER_TYPES.join(', ')}), a provider ` +
  'package name (dso-provider-<name>, @scope/dso-provider-<name>), or `command` with a `command:` list';

function isHostPort(text: string): boolean {
  const match = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})$/.exec(text);
  if (match === null) return false;
  const port = Number(match[1]);
  return port >= 1 && port <= 65_535;
}

function isAbsolutePath(text: string): boolean {
  return text.startsWith('/') && !text.includes('\0');
}

/** `0o660`, `432`, `"0660"`, `"660"`, `"0o660"`: permission bits only. */
const fileMode = z
  .union([z.number(), z.string()], {
    error: (issue) =>
      `expected a file mode such as 0o660 or "0660", got ${describeValue(issue.input)}`,
  })
  .transform((value, ctx) => {
    const mode =
      typeof value === 'number'
        ? value
        : /^(?:0o?)?[0-7]{3}$/.test(value.trim())
          ? Number.parseInt(value.trim().replace(/^0o?/, ''), 8)
          : Number.NaN;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
      ctx.issues.push({
        code: 'custom',
        input: value,
        message: 'expected a file mode from 0o000 to 0o777, such as 0o660 or "0660"',
      });
      return z.NEVER;
    }
    return mode;
  });

/** One entry of `providers`. */
export const providerSchema = z
  .strictObject({
    type: z
      .string()
      .refine(isProviderType, {
        error: (issue) => {
          // Names a built-in type, never echoes the value.
          const near =
            typeof issue.input === 'string'
              ? closestMatch(issue.input, BUILTIN_PROVIDER_TYPES)
              : undefined;
          return near === undefined
            ? PROVIDER_TYPE_HINT
            : `${PROVIDER_TYPE_HINT}; did you mean \`${near}\`?`;
        },
      })
      .meta(
        meta({
          description:
            'Which provider serves this name: a built-in one, an installed provider package loaded by its name (`dso-provider-<name>` or `@scope/dso-provider-<name>`), or `command`: the child named in `command`.',
          type: `${BUILTIN_PROVIDER_TYPES.map((type) => `'${type}'`).join(' | ')} | 'command' | package name`,
        }),
      ),
    command: z
      .array(z.string().min(1), {
        error: (issue) =>
          `expected a list: the child's argv, e.g. [python3, /opt/dso/provider.py], got ${describeValue(issue.input)}`,
      })
      .max(256)
      .refine((argv) => argv.length > 0, {
        error: "expected the child's argv, e.g. [python3, /opt/dso/provider.py], got an empty list",
      })
      .optional()
      .meta(
        meta({
          description:
            'With `type: command` (and only then): the argv of a child that speaks the provider protocol (PROTOCOL.md of `@dso/provider-sdk`), in any language, e.g. `[python3, /opt/dso/provider.py]`. It runs under the same `timeoutMs`, restarts, breaker and `env` allow-list as any provider process, in the agent\'s working directory: write absolute paths. A provider package may name its command in its package.json instead (`"dso": {"command": [...]}`), installed and configured by its package name.',
          type: 'list of strings',
        }),
      ),
    config: z.preprocess(emptyAsAbsent, z.record(z.string(), z.unknown()).default({})).meta(
      meta({
        description:
          "The provider's own settings, checked by the provider's schema when it starts. May hold " +
          'credentials: keep the file private (see "File permissions"). Values here are never quoted in errors.',
        type: 'mapping',
        defaultText: '`{}`',
      }),
    ),
    mode: z
      .enum(['process', 'inline'])
      .optional()
      .meta(
        meta({
          description:
            '`process` runs the provider in its own child process (JSON-RPC over stdio), with a restart and a breaker when it fails; `inline` loads it into the agent\'s process (no child: ~50 MB less RSS), where a call that blocks stalls the agent. Unset: `inline` for the built-in types (code shipped with the agent), `process` for a provider package; `type: command` always runs in a process. The README\'s "Where providers run" says what each keeps apart.',
          defaultText: '`inline` for a built-in type, else `process`',
        }),
      ),
    timeoutMs: duration('The deadline on every call to the provider.', 30_000, {
      min: 100,
      max: HOUR_MS,
    }),
    failureThreshold: count(
      'Consecutive failed calls after which the provider is restarted (its child killed) and calls fail fast until it answers again.',
      5,
      { min: 1, max: 1_000 },
    ),
    circuitOpenMs: duration(
      "The longest time calls fail fast while a failing provider's process is restarted: restarts back off (jittered, doubling from 0.5 s) up to this, and one trial call closes the breaker. Only for `mode: process`.",
      30_000,
      { min: 100, max: DAY_MS },
    ),
    maxInFlight: count(
      "Calls sent to the provider at once; more wait their turn, at most `timeoutMs` (`mode: inline`: the wait counts against the call's `timeoutMs`), then fail with DSO_PROVIDER_TIMEOUT. A delivery waiting on its provider holds none of `queue.concurrency`.",
      64,
      {
        min: 1,
        max: 10_000,
      },
    ),
    maxMessageBytes: byteSize(
      "Largest protocol message to and from the provider's process: a secret (base64) must fit in it; a larger one is refused with DSO_PROVIDER_TOO_LARGE. It sets the largest secret this provider carries, `3 × (maxMessageBytes − 64 KiB) / 4`: the default carries 1 MiB (up to 1,130,496 bytes); `16MiB` carries 12 MiB. `dso secret set` refuses a larger value for the `local` provider before storing it. Only for `mode: process`.",
      1.5 * MIB,
      { min: 64 * 1024, max: 64 * MIB },
    ),
    pollIntervalMs: optionalDuration(
      'How often this provider is asked for the current version of each secret in use, when it can neither push nor watch. Unset: `rotation.pollIntervalMs`.',
      { min: 1_000, max: 7 * DAY_MS },
    ),
    maxStalenessMs: optionalDuration(
      'While this provider fails, how long past its expiry a cached (last known good) value is still served to new containers. Unset: `cache.staleIfErrorMs`. `0`: never serve a stale value of this provider.',
      { min: 0, max: 30 * DAY_MS },
    ),
    env: z
      .array(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*\*?$/, {
          error: 'expected a variable name, or a prefix ending in `*` such as `ACME_*`',
        }),
      )
      .max(256)
      .default([])
      .meta(
        meta({
          description:
            "Environment variables of the agent passed to the provider's process (names, or prefixes ending in `*`). Nothing else is: built-in types add only their own (`local`: `DSO_HOME`, `DSO_VAULT_*`; `vault`: `VAULT_*`; `aws`: `AWS_*`; `azure`: `AZURE_*`, `IDENTITY_*`, `MSI_*`; `env`: its `allow` list), plus `PATH` and `HOME`.",
          type: 'list of names',
          defaultText: '`[]`',
        }),
      ),
  })
  .superRefine((entry, ctx) => {
    // `type: command` and `command` go together: one names the other's meaning.
    if (entry.type === COMMAND_PROVIDER_TYPE && entry.command === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['command'],
        message:
          "required with `type: command`: the child's argv, e.g. `command: [python3, /opt/dso/provider.py]`",
      });
    }
    if (entry.type !== COMMAND_PROVIDER_TYPE && entry.command !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['command'],
        message:
          'only with `type: command`: set `type: command` to run this child, or remove `command` to use the provider type',
      });
    }
    if (entry.type === COMMAND_PROVIDER_TYPE && entry.mode === 'inline') {
      ctx.addIssue({
        code: 'custom',
        path: ['mode'],
        message: 'a `command` provider always runs in its own process: remove `mode: inline`',
      });
    }
  });

/**
 * The whole `dso.yaml`, field by field, with its defaults. Mappings are strict: a key that is
 * not listed is an error. Durations are milliseconds (or strings such as `30s`, `10m`: see
 * {@link parseDuration}); sizes are bytes (or `64MiB`: see {@link parseByteSize}).
 *
 * Parse files with {@link parseConfig} or {@link loadConfig}, which add line numbers, "did you
 * mean" suggestions, environment overrides and the defaults that depend on `DSO_HOME`; this
 * schema alone leaves `defaultProvider` and `audit.path` unset and `providers` possibly empty.
 */
export const configSchema = z.strictObject({
  version: z
    .literal(1)
    .default(1)
    .meta(meta({ description: "The file format's version. Only `1` exists." })),
  defaultProvider: z
    .string()
    .regex(PROVIDER_NAME, { error: 'expected the name of a configured provider' })
    .optional()
    .meta(
      meta({
        description:
          'The provider a reference without a `provider:` part asks. It must be configured under `providers`. Listing providers without `local` (and without this) sends those references to the only provider, not to the vault: write `local: {type: local}` beside them to keep the vault (the agent warns at start when that happens).',
        defaultText: '`local` if configured, else the only provider',
      }),
    ),
  providers: z
    .preprocess(
      emptyAsAbsent,
      z
        .record(
          z.string().regex(PROVIDER_NAME, {
            error:
              'a provider name is a lowercase letter followed by up to 62 lowercase letters, digits or `-`',
          }),
          providerSchema,
        )
        .default({}),
    )
    .meta(
      meta({
        description:
          'The secret stores, by the name references use (`dso://<name>:path`). Names are a lowercase letter, then lowercase letters, digits and `-`. A `type: local` provider without `config.vaultPath` uses the vault of the default (`DSO_VAULT_PATH` or `$DSO_HOME/vault.dso`, its key from the environment as for the default).',
        type: 'mapping of name → provider',
        defaultText:
          '`{ local: { type: local, config: { vaultPath: <DSO_VAULT_PATH or $DSO_HOME/vault.dso> } } }` when empty',
      }),
    ),
  cache: section(
    'Resolved secrets kept in memory (or Redis) so that restarts and many consumers of one secret cost one provider call.',
    z.strictObject({
      backend: z
        .enum(['memory', 'redis'])
        .default('memory')
        .meta(
          meta({
            description:
              "`memory`: this agent's process only. `redis`: shared by several agents, values encrypted before they leave the process.",
          }),
        ),
      ttlMs: duration(
        'How long a resolved secret is served before the provider is asked again.',
        10 * MINUTE_MS,
        {
          min: 0,
          max: 7 * DAY_MS,
        },
      ),
      maxEntries: count('Most secrets kept; the least recently used go first.', 10_000, {
        min: 1,
        max: 10_000_000,
      }),
      maxBytes: byteSize(
        'Most bytes of secret values kept; the least recently used go first.',
        64 * MIB,
        { min: 1024, max: 16 * 1024 * MIB },
      ),
      staleIfErrorMs: duration(
        'While a provider fails, an expired value keeps being served for up to this long past its expiry (last known good). `0` turns it off.',
        HOUR_MS,
        { min: 0, max: 30 * DAY_MS },
      ),
      negativeTtlMs: duration(
        'How long "no such secret" is remembered, so a missing secret does not cost a provider call per request. `0` turns it off.',
        10_000,
        { min: 0, max: DAY_MS },
      ),
      redis: section(
        'The Redis connection, used when `backend` is `redis`.',
        z.strictObject({
          url: z
            .string()
            .refine((url) => /^rediss?:\/\/\S+$/.test(url), {
              error: 'expected a redis:// or rediss:// URL',
            })
            .default('redis://127.0.0.1:6379')
            .meta(
              meta({
                description:
                  '`redis://` or `rediss://` (TLS). A password in the URL is a credential: prefer `DSO_REDIS_URL` or keep the file private.',
              }),
            ),
          keyPrefix: z
            .string()
            .min(1)
            .max(128)
            .default('dso:')
            .meta(
              meta({ description: 'Prefix of every key DSO writes, to share a Redis safely.' }),
            ),
          connectTimeoutMs: duration('Bound on connecting to Redis.', 5_000, {
            min: 100,
            max: 10 * MINUTE_MS,
          }),
          commandTimeoutMs: duration('Bound on each Redis command.', 5_000, {
            min: 100,
            max: 10 * MINUTE_MS,
          }),
        }),
      ),
    }),
  ),
  queue: section(
    'The keyed event queue between the engine and the workers: one worker per container at a time, bounded.',
    z.strictObject({
      maxSize: count(
        'Most containers waiting for work. When full, the oldest work is dropped, counted, and its container marked for reconciliation.',
        1_000,
        { min: 1, max: 1_000_000 },
      ),
      concurrency: count(
        'Deliveries doing engine work at once (inspect, exec, write). A delivery waiting on its provider gives its slot to the next one meanwhile (see `providers.<name>.maxInFlight`).',
        DEFAULT_QUEUE_CONCURRENCY,
        {
          min: 1,
          max: MAX_QUEUE_CONCURRENCY,
        },
      ),
      retry: backoff('How failed work on a container is retried.', 'work on one container', {
        maxAttempts: 5,
        baseDelayMs: 100,
        maxDelayMs: 30_000,
      }),
    }),
  ),
  reconcile: section(
    'The safety net behind the events stream: every managed container is checked and repaired.',
    z.strictObject({
      intervalMs: duration(
        'Time between two full reconciliations. One also runs after the events stream had a gap.',
        10 * MINUTE_MS,
        { min: 1_000, max: 7 * DAY_MS },
      ),
    }),
  ),
  docker: section(
    'The Docker Engine connection.',
    z
      .strictObject({
        host: z
          .string()
          .refine((host) => /^(?:unix:\/\/\/|tcp:\/\/)\S+$/.test(host), {
            error: 'expected unix:///path/to/docker.sock or tcp://host:port',
          })
          .default('unix:///var/run/docker.sock')
          .meta(
            meta({
              description:
                'Where the engine listens, in `DOCKER_HOST` syntax. Plain `tcp://` is refused for anything but loopback unless `allowInsecureTcp` is set.',
            }),
          ),
        allowInsecureTcp: z
          .boolean()
          .default(false)
          .meta(
            meta({
              description:
                'Allow plain `tcp://` to a non-loopback engine. Secret files then cross the network unencrypted.',
            }),
          ),
        tlsVerify: z
          .boolean()
          .default(false)
          .meta(
            meta({
              description:
                "Reach a `tcp://` engine over TLS (`dockerd --tlsverify`), verifying its certificate against `ca.pem` and presenting this agent's `cert.pem` and `key.pem` from `tlsCertPath`, as `DOCKER_TLS_VERIFY=1` does for the docker CLI. Any host is then allowed; the port defaults to 2376. Not for a `unix://` host.",
            }),
          ),
        tlsCertPath: z
          .string()
          .refine(isAbsolutePath, { error: 'expected an absolute path' })
          .optional()
          .meta(
            meta({
              description:
                "Directory holding `ca.pem` (the CA that signed the engine's certificate), `cert.pem` and `key.pem` (this agent's client certificate and unencrypted key), read once at start. Only with `tlsVerify`.",
              defaultText: '`$DOCKER_CERT_PATH`, else `~/.docker`',
            }),
          ),
        connectTimeoutMs: duration(
          "Bound on reaching the engine: the first ping, and an events stream's first response.",
          5_000,
          { min: 100, max: 10 * MINUTE_MS },
        ),
        requestTimeoutMs: duration(
          'Bound on each list, inspect and exec-control request.',
          30_000,
          {
            min: 100,
            max: HOUR_MS,
          },
        ),
        writeTimeoutMs: duration(
          "Bound on writing one container's whole set of secret files.",
          30_000,
          {
            min: 100,
            max: HOUR_MS,
          },
        ),
        reconnect: backoff(
          'How a broken events stream is reconnected. After `maxAttempts` failures in a row the agent exits non-zero, for its supervisor to restart it.',
          'reconnecting',
          { maxAttempts: 100, baseDelayMs: 500, maxDelayMs: 30_000 },
        ),
      })
      .superRefine((value, ctx) => {
        if (value.tlsVerify && value.host.startsWith('unix://')) {
          ctx.addIssue({
            code: 'custom',
            path: ['tlsVerify'],
            message: 'needs a `tcp://` host: TLS does not apply to a unix socket',
          });
        }
        if (value.tlsCertPath !== undefined && !value.tlsVerify) {
          ctx.addIssue({
            code: 'custom',
            path: ['tlsCertPath'],
            message: 'is read only with `tlsVerify: true`: set it, or drop `tlsCertPath`',
          });
        }
      }),
  ),
  rotation: section(
    'What happens when a provider reports a new version of a secret. A container can choose its own policy in its labels.',
    z.strictObject({
      defaultPolicy: z
        .enum(ROTATION_POLICIES)
        .default('files')
        .meta(
          meta({
            description:
              "`files`: rewrite the files only. `signal`: rewrite, then send `signal`. `hook`: rewrite, then run the container's hook. `restart`: restart the container. `replace`: start a new container beside it, switch once healthy, roll back otherwise.",
          }),
        ),
      escalateTo: z
        .enum(ROTATION_POLICIES)
        .optional()
        .meta(
          meta({
            description:
              "When a policy's action fails, the next heavier one is tried, up to this one (`signal` → `hook` when the container has one → `restart` → `replace`). A container's `dso.rotate.escalate` label overrides it. Unset: no escalation.",
            defaultText: 'unset',
          }),
        ),
      pollIntervalMs: duration(
        'How often a provider that cannot push or watch is asked for the current version of each secret in use.',
        5 * MINUTE_MS,
        { min: 1_000, max: 7 * DAY_MS },
      ),
      maxInFlight: count('Containers being rotated at once, across all secrets.', 16, {
        min: 1,
        max: 1_024,
      }),
      jitterMs: duration(
        'Each container that shares a rotated secret starts its rotation after a random delay of up to this, so they do not all restart at once.',
        5_000,
        { min: 0, max: HOUR_MS },
      ),
      signal: z
        .enum(SIGNALS)
        .default('SIGHUP')
        .meta(meta({ description: 'The signal the `signal` policy sends.' })),
      hookTimeoutMs: duration('Bound on a rotation hook run by the `hook` policy.', 30_000, {
        min: 100,
        max: HOUR_MS,
      }),
      stopTimeoutMs: duration(
        'Grace an old container gets between SIGTERM and SIGKILL under `restart` and `replace`.',
        10_000,
        { min: 0, max: HOUR_MS },
      ),
      healthTimeoutMs: duration(
        'Under `replace`, how long the new container has to become healthy before it is removed and the old one kept.',
        60_000,
        { min: 1_000, max: HOUR_MS },
      ),
    }),
  ),
  api: section(
    "The agent's API, used by the `dso` CLI: a unix socket, guarded by file permissions.",
    z.strictObject({
      socket: z
        .string()
        .refine(isAbsolutePath, { error: 'expected an absolute path' })
        .refine((path) => Buffer.byteLength(path) <= MAX_SOCKET_PATH_BYTES, {
          error: `a unix socket path must be at most ${MAX_SOCKET_PATH_BYTES} bytes long`,
        })
        .default(DEFAULT_API_SOCKET)
        .meta(meta({ description: 'Path of the socket the agent listens on.' })),
      socketMode: fileMode.default(0o660).meta(
        meta({
          description:
            'Permission bits of the socket. Write octal as `0o660` or quote it (`"0660"`): YAML reads a bare `0660` as decimal.',
          type: 'file mode',
        }),
      ),
      socketGroup: z
        .union(
          [
            z.number().int().min(0).max(4_294_967_294),
            z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/, {
              error: 'expected a group name (letters, digits, `_`, `.`, `-`) or a numeric gid',
            }),
          ],
          {
            error: (issue) =>
              `expected a group name or a numeric gid, got ${describeValue(issue.input)}`,
          },
        )
        .optional()
        .meta(
          meta({
            description:
              "Group that owns the socket; its members can use the CLI. Unset: the agent's own group.",
            type: 'group name or gid',
          }),
        ),
      resolveAllow: z
        .array(
          z
            .string()
            .min(1)
            .max(512)
            .regex(/^dso:\/\/\S+$/, {
              error:
                'expected a dso:// reference pattern such as `dso://app/*` or `dso://vault:team/db`',
            }),
        )
        .max(1_000)
        .default([])
        .meta(
          meta({
            description:
              'The `dso://` references `dso up` may have the agent resolve over the socket, for environment values (`*` matches within one path segment, `**` across segments). Empty: the API resolves nothing. Every member of `socketGroup` can read what these patterns allow.',
            type: 'list of reference patterns',
            defaultText: '`[]`',
          }),
        ),
    }),
  ),
  hostPath: section(
    'Files written straight into a host tmpfs folder bind-mounted into the container: no exec, no shell and no tar in the image. Used only when the agent shares the host with the engine (a local socket) and the container bind-mounts its secrets folder from under `root`.',
    z.strictObject({
      enabled: z
        .boolean()
        .default(true)
        .meta(
          meta({
            description:
              'Use the host path for containers that bind-mount it. `false`: always write by exec.',
          }),
        ),
      root: z
        .string()
        .refine(isAbsolutePath, { error: 'expected an absolute path' })
        .default('/run/dso/containers')
        .meta(
          meta({
            description:
              "The host folder (on a tmpfs: checked) holding one folder per container's secrets, bind-mounted read-only at the container's `dso.target`.",
          }),
        ),
    }),
  ),
  volumes: section(
    'Secrets as Docker volumes: the agent serves a volume plugin, so the engine puts the files in place before the container starts (no exec, shell, tar, capability or entrypoint wrapper). Served only when the agent shares the host with the engine (a local socket).',
    z.strictObject({
      enabled: z
        .boolean()
        .default(true)
        .meta(
          meta({
            description:
              'Serve the volume driver (when the engine is local). `false`: no driver; containers that use it fail to start.',
          }),
        ),
      driverName: z
        .string()
        .regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, {
          error: 'expected a plugin name: lowercase letters, digits, `.`, `_`, `-`',
        })
        .default('dso')
        .meta(
          meta({
            description:
              "The driver's name: what `--mount ...,volume-driver=<name>` and compose's `driver:` say. Its socket is `/run/docker/plugins/<name>.sock` (root only).",
          }),
        ),
      root: z
        .string()
        .refine(isAbsolutePath, { error: 'expected an absolute path' })
        .default('/run/dso/volumes')
        .meta(
          meta({
            description:
              'Where each mount gets its folder. When it is not on a tmpfs, the agent mounts a private tmpfs of `tmpfsSize` there itself, and serves no volume when it cannot.',
          }),
        ),
      tmpfsSize: byteSize(
        'The size of the tmpfs the agent mounts at `root` when `root` is not already on one.',
        64 * 1024 * 1024,
        { min: 1024 * 1024, max: 4 * 1024 * 1024 * 1024 },
      ),
      mountTimeoutMs: duration(
        "How long a `Mount` may take (resolving and writing every file) before it fails the container's start: below the engine's own plugin timeout.",
        20_000,
        { min: 1_000, max: 25_000 },
      ),
    }),
  ),
  metrics: section(
    'Prometheus metrics over HTTP (`GET /metrics`). Labels never carry a secret, its path or a container name.',
    z.strictObject({
      enabled: z
        .boolean()
        .default(true)
        .meta(meta({ description: 'Serve metrics.' })),
      address: z
        .string()
        .refine(isHostPort, { error: 'expected host:port, such as 127.0.0.1:9464 or [::1]:9464' })
        .default('127.0.0.1:9464')
        .meta(
          meta({
            description:
              'Address to listen on, `host:port`, on loopback only (`127.0.0.1`, `[::1]`, `localhost`): the endpoints have no authentication. A remote Prometheus scrapes through a proxy with TLS and authentication, or a node exporter.',
          }),
        ),
    }),
  ),
  audit: section(
    'The audit trail: one JSON line per secret delivered, rotated or refused, naming references and containers, never values.',
    z.strictObject({
      enabled: z
        .boolean()
        .default(true)
        .meta(meta({ description: 'Write the audit trail.' })),
      path: z
        .string()
        .refine((path) => path === '-' || isAbsolutePath(path), {
          error: 'expected an absolute path, or - for standard output',
        })
        .optional()
        .meta(
          meta({
            description: 'File the trail is appended to (mode 0600), or `-` for standard output.',
            defaultText: '`$DSO_HOME/audit.jsonl`',
          }),
        ),
      maxFileBytes: byteSize(
        'Size at which the file is rotated (`audit.jsonl` → `audit.jsonl.1` …).',
        64 * MIB,
        { min: 64 * 1024, max: 64 * 1024 * MIB },
      ),
      maxFiles: count('Rotated files kept besides the current one; older ones are deleted.', 5, {
        min: 0,
        max: 1_000,
      }),
    }),
  ),
  log: section(
    'Logging on standard output, every line redacted: JSON lines, or readable lines on a terminal.',
    z.strictObject({
      level: z
        .enum(LOG_LEVELS)
        .default('info')
        .meta(meta({ description: 'The lowest level written.' })),
      format: z
        .enum(LOG_FORMATS)
        .default('auto')
        .meta(
          meta({
            description:
              '`json`: one JSON object a line, for log collectors. `pretty`: one readable, coloured line (time, level, message, key fields). `auto`: `pretty` when standard output is a terminal, else `json`.',
          }),
        ),
    }),
  ),
  pluginsDir: z
    .string()
    .refine(isAbsolutePath, { error: 'expected an absolute path' })
    .optional()
    .meta(
      meta({
        description:
          'Where third-party provider packages are installed (`dso plugin install <package>`); a provider `type` that is not built in is loaded from there by its package name. Only the operator should be able to write it: the agent runs what it holds.',
        defaultText: '`$DSO_HOME/plugins`',
      }),
    ),
  shutdownGraceMs: duration(
    'On SIGTERM, how long work in flight may finish before it is cancelled.',
    10_000,
    { min: 0, max: 10 * MINUTE_MS },
  ),
});

/** `dso.yaml` as {@link configSchema} reads it, before defaults that depend on the environment. */
type ParsedConfig = z.output<typeof configSchema>;

/** One configured provider, with its defaults filled in. */
export type ProviderConfig = ParsedConfig['providers'][string];

/**
 * A complete, valid configuration: every default filled in, `providers` never empty,
 * `defaultProvider` naming one of them, `audit.path` and `pluginsDir` resolved under `DSO_HOME`.
 */
export type DsoConfig = Omit<ParsedConfig, 'defaultProvider' | 'audit' | 'pluginsDir'> & {
  defaultProvider: string;
  audit: Omit<ParsedConfig['audit'], 'path'> & { path: string };
  pluginsDir: string;
};
