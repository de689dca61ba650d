// biome-ignore-all lint/suspicious/noTemplateCurlyInString: compose's own ${…} interpolation is what these tests are about
import { waitForSecretsCommand } from '@dso/core';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  activeServices,
  composeProjectName,
  composeSearchDirectories,
  dsoVolumesOf,
  escapeCompose,
  type ImageCommand,
  parseDotEnv,
  planComposeUp,
  readComposeModel,
  renderOverride,
  servicesNeedingImage,
  splitCommandLine,
  variableFor,
} from './compose.js';

const CANARY = 'canary-compose-5f0c2a';
const WAIT = waitForSecretsCommand('/run/secrets', ['x']).slice(0, 4);
const WAIT_ESCAPED = WAIT.map(escapeCompose);

/** The services of a model: the compose-file-shaped YAML of these tests is one. */
function views(text: string) {
  return readComposeModel(text).services;
}

function plan(text: string, images: Record<string, ImageCommand> = {}) {
  return planComposeUp(views(text), {
    images: new Map(Object.entries(images)),
  });
}

// Captured from the real tool: `docker-compose -f compose.yaml -f compose.override.yaml config`
// (docker-compose 1.29.2, Debian 12) for a project whose compose.yaml extends a service of
// base.yaml (`entrypoint: [/bin/sh, -c]`, `TOKEN: dso://app/api/token`, `labels: [team=core]`),
// gives `command: echo "$$HOME"`, `DB_PASSWORD_FILE: ${DB_REF:-dsofile://app/db/password}`,
// `FROM_SHELL:` and `PRICE: 5$$`, and has a `debug` service (`image: busybox:${TAG}`,
// `profiles: [debug]`); compose.override.yaml adds `EXTRA: "2"`; .env says `TAG=1.36`.
const V1_MODEL = `services:
  debug:
    environment:
      "N": '1'
    image: busybox:1.36
    profiles:
    - debug
  web:
    command: echo "$$HOME"
    entrypoint:
    - /bin/sh
    - -c
    environment:
      DB_PASSWORD_FILE: dsofile://app/db/password
      EXTRA: '2'
      FROM_SHELL: null
      PRICE: 5$$
      TOKEN: dso://app/api/token
    image: busybox:1
    labels:
      team: core
    tmpfs:
    - /tmp/
    volumes:
    - data:/data:rw
    - target: /run/secrets
      type: tmpfs
version: '3.9'
volumes:
  data: {}
`;

// The same project in the shape Compose v2 prints with `config --format json` (lists for
// command and entrypoint, long-form volumes, no version). Written by hand after Compose v2's
// documented output: this machine has docker-compose 1.29 only.
const V2_MODEL = JSON.stringify({
  name: 'cap',
  services: {
    web: {
      command: ['echo', '$$HOME'],
      entrypoint: ['/bin/sh', '-c'],
      environment: {
        DB_PASSWORD_FILE: 'dsofile://app/db/password',
        EXTRA: '2',
        FROM_SHELL: null,
        PRICE: '5$$',
        TOKEN: 'dso://app/api/token',
      },
      image: 'busybox:1',
      labels: { team: 'core' },
      tmpfs: ['/tmp/'],
      volumes: [
        { type: 'volume', source: 'data', target: '/data' },
        { type: 'tmpfs', target: '/run/secrets' },
      ],
      networks: { default: null },
    },
  },
  volumes: { data: { name: 'cap_data' } },
});

describe('readComposeModel', () => {
  it("reads docker-compose 1.29's config output: merged, extended, interpolated, $$ undoubled", () => {
    const model = readComposeModel(V1_MODEL);
    expect(model.version).toBe('3.9');
    expect(model.volumes).toEqual({ data: {} });
    expect(model.services.map(({ name }) => name)).toEqual(['debug', 'web']);
    expect(model.services[1]).toEqual({
      name: 'web',
      image: 'busybox:1',
      build: false,
      command: 'echo "$HOME"',
      entrypoint: ['/bin/sh', '-c'],
      environment: new Map([
        ['DB_PASSWORD_FILE', 'dsofile://app/db/password'],
        ['EXTRA', '2'],
        ['FROM_SHELL', null],
        ['PRICE', '5$'],
        ['TOKEN', 'dso://app/api/token'],
      ]),
      labels: new Map([['team', 'core']]),
      tmpfs: ['/tmp'],
      volumeTargets: ['/data', '/run/secrets'],
      profiles: [],
    });
    expect(model.services[0]).toMatchObject({
      image: 'busybox:1.36',
      profiles: ['debug'],
      environment: new Map([['N', '1']]),
    });
  });

  it("reads Compose v2's JSON model the same way", () => {
    const [web] = readComposeModel(V2_MODEL).services;
    const [, fromV1] = readComposeModel(V1_MODEL).services;
    expect(web).toEqual({ ...fromV1, command: ['echo', '$HOME'] });
    expect(readComposeModel(V2_MODEL).version).toBeUndefined();
  });

  it('reads list-form environment and labels, and scalars of any type', () => {
    const [web] = views(
      'services:\n  web:\n    environment: [ "A=x=y", "B" ]\n    labels: [ "k=v", "empty" ]\n',
    );
    expect(web?.environment).toEqual(
      new Map<string, string | null>([
        ['A', 'x=y'],
        ['B', null],
      ]),
    );
    expect(web?.labels).toEqual(
      new Map([
        ['k', 'v'],
        ['empty', ''],
      ]),
    );
    const [other] = views('services:\n  web:\n    environment: { N: 1, T: true }\n');
    expect(other?.environment).toEqual(
      new Map([
        ['N', '1'],
        ['T', 'true'],
      ]),
    );
  });

  it('refuses output that is no model, and keys of a shape compose would not print', () => {
    for (const text of ['{ not json', '- a list\n', 'services: [ web ]\n']) {
      expect(() => readComposeModel(text)).toThrow(
        expect.objectContaining({
          code: 'DSO_CLI_COMPOSE_INVALID',
          message: expect.stringContaining('runs on its own'),
        }),
      );
    }
    expect(() => readComposeModel('services:\n  web:\n    environment: { A: [1] }\n')).toThrow(
      expect.objectContaining({
        code: 'DSO_CLI_COMPOSE_INVALID',
        message: expect.stringContaining('services.web.environment.A'),
      }),
    );
  });
});

describe('activeServices', () => {
  const services = readComposeModel(`
services:
  always: {}
  debug: { profiles: [ debug ] }
  tools: { profiles: [ tools, debug ] }
  once: { profiles: [ once ] }
`).services;
  const names = (options: Parameters<typeof activeServices>[1]) =>
    activeServices(services, options).map(({ name }) => name);

  it('keeps services without profiles, those with an active profile, and those named', () => {
    expect(names({ profiles: [] })).toEqual(['always']);
    expect(names({ profiles: ['debug'] })).toEqual(['always', 'debug', 'tools']);
    expect(names({ profiles: ['tools'], named: ['once'] })).toEqual(['always', 'once', 'tools']);
    expect(names({ profiles: ['*'] })).toEqual(['always', 'debug', 'once', 'tools']);
  });
});

describe('planComposeUp: dso:// environment values', () => {
  it('puts ${DSO_UP_<hash>} in place of the reference and labels the reference, in map form', () => {
    const result = plan(`
services:
  web:
    image: app
    environment:
      DB_PASSWORD: dso://app/db#password
      PLAIN: ${CANARY}
      FROM_VAR: \${HOME}/x
`);
    const carrier = variableFor('dso://app/db#password');
    expect(carrier).toMatch(/^DSO_UP_[0-9A-F]{16}$/);
    expect(result.variables).toEqual([{ name: carrier, reference: 'dso://app/db#password' }]);
    expect(result.override).toEqual({
      services: {
        web: {
          environment: { DB_PASSWORD: `\${${carrier}}` },
          labels: { 'dso.enable': 'true', 'dso.env.DB_PASSWORD': 'dso://app/db#password' },
        },
      },
    });
    // Nothing else of the service is repeated: compose reads the user's file for it.
    const text = renderOverride(result);
    expect(text).not.toContain(CANARY);
    expect(text).not.toContain('HOME');
    expect(result.services).toEqual([
      {
        name: 'web',
        files: [],
        env: [{ variable: 'DB_PASSWORD', reference: 'dso://app/db#password', carrier }],
        labels: { 'dso.enable': 'true', 'dso.env.DB_PASSWORD': 'dso://app/db#password' },
        waits: false,
        commandFromImage: false,
      },
    ]);
  });

  it('reads list-form environment, and shares one variable between services using one reference', () => {
    const result = plan(`
services:
  a:
    image: app
    environment: [ "TOKEN=dso://vault:team/token", "OTHER=1" ]
  b:
    image: app
    environment: [ "API_TOKEN=dso://vault:team/token" ]
`);
    const carrier = variableFor('dso://vault:team/token');
    expect(result.variables).toEqual([{ name: carrier, reference: 'dso://vault:team/token' }]);
    expect(result.override.services.a?.environment).toEqual({ TOKEN: `\${${carrier}}` });
    expect(result.override.services.b?.environment).toEqual({ API_TOKEN: `\${${carrier}}` });
  });

  it('leaves services without references out', () => {
    const result = plan(
      'services:\n  web:\n    image: app\n    environment: { A: "x", B: null }\n  db: {}\n',
    );
    expect(result).toEqual({ override: { services: {} }, variables: [], services: [] });
  });
});

describe('planComposeUp: dsofile:// environment values', () => {
  it('makes the value the file path, labels it, adds a tmpfs and wraps the entrypoint', () => {
    const result = plan(`
services:
  web:
    image: app
    entrypoint: [/app/start, --port, "$$PORT"]
    command: serve
    environment:
      DB_PASSWORD_FILE: dsofile://app/db/password
`);
    expect(result.override.services.web).toEqual({
      tmpfs: ['/run/secrets'],
      entrypoint: [...WAIT_ESCAPED, '/app/start', '--port', '$$PORT'],
      environment: { DB_PASSWORD_FILE: '/run/secrets/db_password_file' },
      labels: {
        'dso.enable': 'true',
        'dso.file.db_password_file': 'dsofile://app/db/password',
        'dso.target': '/run/secrets',
      },
    });
    // The script is escaped for compose: every "$" doubled, so compose passes it on literally.
    const script = (
      (result.override.services.web as Record<string, unknown>).entrypoint as string[]
    )[2] as string;
    expect(script).toContain('$$0/..data');
    expect(script).not.toMatch(/(^|[^$])\$[^$]/);
    expect(result.services[0]).toMatchObject({ waits: true, commandFromImage: false });
    expect(result.variables).toEqual([]);
  });

  it("writes the image's entrypoint and command out when the service gives neither", () => {
    const result = plan(
      'services:\n  web:\n    image: app\n    environment: { KEY: dsofile://app/key }\n',
      {
        web: { entrypoint: ['/init'], cmd: ['echo', '$HOME'] },
      },
    );
    expect(result.override.services.web).toMatchObject({
      entrypoint: [...WAIT_ESCAPED, '/init'],
      command: ['echo', '$$HOME'],
    });
    expect(result.services[0]?.commandFromImage).toBe(true);
  });

  it("keeps the service's command and puts the image's entrypoint after the wait", () => {
    const result = plan(
      'services:\n  web:\n    image: app\n    command: ["serve"]\n    environment: { KEY: dsofile://app/key }\n',
      { web: { entrypoint: ['docker-entrypoint.sh'], cmd: ['ignored'] } },
    );
    expect(result.override.services.web?.entrypoint).toEqual([
      ...WAIT_ESCAPED,
      'docker-entrypoint.sh',
    ]);
    expect(result.override.services.web).not.toHaveProperty('command');
  });

  it('splits a string entrypoint the way compose does', () => {
    const result = plan(
      `services:\n  web:\n    image: app\n    entrypoint: /bin/sh -c 'echo "a b"; sleep 1'\n    environment: { KEY: dsofile://app/key }\n`,
    );
    expect(result.override.services.web?.entrypoint).toEqual([
      ...WAIT_ESCAPED,
      '/bin/sh',
      '-c',
      'echo "a b"; sleep 1',
    ]);
  });

  it("doubles every $ of the model's entrypoint again, so compose reads it as the literal it is", () => {
    const result = plan(
      'services:\n  web:\n    image: app\n    entrypoint: [ sh, -c, "echo $$HOME" ]\n    environment: { KEY: dsofile://app/key }\n',
    );
    expect(result.override.services.web?.entrypoint).toEqual([
      ...WAIT_ESCAPED,
      'sh',
      '-c',
      'echo $$HOME',
    ]);
  });

  it('needs the image only for services with files and no entrypoint', () => {
    const services = views(`
services:
  a: { image: app, environment: { K: dsofile://x } }
  b: { image: app, command: [x], environment: { K: dsofile://x } }
  c: { image: app, entrypoint: [x], environment: { K: dsofile://x } }
  d: { build: ., environment: [ "K=dsofile://x" ] }
  e: { image: app, environment: { K: dso://x } }
`);
    expect(servicesNeedingImage(services)).toEqual([
      { service: 'a', image: 'app', build: false },
      { service: 'b', image: 'app', build: false },
      { service: 'd', image: undefined, build: true },
    ]);
    expect(() => planComposeUp(services)).toThrow(
      expect.objectContaining({ code: 'DSO_CLI_UP_NO_COMMAND' }),
    );
  });

  it('refuses a service with nothing to run', () => {
    expect(() =>
      plan('services:\n  web:\n    image: app\n    environment: { K: dsofile://x }\n', {
        web: { entrypoint: [], cmd: [] },
      }),
    ).toThrow(
      expect.objectContaining({
        code: 'DSO_CLI_UP_NO_COMMAND',
        message: expect.stringContaining('give it a command'),
      }),
    );
  });

  it("uses the service's own dso.target, and adds no tmpfs where one or a volume is already mounted", () => {
    const own = plan(`
services:
  web:
    image: app
    entrypoint: [x]
    labels: { dso.target: /secrets, dso.mode: "0440" }
    tmpfs: [ "/secrets:uid=1000" ]
    environment: { KEY: dsofile://app/key }
`);
    expect(own.override.services.web).toMatchObject({
      environment: { KEY: '/secrets/key' },
      labels: { 'dso.enable': 'true', 'dso.file.key': 'dsofile://app/key' },
    });
    expect(own.override.services.web).not.toHaveProperty('tmpfs');
    expect(((own.override.services.web as Record<string, unknown>).entrypoint as string[])[3]).toBe(
      '/secrets',
    );
    const volume = plan(`
services:
  web:
    image: app
    entrypoint: [x]
    volumes: [ "/var/run/dso/web:/run/secrets:ro" ]
    environment: { KEY: dsofile://app/key }
`);
    expect(volume.override.services.web).not.toHaveProperty('tmpfs');
  });

  it('mixes both kinds in one service', () => {
    const result = plan(`
services:
  web:
    image: app
    entrypoint: [x]
    environment: [ "A_FILE=dsofile://app/a", "B=dso://app/b" ]
`);
    expect(result.override.services.web).toMatchObject({
      environment: { A_FILE: '/run/secrets/a_file', B: `\${${variableFor('dso://app/b')}}` },
      labels: {
        'dso.enable': 'true',
        'dso.env.B': 'dso://app/b',
        'dso.file.a_file': 'dsofile://app/a',
        'dso.target': '/run/secrets',
      },
    });
  });
});

describe('planComposeUp: errors', () => {
  it('keeps labels the service already has with the same value, and refuses different ones', () => {
    const same = plan(
      'services:\n  web:\n    image: app\n    labels: [ "dso.enable=true", "dso.env.A=dso://app/a" ]\n    environment: { A: dso://app/a }\n',
    );
    expect(same.override.services.web?.labels).toEqual({});
    expect(() =>
      plan(
        'services:\n  web:\n    image: app\n    labels: { dso.env.A: dso://app/other }\n    environment: { A: dso://app/a }\n',
      ),
    ).toThrow(
      expect.objectContaining({
        code: 'DSO_CLI_UP_CONFLICT',
        message:
          'service web has the label dso.env.A="dso://app/other", but dso up must set it to "dso://app/a" for the references in its environment: remove the label (dso up writes it)',
      }),
    );
    expect(() =>
      plan(
        'services:\n  web:\n    image: app\n    labels: { dso.enable: "false" }\n    environment: { A: dso://app/a }\n',
      ),
    ).toThrow(expect.objectContaining({ code: 'DSO_CLI_UP_CONFLICT' }));
  });

  it('names the service and variable of a malformed reference', () => {
    expect(() =>
      plan('services:\n  web:\n    image: app\n    environment: { A: "dso://app//x" }\n'),
    ).toThrow(
      expect.objectContaining({
        code: 'DSO_REFERENCE_INVALID',
        message: expect.stringMatching(
          /^service web, environment A: invalid secret reference "dso:\/\/app\/\/x"/,
        ),
      }),
    );
  });

  it('refuses a variable whose lowercased name is no file name, or two that make one', () => {
    expect(() =>
      plan(
        'services:\n  web:\n    image: app\n    entrypoint: [x]\n    environment: { "..A": dsofile://app/a }\n',
      ),
    ).toThrow(
      expect.objectContaining({
        code: 'DSO_CLI_UP_FILE_NAME',
        message: expect.stringContaining('starts with ".."'),
      }),
    );
    expect(() =>
      plan(
        'services:\n  web:\n    image: app\n    entrypoint: [x]\n    environment: { Key: dsofile://app/a, KEY: dsofile://app/b }\n',
      ),
    ).toThrow(
      expect.objectContaining({
        code: 'DSO_CLI_UP_FILE_NAME',
        message: expect.stringContaining('both make the file key'),
      }),
    );
  });

  it("checks the labels together against the contract (the service's own included)", () => {
    expect(() =>
      plan(
        'services:\n  web:\n    image: app\n    entrypoint: [x]\n    labels: { dso.mode: "999" }\n    environment: { K: dsofile://app/k }\n',
      ),
    ).toThrow(
      expect.objectContaining({
        code: 'DSO_LABEL_INVALID',
        message: expect.stringMatching(/^service web: label dso\.mode/),
      }),
    );
  });
});

describe('renderOverride', () => {
  const result = plan(`
services:
  web:
    image: app
    entrypoint: [x]
    environment: { K_FILE: dsofile://app/k, TOKEN: dso://app/token }
`);

  it('writes YAML that reads back as the override, with the version given', () => {
    const text = renderOverride(result, { version: '3.8' });
    expect(parse(text)).toEqual({ version: '3.8', ...result.override });
    // The wait script stays on one line.
    expect(text.split('\n').filter((line) => line.includes('..data'))).toHaveLength(1);
  });

  it('shows <dso:reference> in place of each ${DSO_UP_…} for a dry run', () => {
    const text = renderOverride(result, { dryRun: true });
    expect(parse(text).services.web.environment).toEqual({
      K_FILE: '/run/secrets/k_file',
      TOKEN: '<dso:dso://app/token>',
    });
    expect(text).not.toContain('DSO_UP_');
  });
});

describe("compose's text rules", () => {
  it('splits command lines like shlex', () => {
    expect(splitCommandLine('a  b\tc')).toEqual(['a', 'b', 'c']);
    expect(splitCommandLine(`sh -c 'echo "$x"; exit 1'`)).toEqual([
      'sh',
      '-c',
      'echo "$x"; exit 1',
    ]);
    expect(splitCommandLine('echo "a \\" \\\\ \\n"')).toEqual(['echo', 'a " \\ \\n']);
    expect(splitCommandLine('a\\ b "" c')).toEqual(['a b', '', 'c']);
    expect(splitCommandLine('  ')).toEqual([]);
    expect(() => splitCommandLine('echo "x')).toThrow(
      expect.objectContaining({ code: 'DSO_CLI_COMPOSE_INVALID' }),
    );
    expect(() => splitCommandLine('echo \\')).toThrow('ends with a backslash');
  });

  it('reads .env files', () => {
    expect(parseDotEnv('# c\nTAG=1.2\nexport A="x y"\nB=\'z\'\nC=v # note\nbad\n')).toEqual({
      TAG: '1.2',
      A: 'x y',
      B: 'z',
      C: 'v',
    });
  });

  it('reads .env files with util.parseEnv: a multi-line double-quoted value and an escaped newline', () => {
    expect(parseDotEnv('KEY="line one\nline two"\nM="a\\nb"\n')).toEqual({
      KEY: 'line one\nline two',
      M: 'a\nb',
    });
  });

  it('names the project as compose does: -p, COMPOSE_PROJECT_NAME from the environment then .env, else the folder, normalised', () => {
    const base = { env: {}, dotEnv: {}, firstFile: '/srv/My App.v2/compose.yaml' };
    expect(composeProjectName(base)).toBe('myappv2');
    expect(composeProjectName({ ...base, dotEnv: { COMPOSE_PROJECT_NAME: 'fromdotenv' } })).toBe(
      'fromdotenv',
    );
    expect(
      composeProjectName({
        ...base,
        env: { COMPOSE_PROJECT_NAME: 'FromEnv' },
        dotEnv: { COMPOSE_PROJECT_NAME: 'fromdotenv' },
      }),
    ).toBe('fromenv');
    expect(composeProjectName({ ...base, projectName: '_given-1' })).toBe('given-1');
  });

  it("picks dso up's volumes among a project's: its names, on the agent's driver", () => {
    const volumes = [
      { name: 'p_dso-web-0123456789', driver: 'dso', composeName: 'dso-web-0123456789' },
      { name: 'p_data', driver: 'local', composeName: 'data' },
      { name: 'p_dso-notes', driver: 'local', composeName: 'dso-notes' },
      { name: 'p_dso-x-abcdefabcd', driver: 'other', composeName: 'dso-x-abcdefabcd' },
    ];
    expect(dsoVolumesOf(volumes, 'dso').map(({ name }) => name)).toEqual(['p_dso-web-0123456789']);
    expect(dsoVolumesOf(volumes, undefined).map(({ name }) => name)).toEqual([
      'p_dso-web-0123456789',
      'p_dso-x-abcdefabcd',
    ]);
  });

  it('escapes every $ for compose', () => {
    expect(escapeCompose('a$b$$c')).toBe('a$$b$$$$c');
  });

  it('lists the folders compose searches, up to the root', () => {
    expect(composeSearchDirectories('/a/b')).toEqual(['/a/b', '/a', '/']);
  });
});
