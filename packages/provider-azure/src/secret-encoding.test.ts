import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BINARY_CONTENT_TYPE,
  decodeSecretValue,
  encodeSecretValue,
  isBinaryContentType,
} from './secret-encoding.js';

describe('encodeSecretValue', () => {
  it('stores UTF-8 as its text, without a content type', () => {
    expect(encodeSecretValue(Buffer.from('pässwörd 🔑'))).toEqual({ value: 'pässwörd 🔑' });
    expect(encodeSecretValue(new Uint8Array(0))).toEqual({ value: '' });
  });

  it('keeps a leading byte order mark as part of the text', () => {
    const bytes = Buffer.from('\uFEFFbom', 'utf8');
    const encoded = encodeSecretValue(bytes);
    expect(encoded.contentType).toBeUndefined();
    expect(Buffer.from(encoded.value, 'utf8').equals(bytes)).toBe(true);
  });

  it('stores other bytes as base64 under application/octet-stream', () => {
    expect(encodeSecretValue(Uint8Array.from([0xff, 0x00, 0xc3]))).toEqual({
      value: '/wDD',
      contentType: BINARY_CONTENT_TYPE,
    });
  });

  it('round-trips any bytes through decodeSecretValue', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        const { value, contentType } = encodeSecretValue(bytes);
        const decoded = decodeSecretValue(value, contentType);
        expect(decoded).toBeDefined();
        expect([...decoded!.reveal()]).toEqual([...bytes]);
      }),
    );
  });
});

describe('decodeSecretValue', () => {
  it('reads text as UTF-8 unless the content type is application/octet-stream', () => {
    expect(decodeSecretValue('AAEC', undefined)?.revealText()).toBe('AAEC');
    expect(decodeSecretValue('AAEC', 'text/plain')?.revealText()).toBe('AAEC');
    expect([...decodeSecretValue('AAEC', 'APPLICATION/octet-stream; foo=bar')!.reveal()]).toEqual([
      0, 1, 2,
    ]);
  });

  it('returns undefined for a binary secret that is not canonical base64', () => {
    for (const value of ['not base64!', 'AAE', 'AA==AA==', 'AAEC\n']) {
      expect(decodeSecretValue(value, BINARY_CONTENT_TYPE)).toBeUndefined();
    }
  });

  it('recognises the binary content type whatever its case and parameters', () => {
    expect(isBinaryContentType(' application/OCTET-STREAM ;x=1')).toBe(true);
    expect(isBinaryContentType('application/octet-streams')).toBe(false);
    expect(isBinaryContentType(undefined)).toBe(false);
  });
});
