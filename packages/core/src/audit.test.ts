import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  type AuditEntry,
  type AuditRecord,
  createAuditLog,
  DEFAULT_AUDIT_MAX_BUFFERED_BYTES,
  parseAuditLine,
} from './audit.js';
import { isDsoError } from './errors.js';
import { createRedactor, REDACTED } from './redaction.js';

const CANARY = 'canary-3f7a21-never-audited';
const CONTAINER_ID = 'a'.repeat(64);
const AT = Date.UTC(2025, 0, 1, 12, 0, 0, 250);

function capture() {
  const lines: string[] = [];
  return {
    lines,
    write(line: string) {
      lines.push(line);
    },
  };
}

const fixedClock = { now: () => AT };

const entry: AuditEntry = {
  actor: { kind: 'agent' },
  action: 'inject',
  reference: 'dsofile://vault:app/db#password',
  provider: 'vault',
  version: '7',
  containerId: CONTAINER_ID,
  outcome: 'ok',
  cacheHit: false,
  durationMs: 41.5,
};

describe('createAuditLog', () => {
  it('writes one JSON line per record, stamped by the clock, fields in a fixed order', () => {
    const destination = capture();
    const audit = createAuditLog({ destination, clock: fixedClock });
    audit.record(entry);
    audit.record({
      actor: { kind: 'cli', uid: 1000, pid: 4242, name: 'alice' },
      action: 'secret-set',
      reference: { scheme: 'dso', path: 'app/api', field: 'token' },
      provider: 'local',
      outcome: 'denied',
      code: 'DSO_API_FORBIDDEN',
    });
    expect(destination.lines).toHaveLength(2);
    for (const line of destination.lines) {
      expect(line.endsWith('\n')).toBe(true);
      expect(line.slice(0, -1)).not.toContain('\n');
    }
    expect(destination.lines[0]).toBe(
      `${JSON.stringify({
        at: '2025-01-01T12:00:00.250Z',
        actor: { kind: 'agent' },
        action: 'inject',
        reference: 'dsofile://vault:app/db#password',
        provider: 'vault',
        version: '7',
        containerId: CONTAINER_ID,
        outcome: 'ok',
        cacheHit: false,
        durationMs: 41.5,
      })}\n`,
    );
    const second: AuditRecord = parseAuditLine(destination.lines[1]!);
    expect(second).toEqual({
      at: '2025-01-01T12:00:00.250Z',
      actor: { kind: 'cli', uid: 1000, pid: 4242, name: 'alice' },
      action: 'secret-set',
      reference: 'dso://app/api#token',
      provider: 'local',
      outcome: 'denied',
      code: 'DSO_API_FORBIDDEN',
    });
  });

  it('writes references in canonical form', () => {
    const destination = capture();
    const audit = createAuditLog({ destination, clock: fixedClock });
    audit.record({ ...entry, reference: 'dsofile://vault:app/db#password@3' });
    expect(parseAuditLine(destination.lines[0]!).reference).toBe(
      'dsofile://vault:app/db#password@3',
    );
  });

  it.each([
    ['a value field', { value: CANARY }],
    ['a secret field', { secret: CANARY }],
    ['a nested unknown field', { actor: { kind: 'agent', token: CANARY } }],
    ['a time set by the caller', { at: '2020-01-01T00:00:00.000Z' }],
  ])('refuses %s with a TypeError that never quotes what it holds', (_, extra) => {
    const destination = capture();
    const audit = createAuditLog({ destination });
    const attempt = () => audit.record({ ...entry, ...extra } as AuditEntry);
    expect(attempt).toThrow(TypeError);
    expect(attempt).toThrow(/audit record refused: unknown field/);
    try {
      attempt();
    } catch (error) {
      expect((error as Error).message).not.toContain(CANARY);
    }
    expect(destination.lines).toHaveLength(0);
  });

  it.each([
    ['an unknown action', { action: 'peek' }, /action: expected one of "resolve"/],
    ['an unknown outcome', { outcome: 'maybe' }, /outcome: expected one of/],
    [
      'a provider name out of grammar',
      { provider: 'Vault Prod' },
      /provider: not of the expected form/,
    ],
    ['a container name instead of an id', { containerId: 'my-app' }, /containerId/],
    ['a code that is not DSO_*', { code: 'EACCES' }, /code/],
    ['a negative duration', { durationMs: -1 }, /durationMs/],
    ['an infinite duration', { durationMs: Number.POSITIVE_INFINITY }, /durationMs/],
    ['a fractional uid', { actor: { kind: 'cli', uid: 1.5 } }, /actor\.uid/],
    ['a number for a version', { version: 7 }, /version: expected string/],
  ])('refuses %s', (_, change, message) => {
    const audit = createAuditLog({ destination: capture() });
    expect(() => audit.record({ ...entry, ...change } as AuditEntry)).toThrow(message);
  });

  it('refuses a reference that does not parse, without quoting it', () => {
    const audit = createAuditLog({ destination: capture() });
    try {
      audit.record({ ...entry, reference: CANARY });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toContain('reference is not a valid secret reference');
      expect((error as Error).message).not.toContain(CANARY);
      expect((error as Error).cause).toBeUndefined();
    }
  });

  it('never writes a registered value, even one put into a reference or a name', () => {
    const redactor = createRedactor();
    redactor.register(CANARY);
    const destination = capture();
    const audit = createAuditLog({ destination, redactor, clock: fixedClock });
    audit.record({ ...entry, reference: `dsofile://vault:app/${CANARY}#password` });
    audit.record({ ...entry, actor: { kind: 'api', name: CANARY }, version: CANARY });
    const text = destination.lines.join('');
    expect(text).not.toContain(CANARY);
    expect(parseAuditLine(destination.lines[0]!).reference).toBe(
      `dsofile://vault:app/${REDACTED}#password`,
    );
    expect(JSON.parse(destination.lines[1]!)).toMatchObject({
      actor: { name: REDACTED },
      version: REDACTED,
    });
  });

  it('redacts well-known credential formats without being given a redactor', () => {
    const destination = capture();
    const audit = createAuditLog({ destination });
    // Shaped like a GitHub token, built here; a version is no place for one.
    const token = `ghp_${'Ab12Cd34'.repeat(5).slice(0, 36)}`;
    audit.record({ ...entry, version: token });
    expect(destination.lines[0]).not.toContain(token);
  });

  it('ends a stream destination on close and resolves once every line is written', async () => {
    const chunks: string[] = [];
    const stream = new Writable({
      write(chunk, _encoding, callback) {
        chunks.push(String(chunk));
        setImmediate(callback);
      },
    });
    const audit = createAuditLog({ destination: stream, clock: fixedClock });
    audit.record(entry);
    audit.record({ ...entry, outcome: 'error', code: 'DSO_DOCKER_EXEC_FAILED' });
    await audit.close();
    expect(stream.writableFinished).toBe(true);
    expect(chunks.map((chunk) => parseAuditLine(chunk).outcome)).toEqual(['ok', 'error']);
    await audit.close();
    await audit[Symbol.asyncDispose]();
  });

  it('refuses records after close with DSO_AUDIT_CLOSED', async () => {
    const audit = createAuditLog({ destination: capture() });
    await audit.close();
    try {
      audit.record(entry);
      expect.unreachable();
    } catch (error) {
      expect(isDsoError(error) && error.code).toBe('DSO_AUDIT_CLOSED');
    }
  });

  it('reports a failed stream with DSO_AUDIT_WRITE_FAILED, and close rejects', async () => {
    const failure = new Error('disk full');
    const stream = new Writable({
      write(_chunk, _encoding, callback) {
        callback(failure);
      },
    });
    const audit = createAuditLog({ destination: stream });
    audit.record(entry);
    await new Promise((resolve) => setImmediate(resolve));
    try {
      audit.record(entry);
      expect.unreachable();
    } catch (error) {
      expect(isDsoError(error) && error.code).toBe('DSO_AUDIT_WRITE_FAILED');
      expect((error as Error).cause).toBe(failure);
    }
    await expect(audit.close()).rejects.toBe(failure);
  });

  it('refuses records with DSO_AUDIT_BACKLOG when the stream is too far behind', () => {
    // Nothing reads the PassThrough: every line stays buffered.
    const stream = new PassThrough({ highWaterMark: 16 });
    const audit = createAuditLog({ destination: stream, maxBufferedBytes: 1024 });
    let refusedAt = -1;
    for (let i = 0; i < 100 && refusedAt === -1; i++) {
      try {
        audit.record(entry);
      } catch (error) {
        expect(isDsoError(error) && error.code).toBe('DSO_AUDIT_BACKLOG');
        refusedAt = i;
      }
    }
    expect(refusedAt).toBeGreaterThan(0);
    expect(stream.writableLength).toBeLessThan(1024 + 400);
    expect(DEFAULT_AUDIT_MAX_BUFFERED_BYTES).toBe(8 * 1024 * 1024);
  });

  it('rejects a destination that cannot be written to', () => {
    expect(() => createAuditLog({ destination: {} as Writable })).toThrow(TypeError);
  });
});

describe('createAuditLog: refusals', () => {
  it('writes a refused record without a reference, with the container name, code and reason on one line', () => {
    const destination = capture();
    const redactor = createRedactor();
    redactor.register(CANARY);
    const audit = createAuditLog({ destination, clock: fixedClock, redactor });
    audit.record({
      actor: { kind: 'agent' },
      action: 'inject',
      containerId: CONTAINER_ID,
      containerName: 'web-1',
      outcome: 'refused',
      code: 'DSO_LABEL_INVALID',
      reason: `label dso.file.x is not a reference\nfix it (${CANARY})`,
    });
    const record = parseAuditLine(destination.lines[0]!);
    expect(record).toEqual({
      at: '2025-01-01T12:00:00.250Z',
      actor: { kind: 'agent' },
      action: 'inject',
      containerId: CONTAINER_ID,
      containerName: 'web-1',
      outcome: 'refused',
      code: 'DSO_LABEL_INVALID',
      reason: `label dso.file.x is not a reference fix it (${REDACTED})`,
    });
    expect(destination.lines[0]).not.toContain(CANARY);
  });

  it('cuts a long reason, keeps a reference when the refusal has one', () => {
    const destination = capture();
    createAuditLog({ destination, clock: fixedClock }).record({
      ...entry,
      outcome: 'refused',
      code: 'DSO_PROVIDER_NOT_FOUND',
      reason: 'x'.repeat(5_000),
    });
    const record = parseAuditLine(destination.lines[0]!);
    expect(record.reference).toBe('dsofile://vault:app/db#password');
    expect(record.reason).toHaveLength(300);
  });

  it('refuses a record without a reference unless refused, a refused one without a reason, and a reason elsewhere', () => {
    const audit = createAuditLog({ destination: capture() });
    const { reference: _reference, ...noReference } = entry;
    expect(() => audit.record(noReference)).toThrow(/reference: required/);
    expect(() => audit.record({ ...noReference, outcome: 'refused', code: 'DSO_X' })).toThrow(
      /reason: required/,
    );
    expect(() => audit.record({ ...entry, reason: 'why' })).toThrow(/reason: only for refused/);
    expect(() =>
      audit.record({ ...entry, outcome: 'refused', reason: 'r', containerName: '/bad name' }),
    ).toThrow(/containerName/);
  });
});

describe('parseAuditLine', () => {
  it('refuses a line that is not JSON without quoting it', () => {
    expect(() => parseAuditLine(`{"reference": "${CANARY}`)).toThrow(
      /^audit line is not a JSON document$/,
    );
  });

  it('refuses a line with an extra field', () => {
    const destination = capture();
    createAuditLog({ destination, clock: fixedClock }).record(entry);
    const record = JSON.parse(destination.lines[0]!);
    expect(() => parseAuditLine(JSON.stringify({ ...record, value: 'x' }))).toThrow(
      /audit line refused: unknown field: "value"/,
    );
    expect(() => parseAuditLine(JSON.stringify({ ...record, at: 'yesterday' }))).toThrow(/at/);
  });
});
