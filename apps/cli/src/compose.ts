import { createHash } from 'node:crypto';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { parseEnv } from 'node:util';
import {
  checkSecretFileName,
  DEFAULT_SECRETS_DIR,
  DsoError,
  formatReference,
  isDsoError,
  isReference,
  LABELS,
  parseManagedLabels,
  parseReference,
  type SecretReference,
  waitForSecretsCommand,
} from '@dso/core';
import { parse, stringify } from 'yaml';

// ---------------------------------------------------------------------------------------------
// What `dso up` does to a compose project, as pure functions over compose's own model.
//
// The user's compose files are never rewritten nor copied: compose reads them itself, by path,
// with everything it knows (interpolation, relative paths, anchors, `extends`, profiles), and
// then one more file, an override that `dso up` writes on compose's stdin. The override holds
// only what DSO adds to a service that uses references:
//
// - `dsofile://` in `environment`: the variable's value becomes the file's path
//   (`<target>/<name>`, name = the variable's name lowercased), plus the labels
//   `dso.enable=true`, `dso.target`, `dso.file.<name>=<reference>`, a tmpfs at the target, and
//   an entrypoint that waits for the files before it runs the service's own command
//   (`waitForSecretsCommand`);
// - `dso://` in `environment`: the value becomes `${DSO_UP_<hash of the reference>}`, which
//   compose fills from its own process environment (where `dso up` puts the value the agent
//   resolved), plus `dso.enable=true` and `dso.env.<NAME>=<reference>` so the agent can create
//   the container again with fresh values when the secret rotates.
//
// Compose merges the override into the service: `environment` and `labels` key by key (map and
// list forms alike), `tmpfs` as a union, `entrypoint`/`command` replaced. Hence no value is ever
// in a file, in argv, or in the YAML text: only references and `${…}` names.
//
// The decisions (which variables hold references, does the service have a command, which labels
// does it already carry) need the service as compose will see it. That is compose's own merged
// model (`config`, see {@link readComposeModel}), never a second reading of the Compose
// specification here. Compose runs `config` with the caller's environment only: it sees
// references, never a value.
// ---------------------------------------------------------------------------------------------

/** The file names compose looks for, in its order, when no `-f` is given. */
export const COMPOSE_FILE_NAMES = [
  'compose.yaml',
  'compose.yml',
  'docker-compose.yml',
  'docker-compose.yaml',
] as const;

/** The override files compose reads beside the one it found, first found only, in its order. */
export const COMPOSE_OVERRIDE_FILE_NAMES = [
  'compose.override.yml',
  'compose.override.yaml',
  'docker-compose.override.yml',
  'docker-compose.override.yaml',
] as const;

/** The prefix of the variables that carry resolved `dso://` values into compose's environment. */
export const DSO_UP_VARIABLE_PREFIX = 'DSO_UP_';

/** The merged model compose prints with `config`, as far as DSO reads it. */
export interface ComposeModel {
  /** `version`, when compose prints one (docker-compose 1.x does): the override then says the same. */
  version?: string;
  /** Every service compose printed, sorted by name (see {@link activeServices}). */
  services: ServiceView[];
  /** The top-level `volumes`, as printed (driver and options of each). */
  volumes: Record<string, unknown>;
}

/** What an image runs when a container gives no command: `docker image inspect` `.Config`. */
export interface ImageCommand {
  entrypoint: string[];
  cmd: string[];
}

/** The parts of a service `dso up` reads, from compose's merged model; values as the container gets them. */
export interface ServiceView {
  name: string;
  /** `image`, interpolated. */
  image?: string;
  /** Whether the service has a `build` section. */
  build: boolean;
  /** `command`: docker-compose 1.x prints a string as written (it splits it itself), v2 a list. */
  command?: string | string[];
  /** `entrypoint`, a string or a list like `command`. */
  entrypoint?: string | string[];
  /** `environment`, by name; null for a name given without a value (taken from the shell). */
  environment: Map<string, string | null>;
  labels: Map<string, string>;
  /** Container paths of `tmpfs` entries. */
  tmpfs: string[];
  /** Container paths of `volumes` entries. */
  volumeTargets: string[];
  /** `profiles`: the service starts only when one is active (none: always). */
  profiles: string[];
}

/** One variable `dso up` fills: its name and the `dso://` reference whose value it carries. */
export interface UpVariable {
  name: string;
  reference: string;
}

/** What one service gets. */
export interface ServicePlan {
  name: string;
  /** `dsofile://` variables: file name → reference. */
  files: Array<{ variable: string; name: string; path: string; reference: string }>;
  /** `dso://` variables. */
  env: Array<{ variable: string; reference: string; carrier: string }>;
  /** The labels dso up adds (the service's own are kept by compose). */
  labels: Record<string, string>;
  /** Whether its entrypoint was wrapped to wait for the files. */
  waits: boolean;
  /** The DSO volume its files come through (the project's volume name), when the driver serves them. */
  volume?: string;
  /** Whether its command came from the image (neither `command` nor `entrypoint` was given). */
  commandFromImage: boolean;
}

/** The result of {@link planComposeUp}. */
export interface ComposeUpPlan {
  /** The override compose reads after the user's files: references and `${…}` names only. */
  override: {
    version?: string;
    services: Record<string, Record<string, unknown>>;
    /** DSO volumes (driver and options: references only), when the volume driver is used. */
    volumes?: Record<string, { driver: string; driver_opts: Record<string, string> }>;
  };
  /** Every variable to fill, one per distinct `dso://` reference, sorted by name. */
  variables: UpVariable[];
  /** The services that use references, sorted by name. */
  services: ServicePlan[];
}

/** Options of {@link planComposeUp}. */
export interface PlanOptions {
  /** The image command of each service listed by {@link servicesNeedingImage}, by service name. */
  images?: ReadonlyMap<string, ImageCommand>;
  /**
   * The agent's volume driver: `dsofile://` files then come through a DSO volume the engine
   * mounts before the service starts (no tmpfs, no wait, the command untouched). Absent: the
   * files are delivered into a tmpfs and the service waits for them.
   */
  volumeDriver?: string;
}

// ---------------------------------------------------------------------------------------------
// Reading the model
// ---------------------------------------------------------------------------------------------

/**
 * The merged model compose prints (`docker-compose config`: YAML; `docker compose config
 * --format json`: JSON), read for what DSO needs of it. Compose did everything the Compose
 * specification asks (every `-f` file merged, `extends`, `.env` and interpolation with nested
 * defaults, anchors, relative paths), so this only reads its answer.
 *
 * Compose prints text it can read again: a literal `$` is doubled (`$$`), as both
 * docker-compose 1.29 and Compose v2 do. Every string is undoubled here, so the model holds the
 * values the containers get; {@link escapeCompose} doubles them again where they go back to
 * compose.
 *
 * @example
 * const model = readComposeModel(await composeModel({ compose, args, env, stderr }));
 * planComposeUp(activeServices(model.services, { profiles: [] }));
 * @throws DsoError DSO_CLI_COMPOSE_INVALID when the text is not a model (a compose that answers
 *   something else), or a key DSO reads has a shape compose would not print
 */
export function readComposeModel(text: string): ComposeModel {
  let data: unknown;
  try {
    // YAML reads JSON too. At most 100 aliases: compose prints none, so this only guards.
    data = parse(text, { prettyErrors: false, maxAliasCount: 100 });
  } catch (cause) {
    throw new DsoError(
      'DSO_CLI_COMPOSE_INVALID',
      `compose's config command printed something that is not YAML or JSON (${cause instanceof Error ? cause.message.split('\n')[0] : String(cause)}): check that docker compose / docker-compose runs on its own`,
      { cause },
    );
  }
  data = unescapeModel(data);
  if (!isRecord(data) || (data.services !== undefined && !isRecord(data.services))) {
    throw new DsoError(
      'DSO_CLI_COMPOSE_INVALID',
      "compose's config command printed no services mapping: check that docker compose / docker-compose runs on its own",
    );
  }
  const services = isRecord(data.services) ? data.services : {};
  const model: ComposeModel = {
    services: Object.keys(services)
      .sort()
      .map((name) => readService(name, services[name])),
    volumes: isRecord(data.volumes) ? data.volumes : {},
  };
  if (isScalar(data.version)) model.version = String(data.version);
  return model;
}

/**
 * The services `compose up` starts: those without `profiles`, those with a profile that is
 * active (`--profile`, `COMPOSE_PROFILES`; `*` for all), and those named on the command line.
 * docker-compose 1.x prints every service in its model whatever the profiles; Compose v2 prints
 * the active ones only, which this keeps.
 */
export function activeServices(
  services: readonly ServiceView[],
  options: { profiles: readonly string[]; named?: readonly string[] },
): ServiceView[] {
  const profiles = new Set(options.profiles);
  const named = new Set(options.named ?? []);
  return services.filter(
    (service) =>
      service.profiles.length === 0 ||
      profiles.has('*') ||
      named.has(service.name) ||
      service.profiles.some((profile) => profiles.has(profile)),
  );
}

function readService(name: string, raw: unknown): ServiceView {
  const key = (field: string) => `services.${name}.${field}`;
  if (raw === null || raw === undefined) raw = {};
  if (!isRecord(raw)) throw invalidKey(`services.${name}`, 'is not a mapping');
  const view: ServiceView = {
    name,
    build: raw.build !== undefined && raw.build !== null,
    environment: readMapping(key('environment'), raw.environment, true) as Map<
      string,
      string | null
    >,
    labels: readMapping(key('labels'), raw.labels, false) as Map<string, string>,
    tmpfs: readTmpfs(key('tmpfs'), raw.tmpfs),
    volumeTargets: readVolumeTargets(key('volumes'), raw.volumes),
    profiles: Array.isArray(raw.profiles) ? raw.profiles.map((profile) => String(profile)) : [],
  };
  if (raw.image !== undefined && raw.image !== null) {
    if (typeof raw.image !== 'string') throw invalidKey(key('image'), 'is not a string');
    view.image = raw.image;
  }
  for (const field of ['command', 'entrypoint'] as const) {
    const value = raw[field];
    if (value === undefined || value === null) continue;
    if (typeof value === 'string') view[field] = value;
    else if (Array.isArray(value) && value.every((arg) => isScalar(arg))) {
      view[field] = value.map((arg) => String(arg));
    } else throw invalidKey(key(field), 'is neither a string nor a list of strings');
  }
  return view;
}

/** `environment` or `labels`, map or list form, as a map of strings (null: no value given). */
function readMapping(key: string, raw: unknown, allowNull: boolean): Map<string, string | null> {
  const map = new Map<string, string | null>();
  if (raw === undefined || raw === null) return map;
  if (Array.isArray(raw)) {
    for (const entry of raw) {
      if (typeof entry !== 'string') throw invalidKey(key, 'is not a list of NAME=value');
      const equals = entry.indexOf('=');
      // `NAME` alone takes the value from the shell; a label without "=" is an empty label.
      if (equals === -1) map.set(entry, allowNull ? null : '');
      else map.set(entry.slice(0, equals), entry.slice(equals + 1));
    }
    return map;
  }
  if (!isRecord(raw)) throw invalidKey(key, 'is neither a mapping nor a list of NAME=value');
  for (const [name, value] of Object.entries(raw)) {
    if (value === null || value === undefined) map.set(name, allowNull ? null : '');
    else if (isScalar(value)) map.set(name, String(value));
    else throw invalidKey(`${key}.${name}`, 'is not a string, a number or a boolean');
  }
  return map;
}

function readTmpfs(key: string, raw: unknown): string[] {
  if (raw === undefined || raw === null) return [];
  const entries = Array.isArray(raw) ? raw : [raw];
  return entries.map((entry) => {
    if (typeof entry !== 'string') throw invalidKey(key, 'is neither a path nor a list of paths');
    return trimSlash(entry.split(':')[0] as string);
  });
}

function readVolumeTargets(key: string, raw: unknown): string[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw invalidKey(key, 'is not a list');
  const targets: string[] = [];
  for (const entry of raw) {
    if (typeof entry === 'string') {
      // `target`, `source:target` or `source:target:mode` (docker-compose 1.x's short form).
      const parts = entry.split(':');
      const target = parts.length === 1 ? parts[0] : parts[1];
      if (target) targets.push(trimSlash(target));
    } else if (isRecord(entry) && typeof entry.target === 'string') {
      targets.push(trimSlash(entry.target));
    }
  }
  return targets;
}

/** Every string of compose's printed model with its `$$` made `$` again. */
function unescapeModel(value: unknown): unknown {
  if (typeof value === 'string') return value.replaceAll('$$', '$');
  if (Array.isArray(value)) return value.map(unescapeModel);
  if (isRecord(value)) {
    return Object.fromEntries(
      Object.entries(value).map(([key, entry]) => [
        key.replaceAll('$$', '$'),
        unescapeModel(entry),
      ]),
    );
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------------------------

/**
 * The services whose command must come from their image to be wrapped in the wait for their
 * files: those with a `dsofile://` variable and no `entrypoint` (Docker runs the image's
 * Entrypoint before a `command`, so even a service with a `command` needs it).
 */
export function servicesNeedingImage(
  views: readonly ServiceView[],
  volumeDriver?: string,
): Array<{ service: string; image: string | undefined; build: boolean }> {
  return views
    .filter(
      (view) =>
        view.entrypoint === undefined &&
        !filesByVolume(view, volumeDriver) &&
        [...view.environment.values()].some((value) => value?.startsWith('dsofile://') === true),
    )
    .map((view) => ({ service: view.name, image: view.image, build: view.build }));
}

/**
 * Whether a service's `dsofile://` files come through the volume driver: when the agent serves
 * one and nothing else (a tmpfs, a volume) is mounted at the service's target already.
 */
export function filesByVolume(view: ServiceView, volumeDriver: string | undefined): boolean {
  if (volumeDriver === undefined) return false;
  const target = trimSlash(view.labels.get(LABELS.target) ?? DEFAULT_SECRETS_DIR);
  return !view.tmpfs.includes(target) && !view.volumeTargets.includes(target);
}

/**
 * What `dso up` adds to each service that uses references (see the module comment): the
 * override document, the variables to fill, and a summary per service. Pure: no value passes
 * through it, and the override holds references and `${…}` names only.
 *
 * @example
 * const { services } = readComposeModel(printedByComposeConfig);
 * const plan = planComposeUp(activeServices(services, { profiles: [] }), { images });
 * stringify(plan.override); // services: { web: { environment: { DB: ${DSO_UP_…} }, labels: … } }
 * @throws DsoError DSO_REFERENCE_INVALID (with the service and variable) for a malformed reference
 * @throws DsoError DSO_CLI_UP_CONFLICT when the service's own `dso.*` labels say otherwise
 * @throws DsoError DSO_CLI_UP_FILE_NAME when a variable's name makes no valid file name, or two do the same
 * @throws DsoError DSO_CLI_UP_NO_COMMAND when a service with files has no command to wrap
 * @throws DsoError DSO_LABEL_INVALID when the labels together break the label contract
 */
export function planComposeUp(
  views: readonly ServiceView[],
  options: PlanOptions = {},
): ComposeUpPlan {
  const services: ServicePlan[] = [];
  const overrides: Record<string, Record<string, unknown>> = {};
  const volumes: NonNullable<ComposeUpPlan['override']['volumes']> = {};
  const variables = new Map<string, string>();

  for (const view of views) {
    const files: ServicePlan['files'] = [];
    const env: ServicePlan['env'] = [];
    for (const [variable, value] of view.environment) {
      if (value === null || !isReference(value)) continue;
      const reference = parseServiceReference(view.name, variable, value);
      const formatted = formatReference(reference);
      if (reference.scheme === 'dso') {
        const carrier = variableFor(formatted);
        variables.set(carrier, formatted);
        env.push({ variable, reference: formatted, carrier });
      } else {
        files.push({
          variable,
          name: fileNameFor(view.name, variable),
          path: '',
          reference: formatted,
        });
      }
    }
    if (files.length === 0 && env.length === 0) continue;

    const own = view.labels;
    const labels: Record<string, string> = {};
    const add = (key: string, value: string) => {
      const existing = own.get(key);
      if (existing !== undefined && existing !== value) {
        throw new DsoError(
          'DSO_CLI_UP_CONFLICT',
          `service ${view.name} has the label ${key}=${JSON.stringify(existing)}, but dso up must set it to ${JSON.stringify(value)} for the references in its environment: remove the label (dso up writes it)`,
          { service: view.name, label: key },
        );
      }
      if (existing === undefined) labels[key] = value;
    };
    const override: Record<string, unknown> = {};
    const environment: Record<string, string> = {};
    let target = own.get(LABELS.target) ?? DEFAULT_SECRETS_DIR;
    let waits = false;
    let commandFromImage = false;
    let volume: string | undefined;
    const byVolume = files.length > 0 && filesByVolume(view, options.volumeDriver);
    if (!byVolume || env.length > 0) add(LABELS.enable, 'true');
    if (files.length > 0) {
      const written = target;
      target = trimSlash(target);
      const seen = new Map<string, string>();
      for (const file of files) {
        const other = seen.get(file.name);
        if (other !== undefined) {
          throw new DsoError(
            'DSO_CLI_UP_FILE_NAME',
            `service ${view.name}: the variables ${other} and ${file.variable} both make the file ${file.name} (names are lowercased): rename one`,
            { service: view.name },
          );
        }
        seen.set(file.name, file.variable);
        file.path = `${target}/${file.name}`;
        environment[file.variable] = escapeCompose(file.path);
      }
      if (byVolume) {
        const driverOptions = Object.fromEntries(
          [...files]
            .sort((a, b) => (a.name < b.name ? -1 : 1))
            .map((file) => [file.name, escapeCompose(file.reference)]),
        );
        // Named after what it holds: changed references make a new volume (compose keeps an
        // existing volume as it was created).
        volume = `dso-${view.name}-${createHash('sha256').update(JSON.stringify(driverOptions)).digest('hex').slice(0, 10)}`;
        volumes[volume] = { driver: options.volumeDriver as string, driver_opts: driverOptions };
        override.volumes = [`${volume}:${escapeCompose(target)}`];
      } else {
        // The service's own dso.target is policy, not a conflict: the files go there.
        add(LABELS.target, written);
        for (const file of files) add(`${LABELS.filePrefix}${file.name}`, file.reference);
        if (!view.tmpfs.includes(target) && !view.volumeTargets.includes(target)) {
          override.tmpfs = [escapeCompose(target)];
        }
        const wrapped = wrapCommand(view, target, options.images?.get(view.name));
        override.entrypoint = wrapped.entrypoint;
        if (wrapped.command !== undefined) override.command = wrapped.command;
        commandFromImage = wrapped.fromImage;
        waits = true;
      }
    }
    for (const entry of env) {
      add(`${LABELS.envPrefix}${entry.variable}`, entry.reference);
      environment[entry.variable] = `\${${entry.carrier}}`;
    }
    checkLabels(view, own, labels);
    override.environment = sortKeys(environment);
    override.labels = sortKeys(labels);
    overrides[view.name] = override;
    services.push({
      name: view.name,
      files,
      env,
      labels,
      waits,
      commandFromImage,
      ...(volume === undefined ? {} : { volume }),
    });
  }

  return {
    override: {
      services: overrides,
      ...(Object.keys(volumes).length === 0 ? {} : { volumes }),
    },
    variables: [...variables]
      .map(([name, reference]) => ({ name, reference }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    services,
  };
}

/**
 * The override as compose reads it, or for `--dry-run` with each `${DSO_UP_…}` shown as
 * `<dso:reference>`. `version` is copied from the user's first file that has one: compose 1.x
 * refuses files of different versions.
 */
export function renderOverride(
  plan: ComposeUpPlan,
  options: { dryRun?: boolean; version?: string } = {},
): string {
  const document: Record<string, unknown> = {};
  if (options.version !== undefined) document.version = options.version;
  const services: Record<string, Record<string, unknown>> = {};
  const references = new Map(
    plan.variables.map(({ name, reference }) => [`\${${name}}`, reference]),
  );
  for (const [name, service] of Object.entries(plan.override.services)) {
    if (!options.dryRun) {
      services[name] = service;
      continue;
    }
    const environment = Object.fromEntries(
      Object.entries(service.environment as Record<string, string>).map(([key, value]) => {
        const reference = references.get(value);
        return [key, reference === undefined ? value : `<dso:${reference}>`];
      }),
    );
    services[name] = { ...service, environment };
  }
  document.services = services;
  if (plan.override.volumes !== undefined) document.volumes = plan.override.volumes;
  // lineWidth 0: never fold the wait script across lines.
  return stringify(document, { lineWidth: 0 });
}

/** The variable that carries the value of `reference` (formatted): stable, names nothing secret. */
export function variableFor(reference: string): string {
  const hash = createHash('sha256').update(reference).digest('hex').slice(0, 16).toUpperCase();
  return `${DSO_UP_VARIABLE_PREFIX}${hash}`;
}

function parseServiceReference(service: string, variable: string, value: string): SecretReference {
  try {
    return parseReference(value);
  } catch (error) {
    if (!isDsoError(error)) throw error;
    throw new DsoError(
      error.code,
      `service ${service}, environment ${variable}: ${error.message}`,
      { cause: error, service, variable },
    );
  }
}

function fileNameFor(service: string, variable: string): string {
  const name = variable.toLowerCase();
  const problem = checkSecretFileName(name);
  if (problem !== undefined) {
    throw new DsoError(
      'DSO_CLI_UP_FILE_NAME',
      `service ${service}, environment ${variable}: a dsofile:// variable names its file (${JSON.stringify(name)}), and that name ${problem}: rename the variable`,
      { service, variable },
    );
  }
  return name;
}

/**
 * The wait for the files put in front of what the service runs. Docker runs `entrypoint` +
 * `command`; setting an entrypoint drops the image's Cmd, so the image's command is written out
 * when the service gives none.
 */
function wrapCommand(
  view: ServiceView,
  target: string,
  image: ImageCommand | undefined,
): { entrypoint: string[]; command?: string[]; fromImage: boolean } {
  let entrypoint: string[];
  let command: string[] | undefined;
  let shown: string[];
  let fromImage = false;
  if (view.entrypoint !== undefined) {
    // From the model: interpolated already, so every "$" is escaped for compose. A string is
    // split the way compose splits it.
    const literal =
      typeof view.entrypoint === 'string' ? splitCommandLine(view.entrypoint) : view.entrypoint;
    entrypoint = literal.map(escapeCompose);
    shown = [
      ...literal,
      ...(typeof view.command === 'string' ? splitCommandLine(view.command) : (view.command ?? [])),
    ];
  } else {
    if (image === undefined) {
      throw new DsoError(
        'DSO_CLI_UP_NO_COMMAND',
        `service ${view.name}: dso up needs the image's entrypoint to make the service wait for its secret files, and it was not given: give the service an entrypoint in the compose file`,
        { service: view.name },
      );
    }
    // From the image: literal text, so every "$" is escaped for compose.
    entrypoint = image.entrypoint.map(escapeCompose);
    if (view.command === undefined) {
      command = image.cmd.map(escapeCompose);
      fromImage = true;
    }
    shown = [
      ...image.entrypoint,
      ...(view.command === undefined
        ? image.cmd
        : typeof view.command === 'string'
          ? splitCommandLine(view.command)
          : view.command),
    ];
  }
  if (shown.length === 0) {
    throw new DsoError(
      'DSO_CLI_UP_NO_COMMAND',
      `service ${view.name}: neither the service nor its image says what to run, so there is nothing to start once its secret files exist: give it a command`,
      { service: view.name },
    );
  }
  // The wait's own argv (sh, -c, script, target), then the service's entrypoint: the script
  // `exec`s "$@", which is that entrypoint followed by the command.
  const wait = waitForSecretsCommand(target, shown).slice(0, 4).map(escapeCompose);
  return {
    entrypoint: [...wait, ...entrypoint],
    ...(command === undefined ? {} : { command }),
    fromImage,
  };
}

/** Checks the labels the container will carry, its own and dso up's, against the contract. */
function checkLabels(
  view: ServiceView,
  own: ReadonlyMap<string, string>,
  added: Readonly<Record<string, string>>,
): void {
  try {
    parseManagedLabels({ ...Object.fromEntries(own), ...added });
  } catch (error) {
    if (!isDsoError(error)) throw error;
    throw new DsoError(error.code, `service ${view.name}: ${error.message}`, {
      cause: error,
      service: view.name,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Compose's text rules
// ---------------------------------------------------------------------------------------------

/** `text` with every `$` doubled: compose then reads it literally, without interpolation. */
export function escapeCompose(text: string): string {
  return text.replaceAll('$', '$$$$');
}

/**
 * Splits a command line the way compose splits a string `command` or `entrypoint` (POSIX shell
 * words without expansion, like Python's `shlex.split`): whitespace separates words, single
 * quotes keep everything, double quotes keep everything but `\"` and `\\`, a backslash outside
 * quotes keeps the next character.
 *
 * @throws DsoError DSO_CLI_COMPOSE_INVALID for an unclosed quote or a trailing backslash
 */
export function splitCommandLine(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i += 1) {
    const char = text[i] as string;
    if (quote === "'") {
      if (char === "'") quote = undefined;
      else word += char;
    } else if (quote === '"') {
      if (char === '"') quote = undefined;
      else if (char === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) {
        word += text[i + 1];
        i += 1;
      } else word += char;
    } else if (char === "'" || char === '"') {
      quote = char;
      inWord = true;
    } else if (char === '\\') {
      if (i + 1 >= text.length) throw badCommandLine(text, 'ends with a backslash');
      word += text[i + 1];
      i += 1;
      inWord = true;
    } else if (/\s/.test(char)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += char;
      inWord = true;
    }
  }
  if (quote !== undefined) throw badCommandLine(text, `has an unclosed ${quote}`);
  if (inWord) words.push(word);
  return words;
}

/**
 * Reads a `.env` file's `NAME=value` lines with Node's `util.parseEnv`, the dotenv grammar
 * compose follows: `#` comments, `export `, quotes, multi-line double-quoted values. Only for
 * the `COMPOSE_PROJECT_NAME` {@link composeProjectName} needs: compose interpolates the model
 * with its `.env` itself.
 */
export function parseDotEnv(text: string): Record<string, string> {
  return { ...parseEnv(text) } as Record<string, string>;
}

/**
 * The project name compose uses: `-p`, else `COMPOSE_PROJECT_NAME` (environment, then the
 * project's `.env`), else the name of the first file's folder, normalised as compose does
 * (lowercase; only `a-z`, `0-9`, `_` and `-` kept; v2 also trims a leading `_` or `-`).
 * `dso down` needs it to find the DSO volumes `dso up` made, which compose labels with it.
 */
export function composeProjectName(options: {
  projectName?: string | undefined;
  env: NodeJS.ProcessEnv;
  dotEnv: Readonly<Record<string, string>>;
  firstFile: string;
}): string {
  const given =
    options.projectName ||
    options.env.COMPOSE_PROJECT_NAME ||
    options.dotEnv.COMPOSE_PROJECT_NAME ||
    basename(dirname(options.firstFile));
  return given
    .toLowerCase()
    .replace(/[^-_a-z0-9]/g, '')
    .replace(/^[-_]+/, '');
}

/** The compose name `dso up` gives a service's DSO volume (see {@link planComposeUp}). */
const DSO_VOLUME_NAME = /^dso-.+-[0-9a-f]{10}$/;

/**
 * Of a project's volumes, the DSO volumes `dso up` made: named by its rule and served by the
 * agent's volume driver (by any driver but `local` when the agent did not say which).
 */
export function dsoVolumesOf<T extends { driver: string; composeName: string }>(
  volumes: readonly T[],
  volumeDriver: string | undefined,
): T[] {
  return volumes.filter(
    (volume) =>
      DSO_VOLUME_NAME.test(volume.composeName) &&
      (volumeDriver === undefined ? volume.driver !== 'local' : volume.driver === volumeDriver),
  );
}

// ---------------------------------------------------------------------------------------------

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isScalar(value: unknown): value is string | number | boolean {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

function trimSlash(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.replace(/\/+$/, '') : path;
}

function sortKeys<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(
    Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
}

function invalidKey(key: string, problem: string): DsoError {
  return new DsoError(
    'DSO_CLI_COMPOSE_INVALID',
    `compose's merged model has ${key}, which ${problem}: check the compose file, then docker-compose config (or docker compose config) on its own`,
    { key },
  );
}

function badCommandLine(text: string, problem: string): DsoError {
  return new DsoError(
    'DSO_CLI_COMPOSE_INVALID',
    `the command line ${JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text)} ${problem}: fix it, or write it as a list`,
  );
}

/** Where compose looks for a project's files, from `cwd` up to the root (as compose does). */
export function composeSearchDirectories(cwd: string): string[] {
  const directories: string[] = [];
  let current = isAbsolute(cwd) ? cwd : resolve(cwd);
  for (;;) {
    directories.push(current);
    const parent = dirname(current);
    if (parent === current) return directories;
    current = parent;
  }
}
