import { MAX_OWNER_ID } from '@dso/core';
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
  tampered: 89,
  targetReadOnly: 90,
  targetNotWritable: 91,
  noCapChown: 92,
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
# Stdin is read to its end before any exit: Podman's exec drops the output of a process that
# exits with its stdin unread (its attach connection is reset), and the output says why.
drain() {
  if command -v cat >/dev/null 2>&1; then cat >/dev/null 2>&1
  else while IFS= read -r _l; do :; done 2>/dev/null; fi
}
fail() { code=$1; shift; echo "dso: $*" >&2; drain; exit "$code"; }

[ -d "$t" ] || fail 80 "$t is not a directory"
fs= fsopts=
while read -r _dev mnt type opts _rest || [ -n "$mnt" ]; do
  [ "$mnt" = "$t" ] && fs=$type fsopts=$opts
  mnt=
done < /proc/mounts
[ "$fs" = tmpfs ] || fail 80 "$t is not a tmpfs mount point (found: \${fs:-no mount})"
case ,$fsopts, in *,ro,*) fail 90 "$t is mounted read-only" ;; esac
command -v tar >/dev/null 2>&1 || fail 81 "tar not found in the container"
for c in mkdir chmod chown ln mv rm; do
  command -v "$c" >/dev/null 2>&1 || fail 86 "$c not found in the container"
done

# Who this process is and what it may do, from the kernel (not guessed from error messages):
# effective uid, gid, supplementary groups and capabilities. CAP_CHOWN is bit 0,
# CAP_DAC_OVERRIDE bit 1. Unreadable: assume everything, so the checks fall back to trying.
euid= egid= groups= caps=
while read -r key v1 v2 rest || [ -n "$key" ]; do
  case $key in
    Uid:) euid=$v2 ;;
    Gid:) egid=$v2 ;;
    Groups:) groups=" $v1 $v2 $rest " ;;
    CapEff:) caps=$v1 ;;
  esac
  key=
done < /proc/self/status
case $caps in ''|*[!0-9a-fA-F]*) caps=ffffffffffffffff ;; esac
has_cap() { [ $(((0x$caps >> $1) & 1)) -eq 1 ]; }

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
# Giving a file away needs CAP_CHOWN; keeping our own uid and a group we are in does not.
# The owner goes to stdout, so the runtime can write as that user instead.
if [ "$uid" != "$euid" ] || { [ "$gid" != "$egid" ] && case $groups in *" $gid "*) false ;; *) true ;; esac; }; then
  has_cap 0 || { echo "owner=$uid:$gid"; fail 92 "no CAP_CHOWN to give the files to $uid:$gid"; }
fi

# One write at a time in a target, across execs: one the runtime gave up on (timeout, abort)
# may still be running. The lock is a directory holding "<pid> <generation>" of its writer.
# A lock whose process is gone is taken over. A lock that no running write holds was planted
# by something else (the container itself can write the tmpfs): refused at once as tampering.
lock=$t/..lock
# Is process $1 a write of generation $2 into this target? An exec the engine started has no
# parent inside the container's pid namespace (PPid 0), which nothing the container runs can
# get (pid 1 aside); its command line ends with our arguments. A container sharing another pid
# namespace (--pid=host) shows a parent for every exec (ours too): only the arguments count.
writer() {
  [ "$1" != 1 ] && [ "$1" != "$$" ] && [ -n "$2" ] || return 1
  if [ "$PPID" = 0 ]; then
    pp=
    while read -r key v1 _rest; do
      [ "$key" = PPid: ] && { pp=$v1; break; }
    done 2>/dev/null < "/proc/$1/status"
    [ "$pp" = 0 ] || return 1
  fi
  # read drops the NUL bytes between arguments: the last line holds "dso-write<target><gen>".
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in *"dso-write$t$2"*) return 0 ;; esac
    line=
  done 2>/dev/null < "/proc/$1/cmdline"
  return 1
}
tries=0
# Readable by all (a pid and a generation are no secret): a writer running as another user (the
# owner, see exit 92) must be able to tell whose lock it is.
gone= looks=0
until mkdir -m 755 "$lock" 2>/dev/null; do
  looks=$((looks + 1))
  [ "$looks" -le 1000 ] || fail 89 "$lock keeps changing: something in the container is racing dso"
  if [ ! -e "$lock" ] && [ ! -L "$lock" ]; then
    has_cap 1 && [ "$euid" = 0 ] && fail 84 "cannot create $lock"
    # The owner may be able to: the runtime then writes as the owner (see exit 92).
    [ "$uid" = "$euid" ] || echo "owner=$uid:$gid"
    fail 91 "user $euid cannot create entries in $t"
  fi
  { [ -d "$lock" ] && [ ! -L "$lock" ]; } ||
    fail 89 "$lock is not a lock dso made (a symlink or a file): something in the container planted it"
  holder= hgen=
  if [ -L "$lock/pid" ] || { [ -e "$lock/pid" ] && [ ! -f "$lock/pid" ]; }; then
    fail 89 "$lock/pid is not a file dso wrote: something in the container planted it"
  fi
  [ -f "$lock/pid" ] && read -r holder hgen _rest 2>/dev/null < "$lock/pid"
  case $holder in
    '') ;;
    *[!0-9]*) fail 89 "$lock names no process: something in the container planted it" ;;
    *)
      if [ ! -d "/proc/$holder" ]; then
        # Ours, left by a writer that was killed: removed. One that cannot be removed (another
        # user's, in a tmpfs root may not write without CAP_DAC_OVERRIDE) is no lock of ours.
        [ "$holder" != "$gone" ] ||
          fail 89 "$lock, left by process $holder that is gone, cannot be removed: something in the container planted it"
        gone=$holder
        rm -rf "$lock" 2>/dev/null
        continue
      fi
      if ! writer "$holder" "$hgen"; then
        # Gone while we looked: a lock of ours, released or stale; look again.
        [ -d "/proc/$holder" ] || continue
        fail 89 "$lock is held by process $holder, which is not a dso write: something in the container planted it"
      fi ;;
  esac
  tries=$((tries + 1))
  # Ours writes its pid right after mkdir: a lock still empty after a second was not made by us.
  [ -n "$holder" ] || [ "$tries" -le 10 ] ||
    fail 89 "$lock holds no writer: something in the container planted it"
  [ "$tries" -le 100 ] || fail 88 "another write into $t is still running (process $holder)"
  sleep 0.1
done
trap 'rm -rf "$lock"' EXIT
(umask 022 && echo "$$ $gen" > "$lock/pid")

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

d=$t/..dso_$gen
tmp=$t/..tmp_$gen
mkdir -m 700 "$d" || fail 84 "cannot create $d"
unstage() { code=$1; shift; cd / && chmod 700 "$d" 2>/dev/null; rm -rf "$d"; fail "$code" "$@"; }
# -o: owned by who extracts. An owner writing for itself may hold CAP_CHOWN (Podman's exec gives
# a non-root user the container's capabilities), and must not hand its files to the archive's uid.
tar -x -o -f - -C "$d" || unstage 84 "extracting the archive into $d failed"
drain
cd "$d" || unstage 84 "cannot enter $d"
for n; do
  { [ -f "$n" ] && [ ! -L "$n" ]; } || unstage 84 "$n is missing from the archive"
done
if [ "$#" -gt 0 ]; then
  # chmod first: once given away, a file's mode can be changed only with CAP_FOWNER.
  chmod -- "$mode" "$@" || unstage 84 "chmod $mode failed"
  chown -- "$uid:$gid" "$@" || unstage 84 "chown $uid:$gid failed"
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

/**
 * The delivery paths that need neither an exec nor anything in the image, named in every error
 * about what a hardened container lacks.
 */
export const NO_EXEC_PATHS =
  'the dso volume driver (--mount type=volume,volume-driver=dso,dst=<target>,' +
  'volume-opt=<name>=<reference>) or the host path (-v /run/dso/containers/<key>:<target>:ro)';

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
    case WRITE_EXIT.tampered:
      return new DockerRuntimeError(
        'DSO_DOCKER_TARGET_TAMPERED',
        `${target}/..lock in container ${containerId} was not made by a dso write ` +
          `(${reason ?? 'planted'}); nothing was changed. Find what in the container writes ` +
          `${target}/..lock, then remove it (or restart the container, which empties its tmpfs)`,
        { ...facts, path: `${target}/..lock` },
      );
    case WRITE_EXIT.targetReadOnly:
      return new DockerRuntimeError(
        'DSO_DOCKER_TARGET_READ_ONLY',
        `${target} in container ${containerId} is a read-only tmpfs, so nothing can be written ` +
          `into it: mount it read-write (--tmpfs ${target} without :ro), or deliver without exec: ` +
          `${NO_EXEC_PATHS}`,
        facts,
      );
    case WRITE_EXIT.targetNotWritable:
      return new DockerRuntimeError(
        'DSO_DOCKER_TARGET_NOT_WRITABLE',
        `cannot write into ${target} in container ${containerId} (${reason ?? 'permission denied'}): ` +
          'the tmpfs belongs to another user and the container has no CAP_DAC_OVERRIDE ' +
          `(--cap-drop ALL). Leave the tmpfs root-owned (--tmpfs ${target} without uid= or a ` +
          'restrictive mode=), or --cap-add DAC_OVERRIDE, or deliver without exec: ' +
          NO_EXEC_PATHS,
        facts,
      );
    case WRITE_EXIT.noCapChown:
      return new DockerRuntimeError(
        'DSO_DOCKER_NO_CAP_CHOWN',
        `cannot give the files in ${target} to their owner in container ${containerId} ` +
          `(${reason ?? 'no CAP_CHOWN'}): the container has no CAP_CHOWN (--cap-drop ALL). ` +
          `Let the owner write ${target} (--tmpfs ${target}, whose default mode 1777 lets it), ` +
          `or --cap-add CHOWN, or deliver without exec: ${NO_EXEC_PATHS}`,
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

/**
 * The `uid:gid` to run the write as when root could not do it for another owner: without
 * CAP_CHOWN ({@link WRITE_EXIT.noCapChown}) or without CAP_DAC_OVERRIDE in a tmpfs root may not
 * write ({@link WRITE_EXIT.targetNotWritable}). The script then prints the owner it resolved as
 * `owner=<uid>:<gid>` on stdout, having changed nothing. Written by the owner itself, the files
 * need no chown. Undefined when the exit is another one or the line is missing or out of range.
 */
export function ownerToWriteAs(exit: Pick<WriteExit, 'exitCode' | 'stdout'>): string | undefined {
  if (exit.exitCode !== WRITE_EXIT.noCapChown && exit.exitCode !== WRITE_EXIT.targetNotWritable) {
    return undefined;
  }
  const match = /^owner=(\d{1,10}):(\d{1,10})$/m.exec(exit.stdout);
  if (match === null) return undefined;
  const [uid, gid] = [Number(match[1]), Number(match[2])];
  if (uid > MAX_OWNER_ID || gid > MAX_OWNER_ID) return undefined;
  return `${uid}:${gid}`;
}

/**
 * Maps the exit of the second attempt, the one {@link ownerToWriteAs} runs as the owner, after
 * root's attempt ended with `firstExitCode`. The owner lacking write access to the target too is
 * reported as what root lacked (CAP_CHOWN, or CAP_DAC_OVERRIDE), with every way out.
 */
export function interpretOwnerWriteExit(
  exit: WriteExit,
  writeAs: string,
  firstExitCode: number,
): DockerRuntimeError | undefined {
  const failure = interpretWriteExit(exit);
  if (failure?.code !== 'DSO_DOCKER_TARGET_NOT_WRITABLE') return failure;
  const { containerId, target } = exit;
  const uid = writeAs.split(':')[0];
  const facts = { ...failure.details, writeAs };
  if (firstExitCode === WRITE_EXIT.targetNotWritable) {
    return new DockerRuntimeError(
      'DSO_DOCKER_TARGET_NOT_WRITABLE',
      `cannot write into ${target} in container ${containerId}: root there has no ` +
        "CAP_DAC_OVERRIDE (--cap-drop ALL) to write a tmpfs another user owns, and the files' " +
        `owner ${writeAs} cannot write it either. Give the tmpfs to root or to the owner ` +
        `(--tmpfs ${target}:uid=${uid}), or --cap-add DAC_OVERRIDE, or deliver without exec: ` +
        NO_EXEC_PATHS,
      facts,
    );
  }
  return new DockerRuntimeError(
    'DSO_DOCKER_NO_CAP_CHOWN',
    `cannot write the files in ${target} for their owner ${writeAs} in container ${containerId}: ` +
      'root there has no CAP_CHOWN (--cap-drop ALL) to give files away, and ' +
      `${writeAs} cannot write ${target} itself. Let it (--tmpfs ${target}:uid=${uid} or the ` +
      `default mode 1777), or --cap-add CHOWN, or deliver without exec: ${NO_EXEC_PATHS}`,
    facts,
  );
}

function lastDsoLine(stderr: string): string | undefined {
  const lines = stderr.split('\n').filter((line) => line.startsWith('dso: '));
  return lines.at(-1)?.slice('dso: '.length);
}
