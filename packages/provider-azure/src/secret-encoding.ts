import { SecretValue } from '@dso/provider-sdk';

/**
 * The content type that marks a secret as binary: its value is the bytes in standard base64.
 * Key Vault stores secrets as strings; this is the convention this provider reads and writes.
 */
export const BINARY_CONTENT_TYPE = 'application/octet-stream';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A Key Vault secret's value and content type, as `setSecret` takes them. */
export interface EncodedSecret {
  value: string;
  contentType?: string;
}

/**
 * How to store `bytes` in Key Vault so that this provider resolves the same bytes: valid UTF-8
 * is stored as the text itself (no content type); anything else as base64 with
 * `contentType: application/octet-stream`.
 *
 * @example
 * encodeSecretValue(Buffer.from('s3cret'));       // { value: 's3cret' }
 * encodeSecretValue(Uint8Array.from([0xff, 0]));  // { value: '/wA=', contentType: 'application/octet-stream' }
 */
export function encodeSecretValue(bytes: Uint8Array): EncodedSecret {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let text: string | undefined;
  try {
    // ignoreBOM keeps a leading U+FEFF as part of the value instead of dropping it.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buffer);
  } catch {
    // Not UTF-8: stored as base64 below. Nothing about the bytes is kept from the error.
    text = undefined;
  }
  if (text !== undefined && Buffer.from(text, 'utf8').equals(buffer)) return { value: text };
  return { value: buffer.toString('base64'), contentType: BINARY_CONTENT_TYPE };
}

/** Whether a content type (parameters and case ignored) marks a binary secret. */
export function isBinaryContentType(contentType: string | undefined): boolean {
  return contentType?.split(';', 1)[0]?.trim().toLowerCase() === BINARY_CONTENT_TYPE;
}

/**
 * The bytes a Key Vault secret holds: base64-decoded when its content type is
 * `application/octet-stream`, else its text as UTF-8. Returns undefined for a binary secret
 * whose value is not canonical base64 (the caller says so without quoting it).
 */
export function decodeSecretValue(
  value: string,
  contentType: string | undefined,
): SecretValue | undefined {
  if (!isBinaryContentType(contentType)) return SecretValue.fromText(value);
  if (!BASE64.test(value)) return undefined;
  const bytes = Buffer.from(value, 'base64');
  try {
    return SecretValue.fromBytes(bytes);
  } finally {
    bytes.fill(0);
  }
}
