import { lstat } from 'node:fs/promises';

/**
 * Whether anything exists at `path` (a symlink counts, dangling or not). Used before an
 * exclusive create only to give a clearer error: the create itself is what guarantees no file is
 * replaced, and it reports any other problem (a path that cannot even be stat-ed reads as absent).
 */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    // Missing or not stat-able: the step that follows reports the real problem.
    return false;
  }
}
