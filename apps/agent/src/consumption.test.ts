import { createFakeClock, createLogger, createRedactor } from '@dso/core';
import { describe, expect, it } from 'vitest';
import type { ChangeDetector, TrackedSecret } from './change-detector.js';
import { createConsumption, latestBaselines, TRACK_COALESCE_MS } from './consumption.js';

const logger = createLogger({ level: 'silent', redactor: createRedactor() });
const db = (version: string): TrackedSecret => ({ provider: 'local', path: 'app/db', version });

/** A detector that only records what it is told to track. */
function recordingDetector() {
  const tracked: TrackedSecret[][] = [];
  const detector = {
    track: (secrets: TrackedSecret[]) => tracked.push(secrets),
  } as unknown as ChangeDetector;
  return { detector, tracked };
}

describe('latestBaselines', () => {
  it('takes each secret at the version most recently consumed, whatever the order of containers', () => {
    const lagging = { secrets: [db('1')], at: 1 };
    const current = { secrets: [db('2')], at: 2 };
    expect(latestBaselines([lagging, current])).toEqual([db('2')]);
    expect(latestBaselines([current, lagging])).toEqual([db('2')]);
  });

  it('keeps one baseline per provider and path', () => {
    const other = { provider: 'vault', path: 'app/db', version: '7' };
    expect(latestBaselines([{ secrets: [db('1'), other], at: 1 }])).toEqual([db('1'), other]);
  });
});

describe('createConsumption', () => {
  it('hands the detector the whole set once per coalescing window, on its clock', () => {
    const clock = createFakeClock();
    const { detector, tracked } = recordingDetector();
    const consumption = createConsumption({ detector, clock, logger });
    consumption.record('c1', [db('1')]);
    consumption.record('c2', [db('1')]);
    clock.advance(TRACK_COALESCE_MS - 1);
    expect(tracked).toEqual([]);
    clock.advance(1);
    expect(tracked).toEqual([[db('1')]]);
  });

  it('does not move a baseline back for a consumer that lags (its delivery failing)', () => {
    const clock = createFakeClock();
    const { detector, tracked } = recordingDetector();
    const consumption = createConsumption({ detector, clock, logger });
    consumption.record('c1', [db('1')]);
    consumption.record('c2', [db('1')]);
    // v2 reaches c1; c2's delivery fails, so it is still recorded with v1 (and listed after c1).
    consumption.record('c1', [db('2')]);
    clock.advance(TRACK_COALESCE_MS);
    expect(tracked.at(-1)).toEqual([db('2')]);
    expect(consumption.consumersOf('local', 'app/db').sort()).toEqual(['c1', 'c2']);
  });

  it('does not track a secret whose provider reports no version, and forgets a container', () => {
    const clock = createFakeClock();
    const { detector, tracked } = recordingDetector();
    const consumption = createConsumption({ detector, clock, logger });
    consumption.record('c1', [db(''), { provider: 'local', path: 'app/other', version: '4' }]);
    clock.advance(TRACK_COALESCE_MS);
    expect(tracked.at(-1)).toEqual([{ provider: 'local', path: 'app/other', version: '4' }]);
    expect(consumption.consumersOf('local', 'app/other')).toEqual(['c1']);
    expect(consumption.consumersOf('local', 'app/db')).toEqual([]);
    consumption.record('c1', undefined);
    clock.advance(TRACK_COALESCE_MS);
    expect(tracked.at(-1)).toEqual([]);
    expect(consumption.consumersOf('local', 'app/other')).toEqual([]);
  });

  it('records nothing without a detector, and nothing after close', () => {
    const clock = createFakeClock();
    const bare = createConsumption({ clock, logger });
    bare.record('c1', [db('1')]);
    expect(bare.consumersOf('local', 'app/db')).toEqual([]);
    const { detector, tracked } = recordingDetector();
    const consumption = createConsumption({ detector, clock, logger });
    consumption.record('c1', [db('1')]);
    consumption.close();
    clock.advance(TRACK_COALESCE_MS);
    expect(tracked).toEqual([]);
    expect(clock.pendingTimers).toBe(0);
  });
});
