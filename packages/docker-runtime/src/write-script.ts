import { DockerRuntimeError } from './errors.js';

/**
 * Exit codes of {@link WRITE_SCRIPT}, chosen above what sh and the usual tools return (1, 2,
 * 126, 127, 128+signal), so each maps to one error.
 */
export const WRITE_EXIT = {
  targetNotTmpfs: 80,
  noTar: 81,
  targetConflict: 82,
  userUnresolved: 83,
  stagingFailed: 84,
  commitFailed: 85,
  missingTool: 86,
  usage: 87,
  busy: 88,
} as const;

/**
 * The script one `docker exec` runs, as `sh -c WRITE_SCRIPT dso-write <target> <generation>
 * <mode> <owner> <name>...`. Its stdin is a tar of the files. Arguments are never secret: a path,
 * a generation id, octal mode bits, a user spec and file names. Busybox ash and POSIX sh;
 * needs tar, mkdir, chmod, chown, ln, mv (with -T) and rm in the image.
 *
 * Steps (the Kubernetes atomic_writer pattern):
 * 1. Checks: the target is a tmpfs mount point (last /proc/mounts entry at exactly that path),
 *    the tools exist; then the target's lock (`<target>/..lock`, a directory holding the
 *    writer's pid; one left by a process that is gone is taken over; exit 88 after 10 s): a
 *    write the runtime gave up on may still be running. Every name in the set is absent or a
 *    symlink to `..data/<name>` (anything else is refused, never replaced), and the owner
 *    resolves (numeric, else through /etc/passwd and /etc/group).
 * 2. Stage: extract stdin into a fresh `<target>/..dso_<generation>` (mode 0700 while it is
 *    filled), check every name arrived as a regular file, chown and chmod them, then open the
 *    directory to 0555 so the owner can traverse it.
 * 3. Commit: point `<target>/<name>` at `..data/<name>` for every name (a name new to the set
 *    dangles until the swap, exactly as if it did not exist yet), then swap `<target>/..data` to
 *    the new directory with a rename(2) of a fresh symlink over it (`mv -T`): atomic, so a
 *    reader resolves either the old set or the new one. The swap is the commit point.
 * 4. Clean up: remove the symlinks of names that old generations held and this set does not,
 *    and remove every older `..dso_*` directory. Failures here leave the new set live.
 * A failure before the swap removes the staging directory and the links it created and exits
 * non-zero, so the previous set stays exactly as it was.
 */
export const WRITE_SCRIPT = `
[ "$#" -ge 4 ] || { echo "dso: usage: target generation mode owner name..." >&2; exit 87; }
t=$1 gen=$2 mode=$3 owner=$4
shift 4
umask 077
fail() { code=$1; shift; echo "dso: $*" >&2; exit "$code"; }

[ -d "$t" ] || fail 80 "$t is not a directory"
fs=
while read -r _dev mnt type _rest || [ -n "$mnt" ]; do
  [ "$mnt" = "$t" ] && fs=$type
  mnt=
done < /proc/mounts
[ "$fs" = tmpfs ] || fail 80 "$t is not a tmpfs mount point (found: \${fs:-no mount})"
command -v tar >/dev/null 2>&1 || fail 81 "tar not found in the container"
for c in mkdir chmod chown ln mv rm; do
  command -v "$c" >/dev/null 2>&1 || fail 86 "$c not found in the container"
done

# One write at a time in a target, across execs: one the runtime gave up on (timeout, abort)
# may still be running. A lock left by a process that is gone is taken over.
lock=$t/..lock
tries=0
until mkdir "$lock" 2>/dev/null; do
  holder=$(cat "$lock/pid" 2>/dev/null)
  if [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; then rm -rf "$lock"; continue; fi
  tries=$((tries + 1))
  [ "$tries" -le 100 ] || fail 88 "another write into $t is still running"
  sleep 0.1
done
trap 'rm -rf "$lock"' EXIT
echo "$$" > "$lock/pid"

# Names are ours only as symlinks to ..data/<name>; anything else is refused, never replaced.
linked=/
have_readlink=
command -v readlink >/dev/null 2>&1 && have_readlink=1
for n; do
  if [ -L "$t/$n" ]; then
    if [ -n "$have_readlink" ]; then
      [ "$(readlink "$t/$n")" = "..data/$n" ] ||
        fail 82 "$t/$n is a symlink dso did not write"
      linked="$linked$n/"
    fi
  elif [ -e "$t/$n" ]; then
    fail 82 "$t/$n exists and is not a symlink written by dso"
  fi
done

case $owner in
  *:*) u=\${owner%%:*} g=\${owner#*:} ;;
  *) u=$owner g= ;;
esac
[ -n "$u" ] || u=0
uid= pgid=
if [ -r /etc/passwd ]; then
  while IFS=: read -r pn _px pu pg _rest || [ -n "$pn" ]; do
    case $u in
      *[!0-9]*) [ "$pn" = "$u" ] && { uid=$pu pgid=$pg; break; } ;;
      *) [ "$pu" = "$u" ] && { uid=$pu pgid=$pg; break; } ;;
    esac
    pn=
  done < /etc/passwd
fi
case $u in
  *[!0-9]*) [ -n "$uid" ] || fail 83 "user $u is not in /etc/passwd" ;;
  *) uid=$u ;;
esac
case $g in
  '') gid=\${pgid:-0} ;;
  *[!0-9]*)
    gid=
    if [ -r /etc/group ]; then
      while IFS=: read -r gn _gx gg _rest || [ -n "$gn" ]; do
        [ "$gn" = "$g" ] && { gid=$gg; break; }
        gn=
      done < /etc/group
    fi
    [ -n "$gid" ] || fail 83 "group $g is not in /etc/group" ;;
  *) gid=$g ;;
esac

d=$t/..dso_$gen
tmp=$t/..tmp_$gen
mkdir -m 700 "$d" || fail 84 "cannot create $d"
unstage() { code=$1; shift; cd / && chmod 700 "$d" 2>/dev/null; rm -rf "$d"; fail "$code" "$@"; }
tar -x -f - -C "$d" || unstage 84 "extracting the archive into $d failed"
cd "$d" || unstage 84 "cannot enter $d"
for n; do
  { [ -f "$n" ] && [ ! -L "$n" ]; } || unstage 84 "$n is missing from the archive"
done
if [ "$#" -gt 0 ]; then
  chown -- "$uid:$gid" "$@" || unstage 84 "chown $uid:$gid failed"
  chmod -- "$mode" "$@" || unstage 84 "chmod $mode failed"
fi
cd / || unstage 84 "cannot leave $d"
chmod 555 "$d" || unstage 84 "chmod 555 $d failed"

created=
unlink_created() { for c in $created; do rm -f "$t/$c"; done; rm -f "$tmp"; }
for n; do
  case $linked in *"/$n/"*) continue ;; esac
  [ -L "$t/$n" ] || created="$created $n"
  { ln -s "..data/$n" "$tmp" && mv -Tf "$tmp" "$t/$n"; } || {
    unlink_created; unstage 85 "linking $t/$n failed"
  }
done
{ ln -s "..dso_$gen" "$tmp" && mv -Tf "$tmp" "$t/..data"; } || {
  unlink_created; unstage 85 "swapping $t/..data failed"
}

for old in "$t"/..dso_*; do
  [ "$old" != "$d" ] && [ -d "$old" ] && [ ! -L "$old" ] || continue
  for f in "$old"/* "$old"/.[!.]*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    name=\${f##*/}
    keep=
    for n; do [ "$n" = "$name" ] && { keep=1; break; }; done
    [ -n "$keep" ] || { [ -L "$t/$name" ] && rm -f "$t/$name"; }
  done
  # The directory is 0555: without CAP_DAC_OVERRIDE (cap-drop ALL) even root must open it first.
  chmod 700 "$old" 2>/dev/null
  rm -rf "$old"
done
for stale in "$t"/..tmp_*; do
  [ -L "$stale" ] && rm -f "$stale"
done
exit 0
`;

/** What the exec reported, for {@link interpretWriteExit}. */
export interface WriteExit {
  exitCode: number;
  /** The tail of the exec's stderr (bounded); it holds paths and names, never file contents. */
  stderr: string;
  /** The tail of the exec's stdout (bounded); a runtime that cannot start sh reports here. */
  stdout: string;
  containerId: string;
  target: string;
}

/** Most stderr kept in an error's details. */
const MAX_DETAIL_STDERR = 4_096;

/**
 * Maps the write exec's exit code to a coded error, or `undefined` for success.
 */
export function interpretWriteExit(exit: WriteExit): DockerRuntimeError | undefined {
  const { exitCode, containerId, target } = exit;
  if (exitCode === 0) return undefined;
  const stderr = exit.stderr.slice(-MAX_DETAIL_STDERR);
  const reason = lastDsoLine(exit.stderr);
  const facts = { containerId, target, exitCode, stderr };
  switch (exitCode) {
    case WRITE_EXIT.targetNotTmpfs:
      return new DockerRuntimeError(
        'DSO_DOCKER_TARGET_NOT_TMPFS',
        `${target} in container ${containerId} is not a tmpfs: add --tmpfs ${target} (docker run) ` +
          'or a tmpfs mount (compose) so secret files stay in memory',
        facts,
      );
    case WRITE_EXIT.noTar:
      return new DockerRuntimeError(
        'DSO_DOCKER_NO_TAR',
        `container ${containerId} has no tar: the exec delivery path needs sh and tar in the image ` +
          '(busybox is enough)',
        facts,
      );
    case WRITE_EXIT.missingTool:
      return new DockerRuntimeError(
        'DSO_DOCKER_MISSING_TOOL',
        `container ${containerId} lacks a tool the exec delivery path needs (${reason ?? 'unknown'}): ` +
          'the image needs sh, tar, mkdir, chmod, chown, ln, mv and rm (busybox is enough)',
        facts,
      );
    case WRITE_EXIT.targetConflict:
      return new DockerRuntimeError(
        'DSO_DOCKER_TARGET_CONFLICT',
        `cannot write into ${target} in container ${containerId}: ${reason ?? 'a name is taken'}; ` +
          'remove it or choose another file name',
        facts,
      );
    case WRITE_EXIT.busy:
      return new DockerRuntimeError(
        'DSO_DOCKER_TARGET_BUSY',
        `another write into ${target} in container ${containerId} is still running (one the ` +
          'runtime gave up on after a timeout or abort); nothing was changed: retry shortly',
        facts,
      );
    case WRITE_EXIT.userUnresolved:
      return new DockerRuntimeError(
        'DSO_DOCKER_USER_UNRESOLVED',
        `cannot resolve the owner in container ${containerId}: ${reason ?? 'unknown user'}; ` +
          'run the container as a numeric uid:gid or pass owner explicitly',
        facts,
      );
    case 126:
    case 127:
      return new DockerRuntimeError(
        'DSO_DOCKER_NO_SHELL',
        `container ${containerId} has no usable sh: the exec delivery path needs sh and tar in the ` +
          'image (busybox is enough)',
        { ...facts, stdout: exit.stdout.slice(-MAX_DETAIL_STDERR) },
      );
    default: {
      const stage =
        exitCode === WRITE_EXIT.stagingFailed
          ? 'staging'
          : exitCode === WRITE_EXIT.commitFailed
            ? 'commit'
            : 'unknown';
      const kept = stage === 'unknown' ? '' : '; the previous set is unchanged';
      return new DockerRuntimeError(
        'DSO_DOCKER_EXEC_FAILED',
        `writing secret files into ${target} in container ${containerId} failed with exit code ` +
          `${exitCode}${reason === undefined ? '' : ` (${reason})`}${kept}`,
        { ...facts, stage },
      );
    }
  }
}

function lastDsoLine(stderr: string): string | undefined {
  const lines = stderr.split('\n').filter((line) => line.startsWith('dso: '));
  return lines.at(-1)?.slice('dso: '.length);
}
