import { type Clock, systemClock } from '@dso/core';

// ---------------------------------------------------------------------------------------------
// Health and readiness
// ---------------------------------------------------------------------------------------------

/** One condition of a {@link HealthReport}: a fixed phrase and counts in `detail`, nothing else. */
export interface CheckResult {
  ok: boolean;
  /** Why it fails (or a count): built from codes and numbers, never a value, path or name. */
  detail?: string;
}

/**
 * What `/healthz` and `/readyz` answer from. The endpoint answers 200 when `ok` and every check
 * is ok, else 503 naming the failing checks.
 */
export interface HealthReport {
  ok: boolean;
  checks: Readonly<Record<string, CheckResult>>;
}

/** What `/readyz` answers from: the same shape as {@link HealthReport}. */
export type ReadyReport = HealthReport;

/** How long the events stream may stay down before `/healthz` fails. */
export const DEFAULT_EVENTS_DOWN_LIMIT_MS = 60_000;

/** Options of {@link createAgentHealth}. */
export interface AgentHealthOptions {
  /**
   * How long the engine's events stream may be down (reconnecting) before the agent reports
   * itself unhealthy. The agent exits by itself after its reconnect limit; this is for the
   * supervisor that watches `/healthz` in between.
   * @default DEFAULT_EVENTS_DOWN_LIMIT_MS
   */
  eventsDownLimitMs?: number;
  /** @default systemClock */
  clock?: Clock;
}

/**
 * The agent's liveness and readiness, fed by its lifecycle. Each method is cheap (a field
 * write) and safe to call repeatedly.
 */
export interface AgentHealth {
  /** The engine accepted the events subscription (the runtime's `onConnected`). */
  eventsConnected(): void;
  /** The events stream broke and is being reconnected (the runtime's `onReconnecting`). */
  eventsLost(): void;
  /** A reconciliation of every managed container finished (the first one makes the agent ready). */
  reconciled(): void;
  /** Shutdown began: `/readyz` answers 503 from now on. */
  stopping(): void;
  /**
   * Liveness: `events` fails once the stream has been down longer than the limit. The process
   * answering at all shows its event loop runs.
   */
  health(): HealthReport;
  /** Readiness: `watching` (events connected once), `reconciled` (first run done), `running`. */
  ready(): ReadyReport;
}

/**
 * Builds the agent's health state, for {@link startObservabilityServer}'s `health` and `ready`.
 *
 * @example
 * const health = createAgentHealth();
 * runtime.events({ signal, onConnected: health.eventsConnected, onReconnecting: health.eventsLost });
 * await startObservabilityServer({ address, registry, health: health.health, ready: health.ready });
 */
export function createAgentHealth(options: AgentHealthOptions = {}): AgentHealth {
  const clock = options.clock ?? systemClock;
  const limitMs = options.eventsDownLimitMs ?? DEFAULT_EVENTS_DOWN_LIMIT_MS;
  if (!Number.isFinite(limitMs) || limitMs < 0) {
    throw new RangeError(`eventsDownLimitMs must be a finite number ≥ 0, got ${String(limitMs)}`);
  }
  let connectedOnce = false;
  let downSince: number | undefined;
  let reconciledOnce = false;
  let stopping = false;

  return {
    eventsConnected() {
      connectedOnce = true;
      downSince = undefined;
    },
    eventsLost() {
      downSince ??= clock.now();
    },
    reconciled() {
      reconciledOnce = true;
    },
    stopping() {
      stopping = true;
    },
    health() {
      const downMs = downSince === undefined ? 0 : clock.now() - downSince;
      const events: CheckResult =
        downMs > limitMs
          ? {
              ok: false,
              detail: `events stream down for ${Math.round(downMs / 1_000)} s (limit ${Math.round(limitMs / 1_000)} s)`,
            }
          : downSince === undefined
            ? { ok: true }
            : { ok: true, detail: 'events stream reconnecting' };
      return { ok: events.ok, checks: { events } };
    },
    ready() {
      const checks: Record<string, CheckResult> = {
        watching: connectedOnce
          ? { ok: true }
          : { ok: false, detail: 'events stream not connected yet' },
        reconciled: reconciledOnce
          ? { ok: true }
          : { ok: false, detail: 'first reconciliation not finished' },
        running: stopping ? { ok: false, detail: 'shutting down' } : { ok: true },
      };
      return { ok: connectedOnce && reconciledOnce && !stopping, checks };
    },
  };
}
