import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * What was last delivered to one run of a container: digests of names, references and
 * versions (never a value, and nothing a value could be recovered from), and the run's start.
 */
export interface DeliveredState {
  digest: string;
  envDigest: string;
  startedAt: string;
  /**
   * When it was delivered, ms since the epoch (the store stamps it): what `dso status` says of
   * a delivery made before an agent restart. Absent in files of older agents.
   */
  deliveredAt?: number;
  /**
   * A keyed digest of the files' values (the delivered store's `valuesDigestOf`, a
   * key that lives only in memory): a new version with the same values needs no rotation
   * action. Never written to the state file.
   */
  valuesDigest?: string;
}

const DIGEST = /^[0-9a-f]{64}$/;
const CONTAINER_ID = /^[0-9a-f]{12,64}$/;
/** The latest time JavaScript can represent (year 275760): a `deliveredAt` past it is not one. */
const MAX_EPOCH_MS = 8.64e15;
/** Most containers kept in the file: far past what one engine runs. */
const MAX_CONTAINERS = 100_000;

/**
 * Reads the agent's delivered-state file: container id → {@link DeliveredState}. A missing
 * file is an empty state; an unreadable or malformed one too (it only saves work: the agent then
 * treats every container as seen for the first time and rotates nothing), reported through
 * `onProblem`.
 */
export async function loadDeliveredState(
  path: string,
  onProblem: (problem: string, error?: unknown) => void,
): Promise<Map<string, DeliveredState>> {
  const state = new Map<string, DeliveredState>();
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') onProblem('unreadable', error);
    return state;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    onProblem('not JSON', error);
    return state;
  }
  const containers = (parsed as { containers?: unknown })?.containers;
  if (typeof containers !== 'object' || containers === null || Array.isArray(containers)) {
    onProblem('no containers mapping');
    return state;
  }
  for (const [id, entry] of Object.entries(containers)) {
    if (state.size >= MAX_CONTAINERS) break;
    const { digest, envDigest, startedAt, deliveredAt } = (entry ?? {}) as Record<string, unknown>;
    if (
      CONTAINER_ID.test(id) &&
      typeof digest === 'string' &&
      DIGEST.test(digest) &&
      typeof envDigest === 'string' &&
      envDigest.length <= 65_536 &&
      typeof startedAt === 'string' &&
      startedAt.length <= 64
    ) {
      state.set(id, {
        digest,
        envDigest,
        startedAt,
        // A time that is not one is dropped, the rest of the entry kept.
        ...(typeof deliveredAt === 'number' &&
        Number.isSafeInteger(deliveredAt) &&
        deliveredAt >= 0 &&
        deliveredAt <= MAX_EPOCH_MS
          ? { deliveredAt }
          : {}),
      });
    }
  }
  return state;
}

/**
 * Replaces the file with `state`, atomically (a temporary file in the same folder, 0600, then
 * a rename): a crash leaves the previous file or the new one, never half of one.
 */
export async function saveDeliveredState(
  path: string,
  state: Iterable<[string, DeliveredState]>,
): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const containers: Record<string, DeliveredState> = {};
  // Not the values' digest: it stays in memory (its key does).
  for (const [id, { digest, envDigest, startedAt, deliveredAt }] of state) {
    containers[id] = {
      digest,
      envDigest,
      startedAt,
      ...(deliveredAt === undefined ? {} : { deliveredAt }),
    };
  }
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temporary, `${JSON.stringify({ version: 1, containers })}\n`, { mode: 0o600 });
  await rename(temporary, path);
}
