import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createVolumeFolders } from './folders.js';

let base: string;
let victim: string;
const owner = { uid: 0, gid: 0 };
const text = (value: string) => new TextEncoder().encode(value);

beforeEach(() => {
  // /dev/shm is a tmpfs: no mount is needed for the root, and the view's bind mount is the
  // fake command's (recorded, not made), so the test needs no privilege beyond its files.
  base = mkdtempSync('/dev/shm/dso-volume-folders-test-');
  victim = join(base, 'victim');
  mkdirSync(join(victim, 'sub'), { recursive: true });
  writeFileSync(join(victim, 'keep'), 'victim data', { mode: 0o644 });
  chmodSync(victim, 0o751);
});

afterEach(() => {
  rmSync(base, { recursive: true, force: true });
});

function victimState(): string[] {
  return [victim, join(victim, 'keep'), join(victim, 'sub')].map((path) => {
    const stats = lstatSync(path);
    const content = stats.isFile() ? readFileSync(path, 'utf8') : '';
    return `${path} ${(stats.mode & 0o7777).toString(8)} ${content}`;
  });
}

async function folders() {
  const commands: string[][] = [];
  const made = await createVolumeFolders({
    root: join(base, 'volumes'),
    tmpfsSize: 1 << 20,
    command: async (_file, args) => {
      commands.push(args);
    },
    mountTable: () => '',
  });
  return { folders: made, commands };
}

describe('createVolumeFolders', () => {
  it('keeps its root 0700 and root-owned, with the view mounted read-only over the data', async () => {
    const { folders: made, commands } = await folders();
    const root = join(base, 'volumes');
    expect(lstatSync(root).mode & 0o777).toBe(0o700);
    expect(lstatSync(join(root, 'data')).uid).toBe(process.geteuid?.());
    expect(commands).toEqual([
      ['--bind', '-o', 'ro,nosuid,nodev,noexec', join(root, 'data'), join(root, 'view')],
    ]);
    expect(await made.publish('m1')).toBe(join(root, 'view', 'm1'));
    expect(made.keyOf(join(root, 'view', 'm1'))).toBe('m1');
    expect(made.keyOf(join(root, 'view', '..', 'data', 'm1'))).toBeUndefined();
  });

  it('never follows a link planted in a mount folder when writing or removing it', async () => {
    const { folders: made } = await folders();
    const before = victimState();
    made.write('m1', { files: [{ name: 'db', content: text('v1') }], owner });
    const folder = join(base, 'volumes', 'data', 'm1');
    // What a container could plant were its view writable: links to a host folder of its choice.
    symlinkSync(victim, join(folder, '..dso_1_planted'));
    expect(() => made.write('m1', { files: [{ name: 'db', content: text('v2') }], owner })).toThrow(
      expect.objectContaining({ code: 'DSO_DOCKER_HOST_PATH_TAMPERED' }),
    );
    await made.remove('m1');
    expect(existsSync(folder)).toBe(false);
    symlinkSync(victim, join(base, 'volumes', 'data', 'm2'));
    await made.remove('m2');
    expect(made.keys()).toEqual([]);
    expect(readdirSync(victim).sort()).toEqual(['keep', 'sub']);
    expect(victimState()).toEqual(before);
  });
});
