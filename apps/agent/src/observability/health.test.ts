import { createFakeClock } from '@dso/core';
import { describe, expect, it } from 'vitest';
import { createAgentHealth } from './health.js';

describe('createAgentHealth', () => {
  it('is live until the events stream has been down longer than the limit', () => {
    const clock = createFakeClock();
    const health = createAgentHealth({ clock, eventsDownLimitMs: 60_000 });
    expect(health.health()).toEqual({ ok: true, checks: { events: { ok: true } } });
    health.eventsConnected();
    health.eventsLost();
    clock.advance(30_000);
    health.eventsLost(); // a second attempt does not restart the count
    clock.advance(30_000);
    expect(health.health().ok).toBe(true);
    clock.advance(1);
    const report = health.health();
    expect(report.ok).toBe(false);
    expect(report.checks.events).toEqual({
      ok: false,
      detail: 'events stream down for 60 s (limit 60 s)',
    });
    health.eventsConnected();
    expect(health.health().ok).toBe(true);
  });

  it('is ready once watching and reconciled, and not while stopping', () => {
    const health = createAgentHealth({ clock: createFakeClock() });
    const unmet = () =>
      Object.entries(health.ready().checks)
        .filter(([, check]) => !check.ok)
        .map(([name]) => name);
    expect(health.ready().ok).toBe(false);
    expect(unmet()).toEqual(['watching', 'reconciled']);
    health.eventsConnected();
    expect(unmet()).toEqual(['reconciled']);
    health.reconciled();
    expect(health.ready().ok).toBe(true);
    expect(unmet()).toEqual([]);
    health.stopping();
    expect(health.ready().ok).toBe(false);
    expect(unmet()).toEqual(['running']);
  });

  it('refuses a negative limit', () => {
    expect(() => createAgentHealth({ eventsDownLimitMs: -1 })).toThrow(RangeError);
  });
});
