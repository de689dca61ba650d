/**
 * Where the engines that speak Docker's Engine API differ, in one place. The runtime talks to
 * Docker Engine 20.10+ and to Podman 4.3+'s Docker-compatible service; every difference
 * between them (event names, event times, what inspect and list return, error texts) is
 * described here, and the operation modules ask the dialect instead of testing the engine's
 * name themselves.
 */

/** Which engine answers: read once from `/version` when the runtime connects. */
export type EngineKind = 'docker' | 'podman';

/** What the runtime knows of the engine it speaks to, and how that engine differs. */
export interface EngineDialect {
  readonly kind: EngineKind;
  /** For messages: `Docker 20.10.24+dfsg1`, `Podman 4.3.1`. */
  readonly display: string;
}

/** The parts of `GET /version` the dialect reads. */
export interface EngineVersionReply {
  Version?: string;
  Components?: Array<{ Name?: string; Version?: string }> | null;
}

/**
 * Tells Docker from Podman by `/version`: Podman's compatible service lists a component
 * named `Podman Engine` (Docker's lists `Engine`, `containerd`, `runc`, `docker-init`).
 */
export function detectEngineDialect(version: EngineVersionReply): EngineDialect {
  const podman = version.Components?.find((component) => component.Name === 'Podman Engine');
  if (podman !== undefined) {
    return { kind: 'podman', display: `Podman ${podman.Version ?? version.Version ?? 'unknown'}` };
  }
  return { kind: 'docker', display: `Docker ${version.Version ?? 'unknown'}` };
}
