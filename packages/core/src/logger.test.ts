import { SecretValue } from '@dso/provider-sdk';
import type { DestinationStream } from 'pino';
import { describe, expect, it } from 'vitest';
import { DsoError, isDsoError } from './errors.js';
import { createLogger, LOG_LEVELS } from './logger.js';
import { createRedactor, REDACTED } from './redaction.js';

const CANARY = 'canary-5b8e0f-do-not-log';
const CANARY_FORMS = [
  CANARY,
  Buffer.from(CANARY).toString('base64'),
  Buffer.from(CANARY).toString('base64url'),
  Buffer.from(CANARY).toString('hex'),
];

/** A destination that keeps every line written to it. */
function capture(): DestinationStream & { lines: string[]; text(): string } {
  const lines: string[] = [];
  return {
    lines,
    write(line: string) {
      lines.push(line);
    },
    text() {
      return lines.join('');
    },
  };
}

describe('createLogger', () => {
  it('never writes a registered value, in any form, at any level, in any place', () => {
    const redactor = createRedactor();
    redactor.register(CANARY);
    const destination = capture();
    const logger = createLogger({ level: 'trace', redactor, destination });

    const error = new Error(`connection refused by ${CANARY}`);
    const wrapped = new DsoError('DSO_TEST_FAILED', 'wrapped', { cause: error, hint: CANARY });
    const encoded = Buffer.from(CANARY).toString('base64');
    for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const) {
      logger[level](`message with ${CANARY}`);
      logger[level]({ field: CANARY }, 'as a field');
      logger[level]({ nested: { deeper: [{ value: CANARY }] } }, 'nested');
      logger[level]({ err: error }, 'as err');
      logger[level]({ error: wrapped }, 'as error with a cause');
      logger[level](error);
      logger[level]('format %s and %j', CANARY, { value: CANARY });
      logger[level]({ header: `Basic ${encoded}` }, 'encoded');
      logger.child({ binding: CANARY })[level]('from a child');
    }

    const text = destination.text();
    expect(destination.lines).toHaveLength(6 * 9);
    for (const form of CANARY_FORMS) expect(text).not.toContain(form);
    expect(text).toContain(REDACTED);
    // Every line is still one JSON document, and each place shows the marker.
    const records = destination.lines.map((line) => JSON.parse(line));
    expect(records[0].msg).toBe(`message with ${REDACTED}`);
    expect(records[1].field).toBe(REDACTED);
    expect(records[2].nested.deeper[0].value).toBe(REDACTED);
    expect(records[3].err.message).toBe(`connection refused by ${REDACTED}`);
    expect(records[3].err.stack).toContain(`Error: connection refused by ${REDACTED}`);
    expect(records[4].error.details.hint).toBe(REDACTED);
    expect(records[4].error.message).toContain(REDACTED);
    expect(records[8].binding).toBe(REDACTED);
  });

  it('redacts values registered after the logger was created', () => {
    const redactor = createRedactor();
    const destination = capture();
    const logger = createLogger({ redactor, destination });
    logger.info(`before ${CANARY}`);
    redactor.register(CANARY);
    logger.info(`after ${CANARY}`);
    expect(JSON.parse(destination.lines[0]!).msg).toBe(`before ${CANARY}`);
    expect(JSON.parse(destination.lines[1]!).msg).toBe(`after ${REDACTED}`);
  });

  it('redacts well-known credential formats in every line, with or without a redactor', () => {
    // Built here in the shape of a GitHub token; it is not one.
    const token = `ghp_${'x1Y2z3'.repeat(6)}`;
    for (const redactor of [undefined, createRedactor()]) {
      const destination = capture();
      const logger = createLogger({ destination, ...(redactor ? { redactor } : {}) });
      logger.info({ url: 'postgres://app:db-pw-123@db:5432/app' }, `pushing with ${token}`);
      logger.error({ err: new Error(`auth failed: password=hunter2-xyz`) }, 'failed');
      logger.child({ headers: { authorization: `Bearer ${token}` } }).warn('retrying');
      const text = destination.text();
      for (const secret of [token, 'db-pw-123', 'hunter2-xyz']) expect(text).not.toContain(secret);
      const records = destination.lines.map((line) => JSON.parse(line));
      expect(records[0].url).toBe(`postgres://app:${REDACTED}@db:5432/app`);
      expect(records[0].msg).toBe(`pushing with ${REDACTED}`);
      expect(records[1].err.message).toBe(`auth failed: password=${REDACTED}`);
      expect(records[2].headers.authorization).toBe(`Bearer ${REDACTED}`);
    }
  });

  it('leaves credential formats to a redactor made with patterns: false', () => {
    const destination = capture();
    const logger = createLogger({ destination, redactor: createRedactor({ patterns: false }) });
    logger.info('password=visible-by-choice');
    expect(JSON.parse(destination.lines[0]!).msg).toBe('password=visible-by-choice');
  });

  it('prints a SecretValue as [REDACTED] even without a redactor', () => {
    const destination = capture();
    const logger = createLogger({ destination });
    const value = SecretValue.fromText(CANARY);
    logger.info({ value, nested: { list: [value] } }, 'value %s', value);
    logger.info(value, 'as the merge object');
    logger.info({ err: value }, 'under err');
    expect(destination.text()).not.toContain(CANARY);
    const record = JSON.parse(destination.lines[0]!);
    expect(record.value).toBe(REDACTED);
    expect(record.nested.list).toEqual([REDACTED]);
    expect(record.msg).toBe(`value ${REDACTED}`);
    expect(JSON.parse(destination.lines[2]!).err).toBe(REDACTED);
  });

  it('serialises errors under err and error with type, message, stack, code and details', () => {
    const destination = capture();
    const logger = createLogger({ destination });
    const error = new DsoError('DSO_TEST_FAILED', 'it failed', { containerId: 'abc' });
    logger.error({ err: error }, 'failed');
    logger.error({ error }, 'failed');
    for (const line of destination.lines) {
      const record = JSON.parse(line);
      const serialised = record.err ?? record.error;
      expect(serialised).toMatchObject({
        type: 'DsoError',
        message: 'it failed',
        code: 'DSO_TEST_FAILED',
        details: { containerId: 'abc' },
      });
      expect(serialised.stack).toContain('DsoError: it failed');
    }
  });

  it('logs at info by default', () => {
    const destination = capture();
    const logger = createLogger({ destination });
    logger.debug('hidden');
    logger.info('shown');
    expect(logger.level).toBe('info');
    expect(destination.lines.map((line) => JSON.parse(line).msg)).toEqual(['shown']);
  });

  it('writes its name and base fields on every line', () => {
    const destination = capture();
    const logger = createLogger({ destination, name: 'agent', base: { service: 'dso' } });
    logger.info('hello');
    const record = JSON.parse(destination.lines[0]!);
    expect(record).toMatchObject({ name: 'agent', service: 'dso', msg: 'hello', level: 30 });
    expect(record).not.toHaveProperty('pid');
  });

  it.each(LOG_LEVELS)('accepts the level %s', (level) => {
    expect(createLogger({ level, destination: capture() }).level).toBe(level);
  });

  it('rejects an unknown level with DSO_LOG_LEVEL_INVALID', () => {
    try {
      createLogger({ level: 'verbose', destination: capture() });
      expect.unreachable();
    } catch (error) {
      expect(isDsoError(error) && error.code).toBe('DSO_LOG_LEVEL_INVALID');
      expect((error as Error).message).toContain('"verbose"');
      expect((error as Error).message).toContain('trace, debug, info, warn, error, fatal, silent');
    }
  });
});

describe('createLogger with format pretty', () => {
  it('writes one readable line: time, level, message and fields, no JSON braces', () => {
    const destination = capture();
    const logger = createLogger({ destination, format: 'pretty', color: false, name: 'agent' });
    logger.info({ containerName: 'api', files: 3, reference: 'dso://app/db' }, 'secrets delivered');
    expect(destination.lines).toHaveLength(1);
    const line = destination.lines[0]!;
    expect(line).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} INFO {2}secrets delivered containerName=api files=3 reference=dso:\/\/app\/db\n$/,
    );
    expect(line).not.toContain('{');
    expect(line).not.toContain('pid=');
  });

  it('never writes a registered value, in any form, in a message, field or error', () => {
    const redactor = createRedactor();
    redactor.register(CANARY);
    const destination = capture();
    const logger = createLogger({ level: 'trace', redactor, destination, format: 'pretty' });
    const error = new Error(`connection refused by ${CANARY}`);
    for (const form of CANARY_FORMS) {
      logger.error({ err: error, detail: { nested: form }, note: `x ${form} y` }, `msg ${form}`);
    }
    logger.info({ value: SecretValue.fromText(CANARY) }, 'a secret value field');
    // A value split by JSON escaping in the JSON line comes back whole only in the pretty line.
    logger.warn({ quoted: `"${CANARY}"`, control: `${CANARY}\n` }, 'escaped forms');
    for (const form of CANARY_FORMS) expect(destination.text()).not.toContain(form);
    expect(destination.text()).toContain(REDACTED);
  });

  it('colours the level only when asked, and escapes control characters from fields and messages', () => {
    const plain = capture();
    createLogger({ destination: plain, format: 'pretty', color: false }).warn(
      { containerName: 'evil\u001b[2Jname' },
      'bell\u0007 here',
    );
    expect(plain.text()).not.toContain('\u001b');
    expect(plain.text()).not.toContain('\u0007');
    expect(plain.text()).toContain(String.raw`"evil\u001b[2Jname"`);
    const coloured = capture();
    createLogger({ destination: coloured, format: 'pretty', color: true }).warn('careful');
    expect(coloured.text()).toContain('\u001b[33mWARN');
  });

  it('prints a coded error as its message alone, and an uncoded one with its stack', () => {
    const destination = capture();
    const logger = createLogger({ destination, format: 'pretty', color: false });
    logger.warn(
      { err: new DsoError('DSO_TEST_EXPECTED', '/run is not on a tmpfs: mount one'), code: 'x' },
      'host path off',
    );
    expect(destination.lines[0]).toContain('err="DsoError: /run is not on a tmpfs: mount one"');
    expect(destination.lines[0]).not.toContain('    at ');
    logger.error({ err: new TypeError('boom') }, 'bug');
    expect(destination.lines[1]).toContain('err="TypeError: boom"');
    expect(destination.lines[1]).toContain('    at ');
  });

  it('writes JSON with format json, and with auto when a destination is given', () => {
    for (const format of ['json', 'auto'] as const) {
      const destination = capture();
      createLogger({ destination, format }).info({ a: 1 }, 'hello');
      expect(JSON.parse(destination.lines[0]!)).toMatchObject({ a: 1, msg: 'hello' });
    }
  });

  it('rejects an unknown format with DSO_LOG_FORMAT_INVALID', () => {
    expect(() =>
      createLogger({ destination: capture(), format: 'text' as unknown as 'json' }),
    ).toThrow(expect.objectContaining({ code: 'DSO_LOG_FORMAT_INVALID' }));
  });
});
