// biome-ignore-all lint/suspicious/noTemplateCurlyInString: compose's own ${…} interpolation is what these tests are about
import { waitForSecretsCommand } from '@dso/core';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  type ComposeFile,
  composeProjectName,
  composeSearchDirectories,
  composeServiceViews,
  composeVersion,
  dsoVolumesOf,
  escapeCompose,
  extendedFiles,
  type ImageCommand,
  interpolate,
  parseComposeText,
  parseDotEnv,
  planComposeUp,
  renderOverride,
  servicesNeedingImage,
  splitCommandLine,
  variableFor,
} from './compose.js';

const CANARY = 'canary-compose-5f0c2a';
const WAIT = waitForSecretsCommand('/run/secrets', ['x']).slice(0, 4);
const WAIT_ESCAPED = WAIT.map(escapeCompose);

function file(text: string, path = '/project/compose.yaml'): ComposeFile {
  return parseComposeText(text, path);
}

function plan(text: string, images: Record<string, ImageCommand> = {}) {
  return planComposeUp(composeServiceViews([file(text)]), {
    images: new Map(Object.entries(images)),
  });
}

describe('parseComposeText', () => {
  it('reads a mapping, resolving anchors and merge keys', () => {
    const { document } = file(`
x-env: &env
  A: dso://app/a
services:
  web:
    image: app
    environment:
      <<: *env
      B: plain
`);
    expect(document).toEqual({
      'x-env': { A: 'dso://app/a' },
      services: { web: { image: 'app', environment: { A: 'dso://app/a', B: 'plain' } } },
    });
  });

  it('names the file, line and column of invalid YAML, without quoting the line', () => {
    const text = `services:\n  web:\n    image: app\n   environment: [${CANARY}\n`;
    let message = '';
    try {
      file(text);
    } catch (error) {
      expect(error).toMatchObject({ code: 'DSO_CLI_COMPOSE_INVALID' });
      message = (error as Error).message;
    }
    expect(message).toMatch(
      /^\/project\/compose\.yaml:4:\d+: not valid YAML \(.+\): fix the compose file$/,
    );
    expect(message).not.toContain(CANARY);
  });

  it('rejects a document that is not a mapping, or services that are not one', () => {
    expect(() => file('')).toThrow(
      expect.objectContaining({ message: expect.stringContaining('this one is empty') }),
    );
    expect(() => file('- a\n- b\n')).toThrow(
      expect.objectContaining({ message: expect.stringContaining('a list') }),
    );
    expect(() => file('services: [web]\n')).toThrow(
      expect.objectContaining({
        code: 'DSO_CLI_COMPOSE_INVALID',
        message:
          '/project/compose.yaml: services must be a mapping of service names to services: fix the compose file',
      }),
    );
  });

  it('refuses an alias bomb', () => {
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 12; i += 1) {
      lines.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10)
          .fill(`*${String.fromCharCode(96 + i)}`)
          .join(', ')}]`,
      );
    }
    expect(() => file(lines.join('\n'))).toThrow(
      expect.objectContaining({ code: 'DSO_CLI_COMPOSE_INVALID' }),
    );
  });
});

describe('composeServiceViews', () => {
  it('reads environment and labels in map and list form, and values of any scalar type', () => {
    const [view] = composeServiceViews([
      file(`
services:
  web:
    image: app:1
    environment:
      - A=dso://app/a
      - B=x=y
      - FROM_SHELL
    labels: [ "k=v", "empty" ]
    tmpfs: /tmp/
    volumes: [ "data:/data", "/anon", { type: tmpfs, target: /run/secrets } ]
    command: run it
`),
    ]);
    expect(view).toEqual({
      name: 'web',
      image: 'app:1',
      build: false,
      command: 'run it',
      environment: new Map([
        ['A', 'dso://app/a'],
        ['B', 'x=y'],
        ['FROM_SHELL', null],
      ]),
      labels: new Map([
        ['k', 'v'],
        ['empty', ''],
      ]),
      tmpfs: ['/tmp'],
      volumeTargets: ['/data', '/anon', '/run/secrets'],
    });
    const [other] = composeServiceViews([
      file(
        'services:\n  web:\n    environment: { N: 1, T: true, E: null }\n    labels: { n: 2 }\n',
      ),
    ]);
    expect(other?.environment).toEqual(
      new Map<string, string | null>([
        ['N', '1'],
        ['T', 'true'],
        ['E', null],
      ]),
    );
    expect(other?.labels).toEqual(new Map([['n', '2']]));
  });

  it('merges files in order: environment and labels by key, image/command/entrypoint replaced', () => {
    const views = composeServiceViews([
      file(`
services:
  web:
    image: app:1
    command: [a]
    entrypoint: [e]
    environment: [ "A=1", "B=2" ]
    labels: { k: "1" }
  db:
    image: db
`),
      file(
        `
services:
  web:
    image: app:2
    command: b c
    environment: { B: dso://app/b }
    labels: [ "k=2", "l=3" ]
    tmpfs: [ /x ]
`,
        '/project/override.yaml',
      ),
    ]);
    expect(views.map((view) => view.name)).toEqual(['db', 'web']);
    expect(views[1]).toMatchObject({
      image: 'app:2',
      command: 'b c',
      entrypoint: ['e'],
      environment: new Map([
        ['A', '1'],
        ['B', 'dso://app/b'],
      ]),
      labels: new Map([
        ['k', '2'],
        ['l', '3'],
      ]),
      tmpfs: ['/x'],
    });
  });

  it('follows extends in the same file and in another file', () => {
    const base = file(
      `
services:
  common:
    image: base
    entrypoint: [start]
    environment: { A: dso://app/a, B: one }
`,
      '/project/lib/base.yaml',
    );
    const main = file(`
services:
  local:
    extends: { service: web }
    environment: { C: three }
  web:
    extends:
      file: lib/base.yaml
      service: common
    environment: { B: two }
`);
    expect(extendedFiles([main])).toEqual(['/project/lib/base.yaml']);
    const views = composeServiceViews([main], [base]);
    expect(views.find((view) => view.name === 'web')).toMatchObject({
      name: 'web',
      image: 'base',
      entrypoint: ['start'],
      environment: new Map([
        ['A', 'dso://app/a'],
        ['B', 'two'],
      ]),
    });
    expect(views.find((view) => view.name === 'local')?.environment).toEqual(
      new Map([
        ['A', 'dso://app/a'],
        ['B', 'two'],
        ['C', 'three'],
      ]),
    );
  });

  it('rejects an extends circle, a missing service or a file it was not given', () => {
    expect(() =>
      composeServiceViews([file('services:\n  a: { extends: b }\n  b: { extends: a }\n')]),
    ).toThrow(
      expect.objectContaining({
        code: 'DSO_CLI_COMPOSE_INVALID',
        message: expect.stringContaining('goes round in a circle'),
      }),
    );
    expect(() => composeServiceViews([file('services:\n  a: { extends: nope }\n')])).toThrow(
      expect.objectContaining({ message: expect.stringContaining('names the service nope') }),
    );
    expect(() =>
      composeServiceViews([file('services:\n  a: { extends: { file: x.yaml, service: b } }\n')]),
    ).toThrow(
      expect.objectContaining({
        message: expect.stringContaining('/project/x.yaml, which cannot be read'),
      }),
    );
  });

  it('rejects keys of the wrong shape, naming them', () => {
    expect(() => composeServiceViews([file('services:\n  web:\n    environment: 3\n')])).toThrow(
      '/project/compose.yaml: services.web.environment must be a mapping or a list of NAME=value: fix the compose file',
    );
    expect(() => composeServiceViews([file('services:\n  web:\n    command: { a: 1 }\n')])).toThrow(
      'services.web.command must be a string or a list of strings',
    );
    expect(() =>
      composeServiceViews([file('services:\n  web:\n    environment: { A: [1] }\n')]),
    ).toThrow('services.web.environment.A must be a string, a number or a boolean');
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

  it('needs the image only for services with files and no entrypoint', () => {
    const views = composeServiceViews([
      file(`
services:
  a: { image: app, environment: { K: dsofile://x } }
  b: { image: app, command: [x], environment: { K: dsofile://x } }
  c: { image: app, entrypoint: [x], environment: { K: dsofile://x } }
  d: { build: ., environment: [ "K=dsofile://x" ] }
  e: { image: app, environment: { K: dso://x } }
`),
    ]);
    expect(servicesNeedingImage(views)).toEqual([
      { service: 'a', image: 'app', build: false },
      { service: 'b', image: 'app', build: false },
      { service: 'd', image: undefined, build: true },
    ]);
    expect(() => planComposeUp(views)).toThrow(
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

  it('takes the version from the first file that has one', () => {
    expect(composeVersion([file('services: {}\n'), file('version: "2.4"\nservices: {}\n')])).toBe(
      '2.4',
    );
    expect(composeVersion([file('services: {}\n')])).toBeUndefined();
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

  it('interpolates like compose, and names an unset variable', () => {
    const variables = { TAG: '1.2', EMPTY: '' };
    expect(interpolate('app:${TAG}', variables)).toEqual({ value: 'app:1.2' });
    expect(interpolate('app:$TAG-x', variables)).toEqual({ value: 'app:1.2-x' });
    expect(interpolate('a$$b', variables)).toEqual({ value: 'a$b' });
    expect(interpolate('${NOPE:-d}/${EMPTY:-e}/${EMPTY-f}', variables)).toEqual({ value: 'd/e/' });
    expect(interpolate('app:${NOPE}', variables)).toEqual({ missing: 'NOPE' });
    expect(interpolate('app:${EMPTY:?set it}', variables)).toEqual({ missing: 'EMPTY' });
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
