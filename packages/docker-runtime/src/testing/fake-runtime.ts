import { onAbort } from '@dso/async';
import type {
  ContainerDetails,
  ContainerSummary,
  DockerRuntime,
  ListContainersOptions,
} from '../docker-runtime.js';
import { DockerRuntimeError } from '../errors.js';
import type { ContainerEvent, RuntimeEvent } from '../events.js';
import type { SwarmService } from '../swarm.js';
import type { WriteFilesRequest } from '../write-request.js';

/** The runtime operations a {@link FakeRuntime} can be told to fail (as the engine would). */
export type FakeFailure = 'write' | 'exec' | 'signal' | 'restart' | 'stop' | 'replace';

/** One `writeFiles` call the fake took, its contents copied (callers zero their buffers). */
export interface FakeWrite {
  id: string;
  request: WriteFilesRequest;
  /** Each file's content as UTF-8 text, copied when the write was made. */
  contents: string[];
}

/** {@link createFakeRuntime}'s options. */
export interface FakeRuntimeOptions {
  /** Containers that exist at the start (running or not, as each says). No event is emitted for them. */
  containers?: ContainerDetails[];
  /** What `resolveUser` answers, by the container's `user`; absent: DSO_DOCKER_USER_UNRESOLVED. */
  users?: Record<string, { uid: number; gid: number }>;
  /**
   * What `inspectSwarmService` answers, by service id, as a manager node would; a service not
   * here answers `undefined`, as on a worker node.
   */
  services?: Record<string, SwarmService>;
}

/**
 * An engine in memory that behaves like the real runtime on the operations a consumer of
 * {@link DockerRuntime} uses (listing with a label filter, inspecting, the events of a start,
 * a stop and a removal, writing into a tmpfs, signals, restarts, replacement), checked against
 * the real one by the same conformance suite (`runRuntimeConformance`). The test drives it:
 * `run`, `stop`, `remove`, `emit`, and `failing` to make an operation fail.
 */
export interface FakeRuntime {
  readonly runtime: DockerRuntime;
  /** Every write, in order. */
  readonly writes: FakeWrite[];
  /**
   * Rotation actions taken: `signal <id> <SIG>`, `exec <id> <argv…>`, `restart <id>`,
   * `stop <id>`, `replace <id>`.
   */
  readonly actions: string[];
  /** Operations that fail from now on, until removed. */
  readonly failing: Set<FakeFailure>;
  /** The environment each `replaceContainer` call asked for. */
  readonly replacedEnv: Array<Record<string, string | null>>;
  /** What `recoverReplacements` reports. */
  readonly recoveries: Awaited<ReturnType<DockerRuntime['recoverReplacements']>>;
  /** The container as the engine has it now, or undefined. */
  get(id: string): ContainerDetails | undefined;
  /** Adds (or replaces) a container, running, and emits its start. */
  start(container: ContainerDetails): void;
  /** Stops a container: not running any more, and its `container.died` event. */
  stop(id: string): void;
  /** Removes a container, with its `container.destroyed` event. */
  remove(id: string): void;
  /** Emits an event of any type for a container (labels as it has them). */
  emit(type: ContainerEvent['type'], id: string): void;
}

/** Whether a container's labels pass an engine label filter (`key` or `key=value`). */
function matchesLabel(labels: Record<string, string>, filter: string): boolean {
  const at = filter.indexOf('=');
  if (at === -1) return filter in labels;
  return labels[filter.slice(0, at)] === filter.slice(at + 1);
}

/**
 * @example
 * import { createFakeRuntime } from '@dso/docker-runtime/testing';
 * const fake = createFakeRuntime();
 * const agent = createAgent({ runtime: fake.runtime, … });
 * fake.start({ id: 'c1', labels: { 'dso.enable': 'true', … }, running: true, … });
 * await expect.poll(() => fake.writes.length).toBe(1);
 */
export function createFakeRuntime(options: FakeRuntimeOptions = {}): FakeRuntime {
  const byId = new Map((options.containers ?? []).map((c) => [c.id, { ...c }]));
  const history: ContainerEvent[] = [];
  /** Each open events stream: called with an event, or with nothing to wake it (close). */
  const readers = new Set<(event?: ContainerEvent) => void>();
  const writes: FakeWrite[] = [];
  const actions: string[] = [];
  const failing = new Set<FakeFailure>();
  const replacedEnv: Array<Record<string, string | null>> = [];
  const recoveries: Awaited<ReturnType<DockerRuntime['recoverReplacements']>> = [];
  let sequence = 0;
  let closed = false;

  const notFound = (id: string) =>
    new DockerRuntimeError('DSO_DOCKER_CONTAINER_NOT_FOUND', `no container ${id}`, {
      containerId: id,
    });
  const existing = (id: string): ContainerDetails => {
    const container = byId.get(id);
    if (container === undefined) throw notFound(id);
    return container;
  };
  const running = (id: string): ContainerDetails => {
    const container = existing(id);
    if (!container.running) {
      throw new DockerRuntimeError(
        'DSO_DOCKER_CONTAINER_NOT_RUNNING',
        `container ${id} is not running`,
        { containerId: id },
      );
    }
    return container;
  };
  const fail = (kind: FakeFailure) => {
    if (!failing.has(kind)) return;
    if (kind === 'replace') {
      throw new DockerRuntimeError('DSO_DOCKER_REPLACE_FAILED', 'replace failed', {
        stage: 'health',
        reason: 'unhealthy',
        rollback: 'done',
      });
    }
    throw new DockerRuntimeError('DSO_DOCKER_ENGINE_ERROR', `${kind} failed`);
  };
  const emit = (type: ContainerEvent['type'], id: string) => {
    const container = byId.get(id);
    sequence += 1;
    const event: ContainerEvent = {
      type,
      id,
      at: Date.now(),
      timeNano: String(BigInt(Date.now()) * 1_000_000n + BigInt(sequence)),
      cursor: `${sequence}~${id}~${type}`,
      labels: { ...(container?.labels ?? {}) },
      name: container?.name ?? id,
      image: container?.image ?? '',
    };
    history.push(event);
    if (history.length > 256) history.shift(); // the engine keeps its last 256 events
    for (const reader of readers) reader(event);
  };
  const startedNow = () => new Date(Date.now() + sequence).toISOString();

  const runtime: DockerRuntime = {
    apiVersion: '1.41',
    engineVersion: 'fake',
    engineKind: 'docker',
    host: 'unix:///fake.sock',
    async *events({ signal, since }) {
      const pending: RuntimeEvent[] = [];
      let wake: (() => void) | undefined;
      const reader = (event?: ContainerEvent) => {
        if (event !== undefined) pending.push(event);
        wake?.();
      };
      // Replays what happened since `since` (ms, as the engine's `since` filter), then follows.
      const sinceMs = typeof since === 'number' ? since : undefined;
      if (sinceMs !== undefined) pending.push(...history.filter((event) => event.at >= sinceMs));
      readers.add(reader);
      const stopWaking = onAbort(signal, () => wake?.());
      try {
        while (!signal.aborted && !closed) {
          const event = pending.shift();
          if (event) {
            yield event;
            continue;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
      } finally {
        readers.delete(reader);
        stopWaking();
      }
    },
    async listContainers({ label, all }: ListContainersOptions) {
      return [...byId.values()]
        .filter(
          (c) =>
            (all === true || c.running) && (label === undefined || matchesLabel(c.labels, label)),
        )
        .map(
          ({ id, name, labels, state, image, binds, volumes }): ContainerSummary => ({
            id,
            name,
            labels: { ...labels },
            state,
            image,
            binds: binds.map(({ source, target, readOnly }) => ({ source, target, readOnly })),
            volumes: (volumes ?? []).map((volume) => ({ ...volume })),
          }),
        );
    },
    async swarmNodeActive() {
      return false;
    },
    async listVolumes({ driver }) {
      return [
        ...new Set(
          [...byId.values()].flatMap((c) =>
            (c.volumes ?? []).filter((v) => v.driver === driver).map((v) => v.name),
          ),
        ),
      ];
    },
    async inspectContainer(id) {
      return structuredClone(existing(id));
    },
    async writeFiles(id, request) {
      const container = running(id);
      fail('write');
      if (!container.tmpfs.includes(request.target)) {
        throw new DockerRuntimeError(
          'DSO_DOCKER_TARGET_NOT_TMPFS',
          `${request.target} is not a tmpfs in container ${id}`,
          { containerId: id, target: request.target },
        );
      }
      // Copied now: the caller zeroes its buffers once the write returns.
      writes.push({
        id,
        request,
        contents: request.files.map((file) => Buffer.from(file.content).toString()),
      });
      const bytes = request.files.reduce((sum, file) => sum + file.content.byteLength, 0);
      return { files: request.files.length, bytes, durationMs: 1, generation: `g${writes.length}` };
    },
    async exec(id, request) {
      running(id);
      actions.push(`exec ${id} ${request.argv.join(' ')}`);
      fail('exec');
      return {
        exitCode: 0,
        stdout: '',
        stderr: '',
        stdoutBytes: 0,
        stderrBytes: 0,
        truncated: false,
        durationMs: 1,
      };
    },
    async sendSignal(id, unixSignal) {
      running(id);
      actions.push(`signal ${id} ${unixSignal}`);
      fail('signal');
    },
    async restartContainer(id) {
      const container = existing(id);
      actions.push(`restart ${id}`);
      fail('restart');
      if (container.labels['com.docker.swarm.task.id'] !== undefined) {
        // As the real runtime: a task restarted in place would run beside its replacement.
        throw new DockerRuntimeError(
          'DSO_DOCKER_RESTART_REFUSED',
          `container ${container.name} is a Swarm task: stop it and let its service replace it`,
          { reason: 'swarm-task', containerId: id, name: container.name },
        );
      }
      if (container.running) {
        container.running = false;
        container.state = 'exited';
        emit('container.died', id);
      }
      container.running = true;
      container.state = 'running';
      container.startedAt = startedNow();
      emit('container.started', id);
    },
    async stopContainer(id) {
      const container = existing(id);
      actions.push(`stop ${id}`);
      fail('stop');
      if (container.running) {
        container.running = false;
        container.state = 'exited';
        emit('container.died', id);
      }
    },
    async inspectSwarmService(serviceId) {
      const service = options.services?.[serviceId];
      return service === undefined ? undefined : structuredClone(service);
    },
    async replaceContainer(id, request) {
      actions.push(`replace ${id}`);
      replacedEnv.push({ ...request.env });
      fail('replace');
      const old = existing(id);
      if (old.labels['com.docker.swarm.task.id'] !== undefined) {
        // As the real runtime's plan: a service owns its tasks.
        throw new DockerRuntimeError(
          'DSO_DOCKER_REPLACE_FAILED',
          `container ${old.name} is a swarm task: update its service instead of replacing it`,
          { stage: 'plan', reason: 'swarm-task', containerId: id, name: old.name },
        );
      }
      const newId = `${id}-next`;
      byId.delete(id);
      const labels = { ...old.labels };
      for (const [key, value] of Object.entries(request.labels ?? {})) {
        if (value === null) delete labels[key];
        else labels[key] = value;
      }
      byId.set(newId, { ...old, id: newId, labels, startedAt: startedNow() });
      await request.onStarted?.(newId, request.signal ?? new AbortController().signal);
      return {
        oldId: id,
        newId,
        name: old.name,
        generation: 1,
        health: 'running',
        oldRemoved: true,
        durationMs: 1,
      };
    },
    async recoverReplacements() {
      return recoveries;
    },
    async resolveUser(id) {
      const { user } = existing(id);
      const known = options.users?.[user];
      if (known !== undefined) return known;
      throw new DockerRuntimeError(
        'DSO_DOCKER_USER_UNRESOLVED',
        `user ${user} of container ${id} is not in the fake's users`,
        { containerId: id },
      );
    },
    async close() {
      closed = true;
      for (const reader of readers) reader();
    },
    async [Symbol.asyncDispose]() {
      await runtime.close();
    },
  };

  return {
    runtime,
    writes,
    actions,
    failing,
    replacedEnv,
    recoveries,
    get: (id) => byId.get(id),
    start(container) {
      byId.set(container.id, { ...container, running: true, state: 'running' });
      emit('container.started', container.id);
    },
    stop(id) {
      const container = existing(id);
      container.running = false;
      container.state = 'exited';
      emit('container.died', id);
    },
    remove(id) {
      existing(id);
      emit('container.destroyed', id);
      byId.delete(id);
    },
    emit,
  };
}
