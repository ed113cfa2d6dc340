/**
 * The answers `meshmirror serve` gives besides content: JSON bodies and errors in the distribution
 * spec's form (`{"errors":[{"code","message","detail"}]}`), with distribution's status for each code.
 */
import type { ServerResponse } from 'node:http';

/** Error codes this registry answers with, and the HTTP status distribution gives each. */
export const REGISTRY_ERROR_STATUS = {
  BLOB_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  /** Distribution's own code for a bad `n` on `_catalog` and `tags/list`; not in the OCI list. */
  PAGINATION_NUMBER_INVALID: 400,
  UNAUTHORIZED: 401,
  UNKNOWN: 500,
  UNSUPPORTED: 405,
} as const;

export type RegistryErrorCode = keyof typeof REGISTRY_ERROR_STATUS;

/** A registry error: its code, a message for people, and optional structured detail. */
export interface RegistryError {
  code: RegistryErrorCode;
  message: string;
  detail?: unknown;
  /** When the status is not the code's usual one (UNSUPPORTED for an unknown endpoint is a 404). */
  status?: number;
}

export function sendJson(response: ServerResponse, head: boolean, status: number, body: unknown, contentType = 'application/json'): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'Content-Type': contentType, 'Content-Length': String(Buffer.byteLength(text)) });
  response.end(head ? undefined : text);
}

/** Answers with one error in the spec's JSON form (headers only for HEAD, as HTTP requires). */
export function sendError(response: ServerResponse, head: boolean, error: RegistryError): void {
  sendJson(response, head, error.status ?? REGISTRY_ERROR_STATUS[error.code], {
    errors: [{ code: error.code, message: error.message, detail: error.detail ?? {} }],
  });
}
