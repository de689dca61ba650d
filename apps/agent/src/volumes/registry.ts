import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '@dso/core';

/** One mount of a DSO volume: the engine's mount id, and the folder the agent serves it from. */
export interface VolumeMountRecord {
  /**
   * The engine's mount id: Docker gives one per container that mounts the volume; Podman gives
   * one fixed id to every mount of every volume (it mounts a volume once and counts its users
   * itself), so a mount is known by its volume and id together, never by the id alone.
   */
  id: string;
  volume: string;
  /** The folder key under `volumes.root` (a digest of volume and mount id). */
  key: string;
  /** A digest of the names, references and versions last written (no value). */
  digest?: string;
  /**
   * How many times the engine mounted this id and has not unmounted it yet: besides a
   * container's start, `docker cp` and the like mount a running container's volumes again. The
   * files go at the last unmount.
   */
  refs: number;
}

/** What the registry keeps: volumes with their options (references, never values), and mounts. */
export interface VolumeRegistryState {
  volumes: Map<string, { options: Record<string, string>; createdAt: number }>;
  /** By the mount's folder key ({@link mountKey} of its volume and id). */
  mounts: Map<string, VolumeMountRecord>;
}

/** The most volumes or mounts the registry file may hold. */
const MAX_ENTRIES = 100_000;
const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
const MOUNT_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^[0-9a-f]{64}$/;

/** The folder key of a mount: the same on every start of the agent, and never a path. */
export function mountKey(volume: string, id: string): string {
  return createHash('sha256').update(`${volume}\0${id}`).digest('hex').slice(0, 40);
}

/** Whether a name is one the engine could give a volume (and safe to keep). */
export function isVolumeName(name: unknown): name is string {
  return typeof name === 'string' && VOLUME_NAME.test(name);
}

/** Whether an id is one the engine could give a mount. */
export function isMountId(id: unknown): id is string {
  return typeof id === 'string' && MOUNT_ID.test(id);
}

/**
 * Reads the registry file. Missing: empty. Malformed entries are dropped and reported through
 * `onProblem` (the engine asks for what it needs again: a volume it still has is created again
 * when a container uses it).
 */
export async function loadVolumeRegistry(
  path: string,
  onProblem: (problem: string, error?: unknown) => void,
): Promise<VolumeRegistryState> {
  const state: VolumeRegistryState = { volumes: new Map(), mounts: new Map() };
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') onProblem('unreadable', error);
    return state;
  }
  let parsed: { volumes?: unknown; mounts?: unknown };
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    onProblem('not JSON', error);
    return state;
  }
  for (const [name, entry] of Object.entries(asRecord(parsed.volumes)).slice(0, MAX_ENTRIES)) {
    const { options, createdAt } = asRecord(entry);
    const kept = Object.entries(asRecord(options)).filter(
      (pair): pair is [string, string] => typeof pair[1] === 'string',
    );
    if (isVolumeName(name)) {
      state.volumes.set(name, {
        options: Object.fromEntries(kept),
        createdAt: typeof createdAt === 'number' ? createdAt : 0,
      });
    }
  }
  for (const [name, entry] of Object.entries(asRecord(parsed.mounts)).slice(0, MAX_ENTRIES)) {
    const { volume, digest, refs } = asRecord(entry);
    // Files of earlier agents are keyed by the mount id and hold no `id` field.
    const id = asRecord(entry).id ?? name;
    if (!isMountId(id) || !isVolumeName(volume)) continue;
    const key = mountKey(volume, id);
    state.mounts.set(key, {
      id,
      volume,
      key,
      refs: typeof refs === 'number' && Number.isInteger(refs) && refs > 0 ? refs : 1,
      ...(typeof digest === 'string' && DIGEST.test(digest) ? { digest } : {}),
    });
  }
  return state;
}

/** Replaces the registry file atomically (0600, a temporary file then a rename). */
export async function saveVolumeRegistry(path: string, state: VolumeRegistryState): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const body = {
    version: 1,
    volumes: Object.fromEntries(state.volumes),
    mounts: Object.fromEntries(
      [...state.mounts.values()].map(({ id, volume, key, digest, refs }) => [
        key,
        { id, volume, refs, ...(digest === undefined ? {} : { digest }) },
      ]),
    ),
  };
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temporary, `${JSON.stringify(body)}\n`, { mode: 0o600 });
  await rename(temporary, path);
}

/** Writes the registry soon after a change (coalesced), never rejecting. */
export function createRegistrySaver(
  path: string | undefined,
  state: VolumeRegistryState,
  logger: Logger,
): { save(): Promise<void> } {
  let saving: Promise<void> = Promise.resolve();
  return {
    save() {
      if (path === undefined) return Promise.resolve();
      saving = saving
        .then(() => saveVolumeRegistry(path, state))
        .catch((error: unknown) => {
          logger.warn(
            { err: error, path },
            'could not save the volumes; tried again at the next change',
          );
        });
      return saving;
    },
  };
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}
